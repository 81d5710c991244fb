"""Fast attention for CPU tensors over the token-level KV pool (same results as reference.py).

Why not just the reference: decode attention on a CPU is memory-bound, and the batches a
prefix-sharing runtime sees are full of requests whose first P KV slots are *the same slots*
(a shared system prompt, few-shot examples, forks). Reading that shared KV once per request
multiplies memory traffic by the batch size. Here attention is split ("cascade"):

  1. every query of the batch against the shared prefix [0, P): one GEMM, KV read once;
  2. each request's own keys [P, seq_len) (causal for new tokens), gathered per request;

and the two partial results are merged with their log-sum-exps. `shared_prefix_len` comes
from ForwardBatch (the longest run of identical req_to_token entries across the batch);
0 disables part 1. Requests that extend by one token (or a few, as after a jump-forward)
take the decode path even inside a mixed batch, so a long prefill chunk does not pad every
decode row to its length. Decode rows (part 2 for one query per row) run in C where it
could be built (`cpu_native.decode_rows`: keys read in place, no gather); the torch version
here is the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from radixlm.kernels import cpu_native

NEG_INF = float("-inf")
EXP_FLOOR = -87.0  # e^-87 ~ 1.6e-38: the smallest float32 exp result that is still normal


def _gather(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """cache[slots] for slots of any shape, via index_select (much faster than fancy indexing)."""
    flat = cache.view(cache.shape[0], -1).index_select(0, slots.reshape(-1))
    return flat.view(*slots.shape, cache.shape[1], cache.shape[2])


def head_rows(slots: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """Rows of the cache viewed as [slots * kv_heads, D] for slots [..., S], head-major:
    [..., KV, S]. Gathering by these gives K/V already laid out [..., KV, S, D] contiguous,
    so the attention matmuls read them in place: gathering [..., S, KV, D] and permuting
    made torch.matmul copy K transposed in every layer, a strided copy that took more time
    than the matmuls themselves (~10 ms per layer at batch 32 x 270 keys)."""
    heads = torch.arange(kv_heads, device=slots.device)
    return slots.unsqueeze(-2) * kv_heads + heads[:, None]


def _gather_heads(cache: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """cache [N, KV, D] gathered by head-major rows [..., KV, S] -> [..., KV, S, D]."""
    return cache.view(-1, cache.shape[-1]).index_select(0, rows.reshape(-1)).view(*rows.shape, cache.shape[-1])


def _merge(o1, lse1, o2, lse2):
    """Combine two softmax-normalised partial attentions over disjoint key sets."""
    m = torch.maximum(lse1, lse2)
    w1 = torch.exp(lse1 - m)
    w2 = torch.exp(lse2 - m)
    return (o1 * w1[..., None] + o2 * w2[..., None]) / (w1 + w2)[..., None]


def _attend(q, k, v, scale, mask=None, need_lse=True):
    """q [..., G, D], k/v [..., S, D] (kv head dims aligned) -> (out [..., G, D], lse [..., G]);
    lse is None when not needed (fewer ops: one fused softmax)."""
    s = torch.matmul(q, k.transpose(-1, -2))  # [..., G, S]
    s.mul_(scale)
    if mask is not None:
        s.masked_fill_(~mask, NEG_INF)
    if not need_lse:
        return torch.matmul(torch.softmax(s, dim=-1), v), None
    m = s.amax(dim=-1, keepdim=True)
    # Unnormalised probabilities, in place. The clamp is for speed: ATen's exp takes a slow
    # path (~7x) on inputs whose result underflows, e.g. every masked key's -inf; e^-87 is
    # ~1e-38, below what any sum of these (the max's term is 1) can show in float32.
    s.sub_(m).clamp_min_(EXP_FLOOR).exp_()
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


def _decode_keys(req_to_token, req_pool_indices, seq_lens, start, max_len, kv_heads, memo):
    """Head-major rows [B, KV, S] of the keys [start, max_len) and their padding mask ([B, 1, 1, S], or
    None when every request has max_len keys). Identical in every layer: the first layer
    computes them and `memo` (the forward's scratch dict) hands them to the others."""
    key = ("decode_keys", start, max_len, req_pool_indices.shape[0])
    if memo is not None and key in memo:
        return memo[key]
    rows = head_rows(req_to_token[req_pool_indices, start:max_len].long(), kv_heads)
    mask = None
    if bool((seq_lens != max_len).any()):
        pos = torch.arange(start, max_len, device=rows.device)
        mask = (pos[None, :] < seq_lens[:, None])[:, None, None, :]
    if memo is not None:
        memo[key] = (rows, mask)
    return rows, mask


def _own_decode(q, k_cache, v_cache, rows, mask, scale, need_lse=True):
    """One query per request against its keys (rows [B, KV, S]) -> (o [B, H, D], lse [B, H] or None)."""
    B, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    k = _gather_heads(k_cache, rows)  # [B, KV, S, D]
    v = _gather_heads(v_cache, rows)
    o, lse = _attend(q.view(B, KV, G, D), k, v, scale, mask, need_lse)
    return o.reshape(B, H, D), None if lse is None else lse.reshape(B, H)


def attend_rows(q, k_cache, v_cache, rows, scale):
    """Queries q [B, H, D], one per request, against the keys at head-major cache rows
    [B, KV, S] (from `head_rows`, no padding) -> o [B, H, D]."""
    return _own_decode(q, k_cache, v_cache, rows, None, scale, need_lse=False)[0]


def _memoized(memo: dict | None, key: tuple, build):
    """memo[key], built on first use (memo: the forward's scratch dict, or None: build)."""
    if memo is None:
        return build()
    if key not in memo:
        memo[key] = build()
    return memo[key]


def _shared_part_in_c(q, k_cache, v_cache, req_to_token, req_pool_indices, P, scale, memo):
    """Part 1 in C tiles (cpu_native.prefix_tiles: 8 queries' heads share each prefix key
    read, no gather): (o [T, H, D], lse [T, H]) float32, or (None, None) without the C path."""
    if not cpu_native.available() or q.is_cuda:
        return None, None
    tiles = _memoized(memo, ("prefix_tiles", P),
                      lambda: cpu_native.prefix_tiles(q.shape[0], P, int(req_pool_indices[0])))
    T, H, D = q.shape
    o = torch.empty(T, H, D, dtype=torch.float32)
    lse = torch.empty(T, H, dtype=torch.float32)
    if not cpu_native.extend_into(q, k_cache, v_cache, req_to_token, tiles, 0, scale, o, lse):
        return None, None
    return o, lse


def _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, scale, o, lse, out, memo):
    """Merge the per-request part (o, lse) with attention over the batch's shared prefix
    [0, P) (skipped when P == 0), cast to q's dtype and write `out` if given."""
    if P > 0:
        o1, lse1 = _shared_part_in_c(q, k_cache, v_cache, req_to_token, req_pool_indices, P, scale, memo)
        if o1 is None:
            shared_slots = _memoized(memo, ("shared_slots", P), lambda: req_to_token[req_pool_indices[0], :P].long())
            o1, lse1 = _shared_part(q, k_cache, v_cache, shared_slots, scale)
        o = _merge(o1, lse1, o, lse)
    o = o.to(q.dtype)
    if out is None:
        return o
    out.copy_(o)
    return out


def decode_attention(
    q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, sm_scale,
    max_seq_len=None, out=None, shared_prefix_len: int = 0, memo: dict | None = None,
):
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max())
    P = shared_prefix_len
    own = cpu_native.decode_rows(q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, P, sm_scale)
    if own is None:
        rows, mask = _decode_keys(req_to_token, req_pool_indices, seq_lens, P, max_seq_len, k_cache.shape[1], memo)
        own = _own_decode(q, k_cache, v_cache, rows, mask, sm_scale, need_lse=P > 0)
    return _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, sm_scale, *own, out, memo)


@dataclass
class _PaddedGroup:
    """Index tensors for several extending requests padded to the longest (layer-independent)."""

    q_tok: torch.Tensor  # [n, max_ext] rows of q (clamped at the padding)
    rows: torch.Tensor  # [n, KV, S] head-major cache rows of the keys [start, max_seq)
    mask: torch.Tensor  # [n, KV, max_ext * G, S] causal + padding
    valid: torch.Tensor  # [n, max_ext] real (not padding) query positions
    out_tok: torch.Tensor  # [sum(ext)] rows of the output, in the requests' token order


def _padded_group(q, kv_heads, req_to_token, rows, prefix, ext, starts, start) -> _PaddedGroup:
    _, H, _ = q.shape
    G = H // kv_heads
    n, max_ext = len(rows), max(ext)
    dev = q.device
    max_seq = max(p + e for p, e in zip(prefix, ext))
    e_pos = torch.arange(max_ext, device=dev)
    q_tok = (torch.tensor(starts, device=dev)[:, None] + e_pos[None, :]).clamp(max=q.shape[0] - 1)
    slots = req_to_token[torch.tensor(rows, device=dev), start:max_seq].long()  # [n, S]
    key_rows = head_rows(slots, kv_heads)
    q_abs = torch.tensor(prefix, device=dev)[:, None] + e_pos[None, :]  # [n, max_ext]
    k_abs = torch.arange(start, max_seq, device=dev)
    mask = k_abs[None, None, :] <= q_abs[:, :, None]  # [n, max_ext, S]
    mask = mask[:, None, :, None, :].expand(n, kv_heads, max_ext, G, -1).reshape(n, kv_heads, max_ext * G, -1)
    valid = e_pos[None, :] < torch.tensor(ext, device=dev)[:, None]
    out_tok = torch.cat([torch.arange(s, s + e) for s, e in zip(starts, ext)]).to(dev)
    return _PaddedGroup(q_tok, key_rows, mask, valid, out_tok)


def _own_extend_padded(q, k_cache, v_cache, g: _PaddedGroup, scale):
    """New tokens of a padded group against their keys -> (o, lse) for the group's tokens."""
    _, H, D = q.shape
    KV = k_cache.shape[1]
    G = H // KV
    n, max_ext = g.q_tok.shape
    qp = q[g.q_tok].view(n, max_ext, KV, G, D).permute(0, 2, 1, 3, 4).reshape(n, KV, max_ext * G, D)
    k = _gather_heads(k_cache, g.rows)  # [n, KV, S, D]
    v = _gather_heads(v_cache, g.rows)
    o, lse = _attend(qp, k, v, scale, g.mask)
    o = o.view(n, KV, max_ext, G, D).permute(0, 2, 1, 3, 4).reshape(n, max_ext, H, D)
    lse = lse.view(n, KV, max_ext, G).permute(0, 2, 1, 3).reshape(n, max_ext, H)
    return o[g.valid], lse[g.valid]


# Extends of at most this many tokens run as one decode row per token (row j of a request
# with prefix p sees keys [0, p + j + 1)), in the same batched call as the batch's real
# decode rows. Jump-forward makes these common: forced JSON keys and punctuation are 2-8
# tokens, appended to a batch of one-token decodes. As padded groups they cost a few dozen
# extra small ops per layer each; as rows they only re-gather the request's keys once per
# token (measured in docs/benchmarks.md, constrained decoding).
DECODE_ROWS_MAX_EXTEND = 8


def _extend_groups(ext: list[int]) -> list[list[int]]:
    """Requests (indices, extend_len > DECODE_ROWS_MAX_EXTEND) grouped so padding to the
    group's longest wastes at most about half the work: sorted by length, a group closes
    when it would double."""
    order = sorted((i for i, e in enumerate(ext) if e > DECODE_ROWS_MAX_EXTEND), key=lambda i: ext[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and ext[i] <= 2 * ext[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@dataclass
class _ExtendPlan:
    decode_tok: torch.Tensor | None  # q rows of short extends, one per token (batched decode path)
    decode_pool_rows: torch.Tensor | None  # their requests' req_to_token rows
    decode_seq: torch.Tensor | None  # their key counts (position + 1)
    batch: tuple[list[int], list[int], list[int], list[int]]  # rows, prefix lens, extend lens, q starts
    tiles: torch.Tensor | None  # the long extends as C tiles (cpu_native.extend_tiles), if any
    groups: list[_PaddedGroup] | None = None  # the long extends as padded groups (torch path), built on use


def _extend_plan(q, kv_heads, req_to_token, req_pool_indices, prefix_lens, extend_lens, extend_start_loc,
                 P, memo) -> _ExtendPlan:
    """Everything about the batch's shape, built from host lists once per forward (memo)."""
    key = ("extend_plan", P)
    if memo is not None and key in memo:
        return memo[key]
    ext, starts, prefixes = extend_lens.tolist(), extend_start_loc.tolist(), prefix_lens.tolist()
    rows = req_pool_indices.tolist()
    # Short extends (decodes included) go through the batched decode path, a row per token.
    short = [(starts[i] + j, rows[i], prefixes[i] + j + 1)
             for i, e in enumerate(ext) if e <= DECODE_ROWS_MAX_EXTEND for j in range(e)]
    tok = row = seq = None
    if short:
        tok, row, seq = torch.tensor(short, device=q.device).unbind(1)
    long = [i for i, e in enumerate(ext) if e > DECODE_ROWS_MAX_EXTEND]
    tiles = None
    if long and cpu_native.available() and not q.is_cuda:
        tiles = cpu_native.extend_tiles([starts[i] for i in long], [ext[i] for i in long],
                                        [prefixes[i] for i in long], [rows[i] for i in long])
    plan = _ExtendPlan(tok, row, seq, (rows, prefixes, ext, starts), tiles)
    if memo is not None:
        memo[key] = plan
    return plan


def _padded_groups(q, kv_heads, req_to_token, plan: _ExtendPlan, P) -> list[_PaddedGroup]:
    """The long extends as padded groups (built by the first layer that needs them)."""
    if plan.groups is None:
        rows, prefixes, ext, starts = plan.batch
        plan.groups = [
            _padded_group(q, kv_heads, req_to_token, [rows[i] for i in g], [prefixes[i] for i in g],
                          [ext[i] for i in g], [starts[i] for i in g], P)
            for g in _extend_groups(ext)
        ]
    return plan.groups


def _short_rows(q, k_cache, v_cache, req_to_token, plan: _ExtendPlan, P, scale, memo):
    """(o, lse) of the short extends' tokens, each a decode row over its own keys [P, pos + 1)."""
    qd = q[plan.decode_tok]
    own = cpu_native.decode_rows(qd, k_cache, v_cache, req_to_token, plan.decode_pool_rows, plan.decode_seq, P, scale)
    if own is not None:
        return own
    seq = plan.decode_seq
    keys, mask = _decode_keys(req_to_token, plan.decode_pool_rows, seq, P, int(seq.max()), k_cache.shape[1], memo)
    return _own_decode(qd, k_cache, v_cache, keys, mask, scale)


def extend_attention(
    q, k_cache, v_cache, req_to_token, req_pool_indices, prefix_lens, extend_lens, extend_start_loc,
    sm_scale, max_seq_len=None, max_extend_len=None, out=None, shared_prefix_len: int = 0,
    memo: dict | None = None,
):
    P = shared_prefix_len
    T, H, D = q.shape
    plan = _extend_plan(q, k_cache.shape[1], req_to_token, req_pool_indices, prefix_lens, extend_lens,
                        extend_start_loc, P, memo)
    o = torch.empty(T, H, D, dtype=torch.float32, device=q.device)
    lse = torch.empty(T, H, dtype=torch.float32, device=q.device)
    # o and lse are float32 whatever q's dtype (the merge with the shared prefix needs the
    # precision); the parts come in q's dtype from the torch path (bf16 models), so cast.
    if plan.decode_tok is not None:
        od, ld = _short_rows(q, k_cache, v_cache, req_to_token, plan, P, sm_scale, memo)
        o[plan.decode_tok], lse[plan.decode_tok] = od.float(), ld.float()
    in_c = plan.tiles is not None and cpu_native.extend_into(q, k_cache, v_cache, req_to_token, plan.tiles, P,
                                                             sm_scale, o, lse)
    for g in [] if in_c else _padded_groups(q, k_cache.shape[1], req_to_token, plan, P):
        og, lg = _own_extend_padded(q, k_cache, v_cache, g, sm_scale)
        o[g.out_tok], lse[g.out_tok] = og.float(), lg.float()
    return _with_shared_prefix(q, k_cache, v_cache, req_to_token, req_pool_indices, P, sm_scale, o, lse, out, memo)
