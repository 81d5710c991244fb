"""Triton `store_kv`: scatter this forward's K/V rows into one layer's token-level pool.

One program per new token copies its [num_kv_heads, head_dim] K and V rows to the pool slot
`out_cache_loc[i]`, casting to the pool's dtype. Same contract as `reference.store_kv`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixlm.kernels.triton_utils import last_dim_contiguous


@triton.jit
def _store_kv_kernel(
    k_cache_ptr,
    v_cache_ptr,
    out_cache_loc_ptr,
    k_ptr,
    v_ptr,
    stride_kc_slot,
    stride_kc_head,
    stride_vc_slot,
    stride_vc_head,
    stride_k_tok,
    stride_k_head,
    stride_v_tok,
    stride_v_head,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    token = tl.program_id(0)
    # int64 before multiplying by the slot stride: large pools overflow int32 offsets.
    slot = tl.load(out_cache_loc_ptr + token).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < NUM_KV_HEADS) & (offs_d[None, :] < HEAD_DIM)  # [BLOCK_H, BLOCK_D]

    k = tl.load(
        k_ptr + token * stride_k_tok + offs_h[:, None] * stride_k_head + offs_d[None, :],
        mask=mask,
    )
    tl.store(
        k_cache_ptr + slot * stride_kc_slot + offs_h[:, None] * stride_kc_head + offs_d[None, :],
        k.to(k_cache_ptr.dtype.element_ty),
        mask=mask,
    )
    v = tl.load(
        v_ptr + token * stride_v_tok + offs_h[:, None] * stride_v_head + offs_d[None, :],
        mask=mask,
    )
    tl.store(
        v_cache_ptr + slot * stride_vc_slot + offs_h[:, None] * stride_vc_head + offs_d[None, :],
        v.to(v_cache_ptr.dtype.element_ty),
        mask=mask,
    )


def store_kv(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    out_cache_loc: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
) -> None:
    """Scatter new K/V rows into the pool in place: `k_cache[out_cache_loc[i]] = k[i]`.

    k, v: [num_tokens, num_kv_heads, head_dim]; out_cache_loc: [num_tokens] int32/int64.
    """
    num_tokens, num_kv_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1, "KV pool must be contiguous"
    k = last_dim_contiguous(k)
    v = last_dim_contiguous(v)
    out_cache_loc = out_cache_loc.contiguous()
    _store_kv_kernel[(num_tokens,)](
        k_cache,
        v_cache,
        out_cache_loc,
        k,
        v,
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        NUM_KV_HEADS=num_kv_heads,
        HEAD_DIM=head_dim,
        BLOCK_H=triton.next_power_of_2(num_kv_heads),
        BLOCK_D=triton.next_power_of_2(head_dim),
    )
