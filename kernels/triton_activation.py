"""Triton `silu_and_mul`: the SwiGLU activation on a fused [gate | up] projection.

One pass reads gate and up and writes silu(gate) * up, computed in fp32 and rounded once,
instead of the reference's two elementwise kernels and an intermediate tensor.
Same contract as `reference.silu_and_mul`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixlm.kernels.triton_utils import last_dim_contiguous


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    stride_x_row,
    stride_o_row,
    d,  # half the input width: gate is x[:, :d], up is x[:, d:]
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < d
    gate = tl.load(x_ptr + row * stride_x_row + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x_row + d + offs, mask=mask, other=0.0).to(tl.float32)
    out = gate * tl.sigmoid(gate) * up
    tl.store(out_ptr + row * stride_o_row + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x: [..., 2 * d] = [gate | up] -> silu(gate) * up: [..., d]."""
    width = x.shape[-1]
    if width % 2 != 0:
        raise ValueError(f"silu_and_mul needs an even last dim (got {width})")
    d = width // 2
    x2 = last_dim_contiguous(x.reshape(-1, width))  # [rows, 2 * d]
    out = torch.empty((*x.shape[:-1], d), dtype=x.dtype, device=x.device)
    out2 = out.view(-1, d)
    rows = x2.shape[0]
    if rows > 0 and d > 0:
        block = min(1024, triton.next_power_of_2(d))
        _silu_and_mul_kernel[(rows, triton.cdiv(d, block))](
            x2, out2, x2.stride(0), out2.stride(0), d, BLOCK=block, num_warps=4
        )
    return out
