"""Fewer, fused ops for the CPU path (same results as reference.py).

At batch 1 a decode step on the CPU runs ~30 small ops per layer besides the matmuls, and
each op costs several microseconds of dispatch whatever its size, so the reference's
op-by-op RMSNorm (add, pow, mean, add, rsqrt, mul, mul) and scatter by advanced indexing are
a measurable share of the step. Here: ATen's fused `rms_norm` (float32 only: it computes in
the input dtype, the reference in float32), `index_copy_` for the KV store, and a linear
layer that picks the faster GEMM shape for small batches.
"""

from __future__ import annotations

import torch

from radixlm.kernels import reference


def store_kv(k_cache, v_cache, out_cache_loc, k, v) -> None:
    k_cache.index_copy_(0, out_cache_loc, k.to(k_cache.dtype))
    v_cache.index_copy_(0, out_cache_loc, v.to(v_cache.dtype))


def rms_norm(x, weight, eps, residual=None):
    if x.dtype != torch.float32 or weight.dtype != torch.float32:
        return reference.rms_norm(x, weight, eps, residual)
    if residual is not None:
        x = torch.add(x, residual)
    normed = torch.rms_norm(x, (x.shape[-1],), weight, eps)
    return normed if residual is None else (normed, x)


# Measured on the 2-core CPU (fp32, SmolLM2's 30 layers of shapes, docs/benchmarks.md):
# for 2..64 rows F.linear (x @ W^T with W stored [out, in]) takes a slow path, up to 2.6x
# slower than computing (W @ x^T)^T; at 1 row the two tie and from ~128 rows F.linear wins.
# Above 8 rows MKL's kernel is also much slower for row counts that are not a multiple of 8
# (e.g. 14 rows: 84 ms vs 49 ms for 16, same 120 matmuls), so those are padded with zero rows.
SMALL_BATCH_ROWS = range(2, 65)
ROW_MULTIPLE = 8


def linear(x, weight, bias=None):
    rows = x.shape[0] if x.dim() == 2 else 0
    if rows not in SMALL_BATCH_ROWS or weight.dtype != torch.float32:
        return torch.nn.functional.linear(x, weight, bias)
    padded = -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE
    if rows > ROW_MULTIPLE and padded != rows:
        x = torch.cat([x, x.new_zeros(padded - rows, x.shape[1])])
    out = torch.mm(weight, x.t())[:, :rows].t().contiguous()
    return out if bias is None else out.add_(bias)
