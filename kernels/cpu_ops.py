"""Fewer, fused ops for the CPU path (same results as reference.py).

At batch 1 a decode step on the CPU runs ~30 small ops per layer besides the matmuls, and
each op costs several microseconds of dispatch whatever its size, so the reference's
op-by-op RMSNorm (add, pow, mean, add, rsqrt, mul, mul) and scatter by advanced indexing are
a measurable share of the step. Here: the elementwise ops in C where they apply
(cpu_elementwise.py: RoPE, SwiGLU, add + RMSNorm, float32), else ATen's fused `rms_norm`
(float32 only: it computes in the input dtype, the reference in float32) and the reference;
`index_copy_` for the KV store; and a linear layer that multiplies by oneDNN-prepacked
weights or by the C column panels (cpu_gemm.py), or, without either, picks the faster MKL
GEMM shape for small batches.
"""

from __future__ import annotations

import torch

from radixlm.kernels import cpu_elementwise, cpu_gemm, reference


def store_kv(k_cache, v_cache, out_cache_loc, k, v) -> None:
    k_cache.index_copy_(0, out_cache_loc, k.to(k_cache.dtype))
    v_cache.index_copy_(0, out_cache_loc, v.to(v_cache.dtype))


def rms_norm(x, weight, eps, residual=None):
    if (out := cpu_elementwise.rms_norm(x, weight, eps, residual)) is not None:
        return out
    if x.dtype != torch.float32 or weight.dtype != torch.float32:
        return reference.rms_norm(x, weight, eps, residual)
    if residual is not None:
        x = torch.add(x, residual)
    normed = torch.rms_norm(x, (x.shape[-1],), weight, eps)
    return normed if residual is None else (normed, x)


def silu_and_mul(x):
    out = cpu_elementwise.silu_and_mul(x)
    return reference.silu_and_mul(x) if out is None else out


def rotary(x, cos, signed_sin):
    out = cpu_elementwise.rotary(x, cos, signed_sin)
    return reference.rotary(x, cos, signed_sin) if out is None else out


# Measured on the 2-core CPU (fp32, SmolLM2's 30 layers of shapes plus the 49152-wide
# lm_head, docs/benchmarks.md): oneDNN's matmul on weights reordered once into its blocked
# layout beats MKL's sgemm from 2 to 2048 rows — 1.1-1.7x on the whole model's linear work
# at 2-128 rows, 1.4-1.8x on the lm_head — because MKL re-packs the weight on every call
# and has no fast kernel for few rows; at 1 row the two tie. The reordered copy costs one more copy of
# the weights in memory (`--disable-weight-prepack` turns it off).
PACK_ROWS_HINT = 64  # oneDNN picks the blocked layout for this many rows; 8-512 measured alike


PACKED_DTYPES = (torch.float32, torch.bfloat16)


def prepack_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """oneDNN-blocked copy of a float32 or bfloat16 CPU weight [out, in] for `linear(...,
    packed=)`, or None where oneDNN is missing or its result disagrees with the float32
    product (then `linear` keeps the plain path). In bfloat16 oneDNN uses the CPU's bf16 dot
    products (AVX512-BF16, AMX) where it has them: 1.7-2x the float32 matmul on AVX512-BF16
    (docs/benchmarks.md, "bfloat16 on the CPU")."""
    if weight.is_cuda or weight.dtype not in PACKED_DTYPES or not torch.backends.mkldnn.is_available():
        return None
    try:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS_HINT)
            probe = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0))  # not the global RNG
            probe = probe.to(weight.dtype)
            got = _onednn_linear(probe, packed, None).float()
            want = torch.nn.functional.linear(probe.float(), weight.float())
    except (RuntimeError, AttributeError):  # a torch build without these private ops
        return None
    # bf16 output rounding: 2^-8 relative; float32 only summation order.
    tol = 1e-4 if weight.dtype == torch.float32 else 1e-2
    return packed if torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max())) else None


def _onednn_linear(x, packed, bias):
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# Without prepacked weights, measured on the same CPU: for 2..64 rows F.linear (x @ W^T with
# W stored [out, in]) takes a slow path, up to 2.6x slower than computing (W @ x^T)^T; at 1
# row the two tie and from ~128 rows F.linear wins. Above 8 rows MKL's kernel is also much
# slower for row counts that are not a multiple of 8 (e.g. 14 rows: 84 ms vs 49 ms for 16,
# same 120 matmuls), so those are padded with zero rows. oneDNN has neither problem.
SMALL_BATCH_ROWS = range(2, 65)
ROW_MULTIPLE = 8


def linear(x, weight, bias=None, packed=None):
    """x @ weight.T + bias; `packed` selects oneDNN (from `prepack_weight(weight)`) or the C
    column panels (a cpu_gemm.PanelWeight: up to its `max_rows` rows, oneDNN or MKL above)."""
    if isinstance(packed, cpu_gemm.PanelWeight):
        if cpu_gemm.serves(x, packed):
            out = cpu_gemm.linear(x, packed)
            return out if bias is None else out.add_(bias)
        packed = packed.large
    if packed is not None and x.dim() == 2 and x.dtype == packed.dtype:
        return _onednn_linear(x, packed, bias)
    rows = x.shape[0] if x.dim() == 2 else 0
    if rows not in SMALL_BATCH_ROWS or weight.dtype != torch.float32:
        return torch.nn.functional.linear(x, weight, bias)
    padded = -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE
    if rows > ROW_MULTIPLE and padded != rows:
        x = torch.cat([x, x.new_zeros(padded - rows, x.shape[1])])
    out = torch.mm(weight, x.t())[:, :rows].t().contiguous()
    return out if bias is None else out.add_(bias)
