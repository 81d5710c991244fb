"""Attention over the token-level KV pool: store this forward's K/V, then attend.

The layer owns no cache; it reads the pool buffers and index tensors from the ForwardBatch
and calls `radixlm.kernels`, which picks Triton on CUDA and the torch reference elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

from radixlm import kernels
from radixlm.runtime.model.forward_batch import ForwardBatch, ForwardMode


class PoolAttention(nn.Module):
    def __init__(self, layer_id: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fb: ForwardBatch
    ) -> torch.Tensor:
        """q: [tokens, heads, dim]; k, v: [tokens, kv_heads, dim] -> [tokens, heads * dim]."""
        k_cache, v_cache = fb.k_buffers[self.layer_id], fb.v_buffers[self.layer_id]
        kernels.store_kv(k_cache, v_cache, fb.out_cache_loc, k, v)
        if fb.mode is ForwardMode.DECODE:
            o = kernels.decode_attention(
                q, k_cache, v_cache, fb.req_to_token, fb.req_pool_indices, fb.seq_lens,
                self.scale, max_seq_len=fb.max_seq_len, shared_prefix_len=fb.shared_prefix_len, memo=fb.kernel_memo,
            )
        else:
            o = kernels.extend_attention(
                q, k_cache, v_cache, fb.req_to_token, fb.req_pool_indices, fb.prefix_lens,
                fb.extend_lens, fb.extend_start_loc, self.scale,
                max_seq_len=fb.max_seq_len, max_extend_len=fb.max_extend_len,
                shared_prefix_len=fb.shared_prefix_len, memo=fb.kernel_memo,
            )
        return o.reshape(o.shape[0], self.num_heads * self.head_dim)
