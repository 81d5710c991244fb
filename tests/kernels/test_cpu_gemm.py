"""The C column-panel linear (kernels/cpu_gemm.py) against a float64 product: row counts
across its register tiles (1-12 rows each) up to its limit, output widths that are not a
multiple of a panel, inner sizes that are not a multiple of its k-chunk; its error no larger
in kind than MKL's; in bfloat16 (where the CPU has AVX512-BF16) against the float64 product
of the same bfloat16 values, within its output rounding; the dispatch in cpu_ops.linear on
either side of MAX_ROWS."""

from __future__ import annotations

import pytest
import torch

from radixlm import kernels
from radixlm.kernels import cpu_gemm, cpu_ops

pytestmark = pytest.mark.skipif(cpu_gemm.pack(torch.zeros(2, 2)) is None, reason="no C compiler")
needs_bf16 = pytest.mark.skipif(cpu_gemm.pack(torch.zeros(2, 2, dtype=torch.bfloat16)) is None,
                                reason="no AVX512-BF16 on this CPU")


@pytest.mark.parametrize("rows", [1, 2, 11, 12, 13, 25, 32, 64])
@pytest.mark.parametrize("shape", [(960, 576), (45, 70), (33, 1536), (3, 5)])
def test_panel_linear_matches_float64(rows, shape):
    g = torch.Generator().manual_seed(rows * 7 + shape[0])
    w = torch.randn(*shape, generator=g) * 0.05
    x = torch.randn(rows, shape[1], generator=g)
    want = x.double() @ w.double().t()
    got = cpu_gemm.linear(x, cpu_gemm.pack(w))
    mkl_err = (torch.nn.functional.linear(x, w).double() - want).abs().max().item()
    err = (got.double() - want).abs().max().item()
    assert got.shape == (rows, shape[0]) and got.dtype == torch.float32
    assert err <= max(4 * mkl_err, 1e-6), (err, mkl_err)  # chunked sums: MKL's order of error


@needs_bf16
@pytest.mark.parametrize("rows", [1, 11, 13, 32, 64])
@pytest.mark.parametrize("shape", [(960, 576), (45, 70), (33, 1536)])
def test_bf16_panel_linear_matches_float64(rows, shape):
    g = torch.Generator().manual_seed(rows * 7 + shape[0])
    w = (torch.randn(*shape, generator=g) * 0.05).bfloat16()
    x = torch.randn(rows, shape[1], generator=g).bfloat16()
    want = x.double() @ w.double().t()
    got = cpu_gemm.linear(x, cpu_gemm.pack(w))
    assert got.shape == (rows, shape[0]) and got.dtype == torch.bfloat16
    # Products of bf16 values are exact in float32 and the sums float32's: what remains is
    # the output's rounding to bf16 (half a unit of its 8-bit mantissa) plus float32 sums.
    torch.testing.assert_close(got.double(), want, rtol=2**-8 + 1e-5, atol=1e-5)


def test_linear_dispatch_on_either_side_of_the_row_limit():
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(100, 64, generator=g), torch.randn(100, generator=g)
    pw = kernels.panel_weight(w, cpu_ops.prepack_weight(w))
    for rows in (1, cpu_gemm.MAX_ROWS, cpu_gemm.MAX_ROWS + 1, 300):
        x = torch.randn(rows, 64, generator=g)
        torch.testing.assert_close(cpu_ops.linear(x, w, b, pw), torch.nn.functional.linear(x, w, b),
                                   atol=1e-4, rtol=1e-4)
    without_onednn = kernels.panel_weight(w)  # above the limit: MKL on the plain weight
    x = torch.randn(200, 64, generator=g)
    torch.testing.assert_close(cpu_ops.linear(x, w, None, without_onednn), x @ w.t(), atol=1e-4, rtol=1e-4)


def test_no_panels_where_they_do_not_apply():
    assert cpu_gemm.pack(torch.zeros(4, 4, dtype=torch.float16)) is None
    assert cpu_gemm.pack(torch.zeros(4, 5, dtype=torch.bfloat16)) is None  # odd inner size: no k-pairs
    assert cpu_gemm.pack(torch.zeros(4)) is None
    assert not cpu_gemm.serves(torch.zeros(3, 5), cpu_gemm.pack(torch.zeros(4, 4)))  # wrong inner size
    assert not cpu_gemm.serves(torch.zeros(3, 4, dtype=torch.bfloat16), cpu_gemm.pack(torch.zeros(4, 4)))
