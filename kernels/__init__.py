"""Attention and layer kernels over the token-level KV pool.

`radixlm.kernels` exposes one function per op and dispatches per call: the Triton kernel
for CUDA tensors; for CPU tensors, attention goes through `cpu_attention.py` (the reference
math, reorganised so KV shared by the whole batch is read once), the KV store, RMSNorm, RoPE
and SwiGLU through `cpu_ops.py` (C kernels, fused ATen ops), linear layers through
`cpu_ops.linear` (oneDNN on weights prepacked at load, `prepack_weight`) and the rest
through the plain-torch reference (`reference.py`, also the test oracle). Set the environment variable
RADIXLM_KERNELS=reference (or call `set_backend("reference")`) to force the reference path;
"triton" forces the Triton path (on CPU only under TRITON_INTERPRET=1).

`shared_prefix_len` (the batch's common KV prefix, see ForwardBatch) and `memo` (a dict that
lives for one forward, so index tensors derived from the batch are built by the first layer
and reused by the others) are optimisation hints: only the CPU path uses them and results
do not depend on them.
"""

from __future__ import annotations

import os

from radixlm.kernels import cpu_attention, cpu_gemm, cpu_ops, reference

_BACKEND = os.environ.get("RADIXLM_KERNELS", "auto")


def set_backend(name: str) -> None:
    """Choose "auto" (Triton on CUDA, the CPU kernels on CPU), "reference" or "triton"."""
    global _BACKEND
    if name not in ("auto", "reference", "triton"):
        raise ValueError(f"kernel backend must be auto, reference or triton (got {name!r})")
    _BACKEND = name


def get_backend() -> str:
    return _BACKEND


def _use_triton(t) -> bool:
    if _BACKEND == "reference":
        return False
    if _BACKEND == "triton":
        return True
    return t.is_cuda


def store_kv(k_cache, v_cache, out_cache_loc, k, v) -> None:
    if _use_triton(k):
        from radixlm.kernels import triton_ops

        return triton_ops.store_kv(k_cache, v_cache, out_cache_loc, k, v)
    if _BACKEND == "reference":
        return reference.store_kv(k_cache, v_cache, out_cache_loc, k, v)
    return cpu_ops.store_kv(k_cache, v_cache, out_cache_loc, k, v)


def extend_attention(q, *args, shared_prefix_len: int = 0, memo: dict | None = None, **kwargs):
    if _use_triton(q):
        from radixlm.kernels import triton_ops

        return triton_ops.extend_attention(q, *args, **kwargs)
    if _BACKEND == "reference":
        return reference.extend_attention(q, *args, **kwargs)
    return cpu_attention.extend_attention(q, *args, shared_prefix_len=shared_prefix_len, memo=memo, **kwargs)


def decode_attention(q, *args, shared_prefix_len: int = 0, memo: dict | None = None, **kwargs):
    if _use_triton(q):
        from radixlm.kernels import triton_ops

        return triton_ops.decode_attention(q, *args, **kwargs)
    if _BACKEND == "reference":
        return reference.decode_attention(q, *args, **kwargs)
    return cpu_attention.decode_attention(q, *args, shared_prefix_len=shared_prefix_len, memo=memo, **kwargs)


def rms_norm(x, weight, eps, residual=None):
    if _use_triton(x):
        from radixlm.kernels import triton_ops

        return triton_ops.rms_norm(x, weight, eps, residual)
    if _BACKEND == "reference":
        return reference.rms_norm(x, weight, eps, residual)
    return cpu_ops.rms_norm(x, weight, eps, residual)


def silu_and_mul(x):
    if _use_triton(x):
        from radixlm.kernels import triton_ops

        return triton_ops.silu_and_mul(x)
    if _BACKEND == "reference" or x.is_cuda:
        return reference.silu_and_mul(x)
    return cpu_ops.silu_and_mul(x)


def rotary(x, cos, signed_sin):
    """x [tokens, heads, dim] rotated by the positions whose (cos, signed sin) these are
    (RotaryEmbedding.lookup); a new tensor."""
    if _BACKEND == "reference" or x.is_cuda:
        return reference.rotary(x, cos, signed_sin)
    return cpu_ops.rotary(x, cos, signed_sin)


def linear(x, weight, bias=None, packed=None):
    """y = x @ weight.T + bias, weight stored [out, in] as in Hugging Face checkpoints;
    `packed` is `prepack_weight(weight)` (CPU only; ignored elsewhere)."""
    if x.is_cuda or _BACKEND == "reference":
        return reference.linear(x, weight, bias)
    return cpu_ops.linear(x, weight, bias, packed)


def prepack_weight(weight):
    """A copy of a CPU float32 linear weight in oneDNN's blocked layout, or None where that
    does not apply (CUDA, other dtypes, no oneDNN); pass it to `linear` as `packed`."""
    return cpu_ops.prepack_weight(weight)


def panel_weight(weight, large=None):
    """A copy of a CPU float32 / bfloat16 linear weight in the C column panels (cpu_gemm.py) for up to
    its `max_rows` rows, `large` (a `prepack_weight` copy, or None: MKL) above; None where
    the panels do not apply (CUDA, other dtypes, no C compiler; bf16 without AVX512-BF16).
    Pass it to `linear` as `packed`."""
    return cpu_gemm.pack(weight, large)
