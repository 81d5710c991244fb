"""Plain-torch attention and layer ops over the token-level KV pool.

These are the CPU path of the runtime and the oracle the Triton kernels are tested against.
Every function is pure over its tensor arguments (it never reads server config), and the
Triton versions in this package keep exactly these signatures.

Shared vocabulary (docs/architecture.md §3):
  k_cache / v_cache : [num_slots + 1, num_kv_heads, head_dim]  one layer's pool; slot 0 is padding
  req_to_token      : [max_running_requests, max_context_len] int32  (row, position) -> KV slot
  req_pool_indices  : [batch] int64   row of each request
  prefix_lens       : [batch] int64   tokens whose KV was in the pool before this forward
  extend_lens       : [batch] int64   tokens computed in this forward
  seq_lens          : [batch] int64   prefix_lens + extend_lens
  extend_start_loc  : [batch] int64   offset of each request's first new token in q
"""

from __future__ import annotations

import torch


def store_kv(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    out_cache_loc: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
) -> None:
    """Scatter new K/V rows into the pool: `k_cache[out_cache_loc[i]] = k[i]` (in place).

    k, v: [num_tokens, num_kv_heads, head_dim]; out_cache_loc: [num_tokens] int64.
    """
    k_cache[out_cache_loc] = k.to(k_cache.dtype)
    v_cache[out_cache_loc] = v.to(v_cache.dtype)


def _gather_kv(
    cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    max_len: int,
) -> torch.Tensor:
    """Rows of the pool for every request, padded to max_len: [batch, max_len, kv_heads, dim].

    Positions past a request's seq_len read whatever req_to_token holds there (a valid slot
    index by construction: the table is zero-initialised); callers mask them out.
    """
    slots = req_to_token[req_pool_indices, :max_len].long()  # [batch, max_len]
    return cache[slots]


def _expand_kv_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[b, s, kv_heads, d] -> [b, heads, s, d], repeating each KV head for its query group."""
    group = num_heads // x.shape[2]
    x = x.transpose(1, 2)
    return x.repeat_interleave(group, dim=1) if group > 1 else x


def extend_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    extend_start_loc: torch.Tensor,
    sm_scale: float,
    max_seq_len: int | None = None,
    max_extend_len: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention for new tokens: each attends to its request's cached prefix and causally to
    the new tokens before it. The new tokens' K/V must already be stored (store_kv).

    q: [num_extend_tokens, num_heads, head_dim]  ->  out: same shape.
    max_seq_len / max_extend_len are host-side maxima (pass them to avoid a device sync).
    """
    num_heads = q.shape[1]
    seq_lens = prefix_lens + extend_lens
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max())
    if max_extend_len is None:
        max_extend_len = int(extend_lens.max())
    if out is None:
        out = torch.empty_like(q)

    # Pad the new tokens of every request into [batch, max_extend_len].
    ext_pos = torch.arange(max_extend_len, device=q.device)
    ext_valid = ext_pos[None, :] < extend_lens[:, None]  # [batch, max_ext]
    token_index = (extend_start_loc[:, None] + ext_pos[None, :]).clamp(max=q.shape[0] - 1)
    qp = q[token_index]  # [batch, max_ext, heads, dim]

    k = _expand_kv_heads(
        _gather_kv(k_cache, req_to_token, req_pool_indices, max_seq_len), num_heads
    )
    v = _expand_kv_heads(
        _gather_kv(v_cache, req_to_token, req_pool_indices, max_seq_len), num_heads
    )

    # Query i of a request sits at absolute position prefix_len + i; it sees keys <= that.
    q_abs = prefix_lens[:, None] + ext_pos[None, :]  # [batch, max_ext]
    k_pos = torch.arange(max_seq_len, device=q.device)
    allowed = k_pos[None, None, :] <= q_abs[:, :, None]  # [batch, max_ext, max_seq]
    mask = allowed[:, None, :, :]  # broadcast over heads

    o = torch.nn.functional.scaled_dot_product_attention(
        qp.transpose(1, 2).to(k.dtype), k, v, attn_mask=mask, scale=sm_scale
    )  # [batch, heads, max_ext, dim]
    o = o.transpose(1, 2).to(out.dtype)  # [batch, max_ext, heads, dim]
    out[token_index[ext_valid]] = o[ext_valid]
    return out


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float,
    max_seq_len: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One query per request over its whole KV (the new token's K/V already stored).

    q: [batch, num_heads, head_dim]  ->  out: same shape.
    """
    num_heads = q.shape[1]
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max())
    if out is None:
        out = torch.empty_like(q)
    k = _expand_kv_heads(
        _gather_kv(k_cache, req_to_token, req_pool_indices, max_seq_len), num_heads
    )
    v = _expand_kv_heads(
        _gather_kv(v_cache, req_to_token, req_pool_indices, max_seq_len), num_heads
    )
    k_pos = torch.arange(max_seq_len, device=q.device)
    mask = (k_pos[None, :] < seq_lens[:, None])[:, None, None, :]  # [batch, 1, 1, max_seq]
    o = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None, :].to(k.dtype), k, v, attn_mask=mask, scale=sm_scale
    )  # [batch, heads, 1, dim]
    out.copy_(o[:, :, 0, :])
    return out


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim, computed in float32.

    With `residual`, first adds it (x + residual becomes the new residual) and returns
    (normed, new_residual), the fused form the decoder layers use.
    """
    if residual is not None:
        x = x + residual
        residual = x
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    normed = (normed * weight.float()).to(x.dtype)
    return normed if residual is None else (normed, residual)


def rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x: [tokens, heads, dim] (q and k heads together) rotated by their positions; cos and
    signed_sin [tokens, 1, dim] (RotaryEmbedding.lookup: the sin table's first half negated).

    Hugging Face computes x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1];
    here [x2, x1] * [-sin1, sin2]: the same products (negation is exact), in 4 ops for
    q and k together instead of ~12."""
    t, h, d = x.shape
    swapped = x.view(t, h, 2, d // 2).flip(2).view(t, h, d)
    return x * cos + swapped * signed_sin


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation: x = [gate | up] on the last dim -> silu(gate) * up."""
    gate, up = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ weight.T + bias with weight [out, in] (cuBLAS picks its own shape on GPU)."""
    return torch.nn.functional.linear(x, weight, bias)
