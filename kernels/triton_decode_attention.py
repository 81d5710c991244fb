"""Triton `decode_attention`: split-KV flash-decoding over the token-level pool.

Decode has one query per request, so a grid of (request, head) alone leaves most of a GPU
idle when the batch is small and the context long. Flash-decoding splits each request's KV
into NUM_SPLITS ranges:

  stage 1  grid (request, KV head, split): every query head of one KV group attends over
           its split (K/V read once per group, so GQA/MQA cost one pass over the pool);
           writes the normalised partial output and its log-sum-exp (base 2).
  stage 2  grid (request, head): merges the splits, weighting each partial output by
           exp2(lse_split - max_lse); splits left empty by a short request are skipped.

Same contract as `reference.decode_attention`.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from radixlm.kernels.triton_pool_tile import load_pool_tile
from radixlm.kernels.triton_utils import (
    dot_operand_dtype,
    dot_precision,
    last_dim_contiguous,
    multiprocessor_count,
)

_LOG2E = math.log2(math.e)  # the kernels use exp2: exp(x) == exp2(x * log2(e))
_MIN_SPLIT_LEN = 256  # keys per split below which the merge costs more than it saves
_MAX_SPLITS = 32


@triton.jit
def _decode_partial_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    req_to_token_ptr,
    req_pool_indices_ptr,
    seq_lens_ptr,
    mid_o_ptr,  # [batch, num_heads, NUM_SPLITS, HEAD_DIM] fp32
    mid_lse_ptr,  # [batch, num_heads, NUM_SPLITS] fp32, log2 units
    qk_scale,  # sm_scale * log2(e)
    stride_q_req,
    stride_q_head,
    stride_k_slot,
    stride_k_head,
    stride_v_slot,
    stride_v_head,
    stride_r2t_row,
    KV_GROUP: tl.constexpr,  # query heads per KV head
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_H: tl.constexpr,  # KV_GROUP rounded up to a power of two >= 16 (tl.dot minimum)
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_DTYPE: tl.constexpr,  # see triton_utils.dot_operand_dtype
    DOT_PRECISION: tl.constexpr,
):
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    seq_len = tl.load(seq_lens_ptr + req)
    split_len = tl.cdiv(seq_len, NUM_SPLITS)
    split_start = split * split_len
    split_end = tl.minimum(split_start + split_len, seq_len)
    # Short requests leave trailing splits empty; stage 2 recomputes this and skips them.
    if split_end <= split_start:
        return

    row = tl.load(req_pool_indices_ptr + req).to(tl.int64)
    offs_g = tl.arange(0, BLOCK_H)
    heads = kv_head * KV_GROUP + offs_g  # the query heads sharing this KV head
    h_valid = offs_g < KV_GROUP
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < HEAD_DIM

    q = tl.load(
        q_ptr + req * stride_q_req + heads[:, None] * stride_q_head + offs_d[None, :],
        mask=h_valid[:, None] & d_valid[None, :],
        other=0.0,
    )  # [BLOCK_H, BLOCK_D]
    # Round q to the pool dtype once (the GPU multiplies pool-dtype operands).
    q = q.to(k_cache_ptr.dtype.element_ty).to(DOT_DTYPE)

    m_i = tl.full([BLOCK_H], -1.0e30, dtype=tl.float32)  # finite: see extend kernel
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], dtype=tl.float32)
    for start_n in range(split_start, split_end, BLOCK_N):
        offs_kv = start_n + offs_n
        n_valid = offs_kv < split_end
        slots = tl.load(
            req_to_token_ptr + row * stride_r2t_row + offs_kv, mask=n_valid, other=0
        ).to(tl.int64)
        kv_mask = n_valid[:, None] & d_valid[None, :]
        k = load_pool_tile(
            k_cache_ptr, slots, stride_k_slot, kv_head, stride_k_head, offs_d, kv_mask
        )  # [BLOCK_N, BLOCK_D]
        qk = (
            tl.dot(q, tl.trans(k.to(DOT_DTYPE)), input_precision=DOT_PRECISION) * qk_scale
        )  # [BLOCK_H, BLOCK_N]
        qk = tl.where(n_valid[None, :], qk, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_pool_tile(
            v_cache_ptr, slots, stride_v_slot, kv_head, stride_v_head, offs_d, kv_mask
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None] + tl.dot(
            p.to(v.dtype).to(DOT_DTYPE), v.to(DOT_DTYPE), input_precision=DOT_PRECISION
        )
        m_i = m_new

    num_heads = tl.num_programs(1) * KV_GROUP
    mid_row = (req * num_heads + heads).to(tl.int64) * NUM_SPLITS + split  # [BLOCK_H]
    tl.store(
        mid_o_ptr + mid_row[:, None] * HEAD_DIM + offs_d[None, :],
        acc / l_i[:, None],
        mask=h_valid[:, None] & d_valid[None, :],
    )
    tl.store(mid_lse_ptr + mid_row, m_i + tl.log2(l_i), mask=h_valid)


@triton.jit
def _decode_reduce_kernel(
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    seq_lens_ptr,
    stride_o_req,
    stride_o_head,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,  # NUM_SPLITS rounded up to a power of two
    BLOCK_D: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    num_heads = tl.num_programs(1)

    seq_len = tl.load(seq_lens_ptr + req)
    split_len = tl.cdiv(seq_len, NUM_SPLITS)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < HEAD_DIM
    # Exactly the splits stage 1 wrote: the others hold uninitialised memory.
    s_valid = (offs_s < NUM_SPLITS) & (offs_s * split_len < seq_len)

    mid_row = (req * num_heads + head).to(tl.int64) * NUM_SPLITS + offs_s  # [BLOCK_S]
    lse = tl.load(mid_lse_ptr + mid_row, mask=s_valid, other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, 0))  # [BLOCK_S], 0 for skipped splits
    partial = tl.load(
        mid_o_ptr + mid_row[:, None] * HEAD_DIM + offs_d[None, :],
        mask=s_valid[:, None] & d_valid[None, :],
        other=0.0,
    )  # [BLOCK_S, BLOCK_D]
    out = tl.sum(partial * weight[:, None], 0) / tl.sum(weight, 0)
    tl.store(
        out_ptr + req * stride_o_req + head * stride_o_head + offs_d,
        out.to(out_ptr.dtype.element_ty),
        mask=d_valid,
    )


def choose_num_kv_splits(
    batch: int, num_kv_heads: int, max_seq_len: int, device: torch.device
) -> int:
    """Splits per request: enough programs for ~4 waves over the GPU's multiprocessors,
    but no split shorter than _MIN_SPLIT_LEN keys. A power of two, so few kernel variants
    get compiled."""
    programs = batch * num_kv_heads
    want = triton.cdiv(4 * multiprocessor_count(device), programs)
    by_len = triton.cdiv(max_seq_len, _MIN_SPLIT_LEN)
    return min(_MAX_SPLITS, triton.next_power_of_2(max(1, min(want, by_len))))


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
    *,
    num_kv_splits: int | None = None,
    block_n: int = 64,
) -> torch.Tensor:
    """One query per request over its whole KV (the new token's K/V already stored).

    q: [batch, num_heads, head_dim] -> out: same shape (written in place when given).
    max_seq_len picks the number of KV splits — pass it to avoid a device sync, or pass
    num_kv_splits directly (fixed launch shapes, e.g. under CUDA graphs).
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    if num_heads % num_kv_heads != 0:
        raise ValueError(
            f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
        )
    if out is None:
        out = torch.empty_like(q)
    if batch == 0:
        return out
    if num_kv_splits is None:
        if max_seq_len is None:
            max_seq_len = int(seq_lens.max())
        num_kv_splits = choose_num_kv_splits(batch, num_kv_heads, max_seq_len, q.device)
    kv_group = num_heads // num_kv_heads

    q = last_dim_contiguous(q)
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1, "KV pool must be contiguous"
    assert out.stride(-1) == 1, "out must have a unit-stride last axis"
    assert req_to_token.stride(-1) == 1, "req_to_token must be row-major"

    # Partial results stay fp32 so the merge adds no rounding of its own.
    mid_o = torch.empty(
        (batch, num_heads, num_kv_splits, head_dim), dtype=torch.float32, device=q.device
    )
    mid_lse = torch.empty((batch, num_heads, num_kv_splits), dtype=torch.float32, device=q.device)
    block_d = max(16, triton.next_power_of_2(head_dim))

    _decode_partial_kernel[(batch, num_kv_heads, num_kv_splits)](
        q,
        k_cache,
        v_cache,
        req_to_token,
        req_pool_indices,
        seq_lens,
        mid_o,
        mid_lse,
        sm_scale * _LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        req_to_token.stride(0),
        KV_GROUP=kv_group,
        HEAD_DIM=head_dim,
        NUM_SPLITS=num_kv_splits,
        BLOCK_H=max(16, triton.next_power_of_2(kv_group)),
        BLOCK_D=block_d,
        BLOCK_N=block_n,
        DOT_DTYPE=dot_operand_dtype(k_cache.dtype, q.device),
        DOT_PRECISION=dot_precision(k_cache.dtype),
        num_warps=4,
    )
    _decode_reduce_kernel[(batch, num_heads)](
        mid_o,
        mid_lse,
        out,
        seq_lens,
        out.stride(0),
        out.stride(1),
        HEAD_DIM=head_dim,
        NUM_SPLITS=num_kv_splits,
        BLOCK_S=triton.next_power_of_2(num_kv_splits),
        BLOCK_D=block_d,
        num_warps=2,
    )
    return out
