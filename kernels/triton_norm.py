"""Triton `rms_norm`: RMSNorm over the last dim, optionally fused with the residual add.

One program per row. With a residual it computes `new_residual = x + residual` (rounded to
the activation dtype, exactly like the reference's tensor add) and normalises that, saving
a separate elementwise kernel and a round trip through memory per decoder layer. The
statistics and the scaling are fp32. Same contract as `reference.rms_norm`: inputs are not
modified, fresh tensors are returned.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixlm.kernels.triton_utils import last_dim_contiguous


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    residual_ptr,
    weight_ptr,
    out_ptr,
    new_residual_ptr,
    stride_x_row,
    stride_r_row,
    stride_o_row,
    stride_nr_row,
    hidden,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,  # hidden rounded up to a power of two: the whole row in registers
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < hidden
    x = tl.load(x_ptr + row * stride_x_row + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(residual_ptr + row * stride_r_row + offs, mask=mask, other=0.0).to(tl.float32)
        # Round the sum to the residual-stream dtype first: that rounded value is both what
        # the next layer adds onto and what gets normalised, as in the reference.
        summed = (x + r).to(new_residual_ptr.dtype.element_ty)
        tl.store(new_residual_ptr + row * stride_nr_row + offs, summed, mask=mask)
        x = summed.to(tl.float32)
    mean_sq = tl.sum(x * x, 0) / hidden  # masked lanes loaded as 0 add nothing
    rstd = 1.0 / tl.sqrt(mean_sq + eps)
    w = tl.load(weight_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(
        out_ptr + row * stride_o_row + offs, (x * rstd * w).to(out_ptr.dtype.element_ty), mask=mask
    )


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim; with `residual`, returns (normed, x + residual).

    x (and residual): [..., hidden]; weight: [hidden]. Outputs take the dtype of x (of
    x + residual when a residual is given, following torch type promotion).
    """
    hidden = x.shape[-1]
    out_dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    x2 = last_dim_contiguous(x.reshape(-1, hidden))  # [rows, hidden]
    rows = x2.shape[0]
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    out2 = out.view(-1, hidden)
    if residual is not None:
        r2 = last_dim_contiguous(residual.reshape(-1, hidden))
        new_residual = torch.empty(x.shape, dtype=out_dtype, device=x.device)
        nr2 = new_residual.view(-1, hidden)
    else:
        # The kernel never touches these when HAS_RESIDUAL is false; any tensor will do.
        r2, new_residual, nr2 = x2, None, out2
    if rows > 0:
        block = triton.next_power_of_2(hidden)
        _rms_norm_kernel[(rows,)](
            x2,
            r2,
            weight.contiguous(),
            out2,
            nr2,
            x2.stride(0),
            r2.stride(0),
            out2.stride(0),
            nr2.stride(0),
            hidden,
            eps,
            HAS_RESIDUAL=residual is not None,
            BLOCK=block,
            num_warps=min(max(block // 256, 1), 8),
        )
    return out if new_residual is None else (out, new_residual)
