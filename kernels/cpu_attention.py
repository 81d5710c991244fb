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
    s = torch.matmul(q, k.transpose(-1, -2)) * scale  # [..., G, S]
    if mask is not None:
        s = s.masked_fill(~mask, NEG_INF)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None])
    return torch.matmul(p, v), lse


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


def decode_attention(
    q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, sm_scale,
    max_seq_len=None, out=None, shared_prefix_len: int = 0,
):
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max())
    P = shared_prefix_len
    o, lse = _own_decode(q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, P, max_seq_len, sm_scale)
    if P > 0:
        shared_slots = req_to_token[req_pool_indices[0], :P].long()
        o1, lse1 = _shared_part(q, k_cache, v_cache, shared_slots, sm_scale)
        o = _merge(o1, lse1, o, lse)
    o = o.to(q.dtype)
    if out is None:
        return o
    out.copy_(o)
    return out


def _own_extend_one(q, k_cache, v_cache, row_slots, prefix_len, start, scale):
    """New tokens of one request (q [E, H, D]) against its keys [start, prefix_len + E)."""
    E, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    seq_len = prefix_len + E
    slots = row_slots[start:seq_len].long()
    k = _gather(k_cache, slots).permute(1, 0, 2)  # [KV, S, D]
    v = _gather(v_cache, slots).permute(1, 0, 2)
    q_pos = torch.arange(prefix_len, seq_len, device=q.device)
    k_pos = torch.arange(start, seq_len, device=q.device)
    mask = (k_pos[None, :] <= q_pos[:, None])  # [E, S]
    qg = q.view(E, KV, G, D).permute(1, 0, 2, 3)  # [KV, E, G, D]
    o, lse = _attend(qg.reshape(KV, E * G, D), k, v, scale,
                     mask[None, :, None, :].expand(KV, E, G, -1).reshape(KV, E * G, -1))
    o = o.view(KV, E, G, D).permute(1, 0, 2, 3).reshape(E, H, D)
    lse = lse.view(KV, E, G).permute(1, 0, 2).reshape(E, H)
    return o, lse


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
    for i, e in enumerate(ext):
        if e == 1 or e == 0:
            continue
        sl = slice(starts[i], starts[i] + e)
        row = req_to_token[int(req_pool_indices[i])]
        o[sl], lse[sl] = _own_extend_one(q[sl], k_cache, v_cache, row, prefixes[i], P, sm_scale)
    if P > 0:
        shared_slots = req_to_token[req_pool_indices[0], :P].long()
        o1, lse1 = _shared_part(q, k_cache, v_cache, shared_slots, sm_scale)
        o = _merge(o1, lse1, o, lse)
    o = o.to(q.dtype)
    if out is None:
        return o
    out.copy_(o)
    return out
