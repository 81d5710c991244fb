"""Triton `extend_attention`: prefill / chunked-prefill attention over the token-level pool.

Every new token of a request attends to the request's cached prefix and causally to the new
tokens up to itself. Because `store_kv` has already written the new tokens' K/V, all keys —
prefix and new — are read through `req_to_token`, so one loop covers both and a request's
prefix may be any set of pool slots (radix-cache hits are not contiguous).

One launch serves a ragged batch: the grid is (request, query head, block of BLOCK_M new
tokens), each program runs a flash-attention online softmax over key blocks of BLOCK_N with
fp32 accumulators, and programs past their request's extend_len exit at once.
Same contract as `reference.extend_attention`.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from radixlm.kernels.triton_pool_tile import load_pool_tile
from radixlm.kernels.triton_utils import dot_operand_dtype, dot_precision, last_dim_contiguous

_LOG2E = math.log2(math.e)  # the kernel uses exp2: exp(x) == exp2(x * log2(e))


@triton.jit
def _extend_attention_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    req_to_token_ptr,
    req_pool_indices_ptr,
    prefix_lens_ptr,
    extend_lens_ptr,
    extend_start_loc_ptr,
    qk_scale,  # sm_scale * log2(e)
    stride_q_tok,
    stride_q_head,
    stride_k_slot,
    stride_k_head,
    stride_v_slot,
    stride_v_head,
    stride_o_tok,
    stride_o_head,
    stride_r2t_row,
    KV_GROUP: tl.constexpr,  # query heads per KV head (1 = MHA, num_heads = MQA)
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,  # HEAD_DIM rounded up to a power of two
    BLOCK_M: tl.constexpr,  # new tokens per program
    BLOCK_N: tl.constexpr,  # keys per inner step
    DOT_DTYPE: tl.constexpr,  # see triton_utils.dot_operand_dtype
    DOT_PRECISION: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    start_m = tl.program_id(2) * BLOCK_M

    extend_len = tl.load(extend_lens_ptr + req)
    # The grid is sized for the longest request; shorter ones have nothing to do here.
    if start_m >= extend_len:
        return

    row = tl.load(req_pool_indices_ptr + req).to(tl.int64)
    prefix_len = tl.load(prefix_lens_ptr + req)
    q_start = tl.load(extend_start_loc_ptr + req).to(tl.int64)
    kv_head = head // KV_GROUP

    offs_m = start_m + tl.arange(0, BLOCK_M)  # index among this request's new tokens
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_valid = offs_m < extend_len
    d_valid = offs_d < HEAD_DIM
    q_pos = prefix_len + offs_m  # absolute position of each query: it sees keys <= q_pos

    q = tl.load(
        q_ptr + (q_start + offs_m)[:, None] * stride_q_tok + head * stride_q_head + offs_d[None, :],
        mask=m_valid[:, None] & d_valid[None, :],
        other=0.0,
    )  # [BLOCK_M, BLOCK_D]
    # Round q to the pool dtype once (the GPU multiplies pool-dtype operands).
    q = q.to(k_cache_ptr.dtype.element_ty).to(DOT_DTYPE)

    # Finite start for the running max: a row whose keys are all masked so far keeps
    # m_i = -1e30, so exp2(-inf - m_i) = 0 instead of exp2(-inf + inf) = NaN.
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # Keys up to the last query of this block: the whole prefix plus the causal part.
    kv_end = prefix_len + tl.minimum(extend_len, start_m + BLOCK_M)
    for start_n in range(0, kv_end, BLOCK_N):
        offs_kv = start_n + offs_n  # key positions [BLOCK_N]
        n_valid = offs_kv < kv_end
        slots = tl.load(
            req_to_token_ptr + row * stride_r2t_row + offs_kv, mask=n_valid, other=0
        ).to(tl.int64)
        kv_mask = n_valid[:, None] & d_valid[None, :]
        k = load_pool_tile(
            k_cache_ptr, slots, stride_k_slot, kv_head, stride_k_head, offs_d, kv_mask
        )  # [BLOCK_N, BLOCK_D]
        qk = (
            tl.dot(q, tl.trans(k.to(DOT_DTYPE)), input_precision=DOT_PRECISION) * qk_scale
        )  # [BLOCK_M, BLOCK_N]
        # The causal test only bites in the blocks holding new tokens; on prefix blocks it
        # is always true, and one elementwise compare is cheaper than a second loop.
        allowed = (offs_kv[None, :] <= q_pos[:, None]) & n_valid[None, :]
        qk = tl.where(allowed, qk, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)  # rescales what was accumulated under the old max
        p = tl.exp2(qk - m_new[:, None])  # [BLOCK_M, BLOCK_N]
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_pool_tile(
            v_cache_ptr, slots, stride_v_slot, kv_head, stride_v_head, offs_d, kv_mask
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None] + tl.dot(
            p.to(v.dtype).to(DOT_DTYPE), v.to(DOT_DTYPE), input_precision=DOT_PRECISION
        )
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(
        out_ptr
        + (q_start + offs_m)[:, None] * stride_o_tok
        + head * stride_o_head
        + offs_d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=m_valid[:, None] & d_valid[None, :],
    )


def _default_blocks(head_dim: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps). Wider heads halve BLOCK_N to keep the K/V tiles in
    shared memory; not tuned on hardware yet (benchmarks/bench_kernels.py is the place)."""
    if head_dim <= 64:
        return 64, 64, 4
    return 64, 32, 4


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
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Attention for new tokens over prefix + causal new tokens (K/V already stored).

    q: [num_extend_tokens, num_heads, head_dim] -> out: same shape (written in place when
    given). max_seq_len is accepted for signature parity and unused (each program reads its
    own lengths); max_extend_len sizes the grid — pass it to avoid a device sync.
    block_m / block_n override the tile sizes (tests use small ones to cover many blocks).
    """
    del max_seq_len
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    if num_heads % num_kv_heads != 0:
        raise ValueError(
            f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
        )
    if out is None:
        out = torch.empty_like(q)
    batch = req_pool_indices.shape[0]
    if num_tokens == 0 or batch == 0:
        return out
    if max_extend_len is None:
        max_extend_len = int(extend_lens.max())
    default_m, default_n, num_warps = _default_blocks(head_dim)
    block_m = block_m or default_m
    block_n = block_n or default_n

    q = last_dim_contiguous(q)
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1, "KV pool must be contiguous"
    assert out.stride(-1) == 1, "out must have a unit-stride last axis"
    assert req_to_token.stride(-1) == 1, "req_to_token must be row-major"

    grid = (batch, num_heads, triton.cdiv(max_extend_len, block_m))
    _extend_attention_kernel[grid](
        q,
        k_cache,
        v_cache,
        out,
        req_to_token,
        req_pool_indices,
        prefix_lens,
        extend_lens,
        extend_start_loc,
        sm_scale * _LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        out.stride(0),
        out.stride(1),
        req_to_token.stride(0),
        KV_GROUP=num_heads // num_kv_heads,
        HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        DOT_DTYPE=dot_operand_dtype(k_cache.dtype, q.device),
        DOT_PRECISION=dot_precision(k_cache.dtype),
        num_warps=num_warps,
    )
    return out
