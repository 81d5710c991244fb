"""Fast attention for CPU tensors over the token-level KV pool (same results as reference.py).

Why not just the reference: decode attention on a CPU is memory-bound, and the batches a
prefix-sharing runtime sees are full of requests whose first P KV slots are *the same slots*
(a shared system prompt, few-shot examples, forks). Reading that shared KV once per request
multiplies memory traffic by the batch size. Here attention is split ("cascade"):

  1. every query of the batch against the shared prefix [0, P): one GEMM, KV read once;
  2. each request's own keys [P, seq_len) (causal for new tokens), gathered per request;

and the two partial results are merged with their log-sum-exps. `shared_prefix_len` comes
from ForwardBatch (the longest run of identical req_to_token entries across the batch);
0 disables part 1. Requests that extend by one token take the decode path even inside a
mixed batch, so a long prefill chunk does not pad every decode row to its length.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def _gather(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """cache[slots] for slots of any shape, via index_select (much faster than fancy indexing)."""
    flat = cache.view(cache.shape[0], -1).index_select(0, slots.reshape(-1))
    return flat.view(*slots.shape, cache.shape[1], cache.shape[2])


def _merge(o1, lse1, o2, lse2):
    """Combine two softmax-normalised partial attentions over disjoint key sets."""
    m = torch.maximum(lse1, lse2)
    w1 = torch.exp(lse1 - m)
    w2 = torch.exp(lse2 - m)
    return (o1 * w1[..., None] + o2 * w2[..., None]) / (w1 + w2)[..., None]


def _attend(q, k, v, scale, mask=None):
    """q [..., G, D], k/v [..., S, D] (kv head dims aligned) -> (out [..., G, D], lse [..., G])."""
    s = torch.matmul(q, k.transpose(-1, -2))  # [..., G, S]
    s.mul_(scale)
    if mask is not None:
        s.masked_fill_(~mask, NEG_INF)
    m = s.amax(dim=-1, keepdim=True)
    s.sub_(m).exp_()  # unnormalised probabilities, in place
    denom = s.sum(dim=-1, keepdim=True)
    o = torch.matmul(s, v).div_(denom)
    return o, (m + denom.log()).squeeze(-1)


def _shared_part(q, k_cache, v_cache, shared_slots, scale):
    """All queries q [T, H, D] against the shared prefix keys -> (o [T, H, D], lse [T, H])."""
    T, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    k = _gather(k_cache, shared_slots).permute(1, 0, 2)  # [KV, P, D]
    v = _gather(v_cache, shared_slots).permute(1, 0, 2)
    qg = q.view(T, KV, G, D).permute(1, 0, 2, 3).reshape(KV, T * G, D)  # [KV, T*G, D]
    o, lse = _attend(qg, k, v, scale)  # [KV, T*G, D], [KV, T*G]
    o = o.view(KV, T, G, D).permute(1, 0, 2, 3).reshape(T, H, D)
    lse = lse.view(KV, T, G).permute(1, 0, 2).reshape(T, H)
    return o, lse


def _own_decode(q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, start, max_len, scale):
    """One query per request against its keys [start, seq_len) -> (o [B, H, D], lse [B, H])."""
    B, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    slots = req_to_token[req_pool_indices, start:max_len].long()  # [B, S]
    k = _gather(k_cache, slots).permute(0, 2, 1, 3)  # [B, KV, S, D]
    v = _gather(v_cache, slots).permute(0, 2, 1, 3)
    pos = torch.arange(start, max_len, device=q.device)
    mask = (pos[None, :] < seq_lens[:, None])[:, None, None, :]  # [B, 1, 1, S]
    o, lse = _attend(q.view(B, KV, G, D), k, v, scale, mask)
    return o.reshape(B, H, D), lse.reshape(B, H)


def _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, scale, o, lse, out):
    """Merge the per-request part (o, lse) with attention over the batch's shared prefix
    [0, P) (skipped when P == 0), cast to q's dtype and write `out` if given."""
    if P > 0:
        shared_slots = req_to_token[req_pool_indices[0], :P].long()
        o1, lse1 = _shared_part(q, k_cache, v_cache, shared_slots, scale)
        o = _merge(o1, lse1, o, lse)
    o = o.to(q.dtype)
    if out is None:
        return o
    out.copy_(o)
    return out


def decode_attention(
    q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, sm_scale,
    max_seq_len=None, out=None, shared_prefix_len: int = 0,
):
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max())
    P = shared_prefix_len
    o, lse = _own_decode(q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, P, max_seq_len, sm_scale)
    return _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, sm_scale, o, lse, out)


def _own_extend_padded(q, k_cache, v_cache, req_to_token, rows, prefix, ext, starts, start, scale):
    """New tokens of several requests, padded to the longest, against keys [start, seq_len).

    q: all new tokens [T, H, D]; rows/prefix/ext/starts: host lists for the requests.
    Returns (o [sum(ext), H, D], lse [sum(ext), H]) in the order of the requests' tokens.
    """
    _, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    n, max_ext = len(rows), max(ext)
    dev = q.device
    seq = [p + e for p, e in zip(prefix, ext)]
    max_seq = max(seq)
    e_pos = torch.arange(max_ext, device=dev)
    ext_t = torch.tensor(ext, device=dev)
    tok = (torch.tensor(starts, device=dev)[:, None] + e_pos[None, :]).clamp(max=q.shape[0] - 1)
    qp = q[tok].view(n, max_ext, KV, G, D).permute(0, 2, 1, 3, 4).reshape(n, KV, max_ext * G, D)
    slots = req_to_token[torch.tensor(rows, device=dev), start:max_seq].long()  # [n, S]
    k = _gather(k_cache, slots).permute(0, 2, 1, 3)  # [n, KV, S, D]
    v = _gather(v_cache, slots).permute(0, 2, 1, 3)
    q_abs = torch.tensor(prefix, device=dev)[:, None] + e_pos[None, :]  # [n, max_ext]
    k_abs = torch.arange(start, max_seq, device=dev)
    mask = k_abs[None, None, :] <= q_abs[:, :, None]  # [n, max_ext, S]
    mask = mask[:, None, :, None, :].expand(n, KV, max_ext, G, -1).reshape(n, KV, max_ext * G, -1)
    o, lse = _attend(qp, k, v, scale, mask)
    o = o.view(n, KV, max_ext, G, D).permute(0, 2, 1, 3, 4).reshape(n, max_ext, H, D)
    lse = lse.view(n, KV, max_ext, G).permute(0, 2, 1, 3).reshape(n, max_ext, H)
    valid = e_pos[None, :] < ext_t[:, None]
    return o[valid], lse[valid]


def _extend_groups(ext: list[int]) -> list[list[int]]:
    """Requests (indices, extend_len > 1) grouped so padding to the group's longest wastes
    at most about half the work: sorted by length, a group closes when it would double."""
    order = sorted((i for i, e in enumerate(ext) if e > 1), key=lambda i: ext[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and ext[i] <= 2 * ext[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def extend_attention(
    q, k_cache, v_cache, req_to_token, req_pool_indices, prefix_lens, extend_lens, extend_start_loc,
    sm_scale, max_seq_len=None, max_extend_len=None, out=None, shared_prefix_len: int = 0,
):
    P = shared_prefix_len
    T, H, D = q.shape
    o = torch.empty(T, H, D, dtype=torch.float32, device=q.device)
    lse = torch.empty(T, H, dtype=torch.float32, device=q.device)
    ext = extend_lens.tolist()
    starts = extend_start_loc.tolist()
    prefixes = prefix_lens.tolist()
    decode_rows = [i for i, e in enumerate(ext) if e == 1]
    if decode_rows:  # one-token rows of a mixed batch go through the batched decode path
        rows_t = torch.tensor(decode_rows, device=q.device)
        tok = extend_start_loc[rows_t]
        seq = prefix_lens[rows_t] + 1
        od, ld = _own_decode(q[tok], k_cache, v_cache, req_to_token, req_pool_indices[rows_t], seq, P,
                             int(seq.max()), sm_scale)
        o[tok], lse[tok] = od, ld
    rows = req_pool_indices.tolist()
    for group in _extend_groups(ext):
        og, lg = _own_extend_padded(
            q, k_cache, v_cache, req_to_token, [rows[i] for i in group], [prefixes[i] for i in group],
            [ext[i] for i in group], [starts[i] for i in group], P, sm_scale,
        )
        tok = torch.cat([torch.arange(starts[i], starts[i] + ext[i]) for i in group]).to(q.device)
        o[tok], lse[tok] = og, lg
    return _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, sm_scale, o, lse, out)
