"""Device-side helper shared by the attention kernels: load one tile of the KV pool."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_pool_tile(cache_ptr, slots, stride_slot, kv_head, stride_head, offs_d, mask):
    """Rows `slots` [BLOCK_N] of one KV head of a pool buffer -> [BLOCK_N, BLOCK_D] (0 where
    masked). Slots come from req_to_token, so the rows are scattered across the pool."""
    return tl.load(
        cache_ptr + slots[:, None] * stride_slot + kv_head * stride_head + offs_d[None, :],
        mask=mask,
        other=0.0,
    )
