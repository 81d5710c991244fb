"""Host-side helpers shared by the Triton kernel launchers (no kernels live here)."""

from __future__ import annotations

import functools

import torch
import triton.language as tl

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    """`x` with unit stride on its last axis (the kernels index head_dim / hidden that way).

    Q/K/V sliced from a fused qkv projection already satisfy this, so the copy is rare.
    """
    return x if x.stride(-1) == 1 else x.contiguous()


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision: fp32 inputs get exact "ieee" products instead of the TF32
    default (10-bit mantissa), so an fp32 pool keeps fp32 accuracy; 16-bit inputs are exact
    either way."""
    return "ieee" if dtype == torch.float32 else "tf32"


def dot_operand_dtype(kv_dtype: torch.dtype, device: torch.device) -> tl.dtype:
    """The dtype `tl.dot` operands are cast to: the pool's dtype on the GPU (tensor cores).

    Off CUDA the kernels run in the interpreter (TRITON_INTERPRET=1), whose numpy backend
    has no bfloat16 arithmetic (it silently computes garbage on bf16 operands), so operands
    are first rounded to the pool dtype — the same values the GPU multiplies — and then
    widened to fp32 for the product.
    """
    if device.type != "cuda":
        return tl.float32
    if kv_dtype not in _TL_DTYPES:
        raise TypeError(f"KV pool dtype must be float32, bfloat16 or float16 (got {kv_dtype})")
    return _TL_DTYPES[kv_dtype]


@functools.cache
def _cuda_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def multiprocessor_count(device: torch.device) -> int:
    """Streaming multiprocessors on `device`; a nominal 8 off CUDA (the CPU interpreter)."""
    if device.type != "cuda":
        return 8
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())
