"""The C elementwise ops (kernels/cpu_elementwise.py) against the torch reference: RoPE and
the residual sum bit for bit, SwiGLU and RMSNorm to float32 rounding (to bfloat16 rounding
in bfloat16, where torch's ops run on bfloat16 tensors); one row (the calling thread) and
thousands (the OpenMP team); extreme inputs; and where they decline."""

from __future__ import annotations

import pytest
import torch

from radixlm.kernels import cpu_elementwise, cpu_ops, native_build, reference

pytestmark = pytest.mark.skipif(cpu_elementwise.silu_and_mul(torch.zeros(1, 2)) is None,
                                reason="no C compiler for the native kernels")

ROWS = [1, 5, 2048]  # 2048 rows: well past the size where the team of threads starts
DTYPES = [torch.float32, torch.bfloat16]


def qkv_rows(tokens: int, heads: int, kv_heads: int, head_dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=g)


def cos_sin(tokens: int, head_dim: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(tokens, 1, head_dim, generator=g) * 100
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", ROWS)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(9, 3, 64), (8, 1, 128), (2, 2, 32)])
def test_rotary_is_bit_identical_to_the_reference_on_a_qkv_view(tokens, heads, kv_heads, head_dim, dtype):
    qkv = qkv_rows(tokens, heads, kv_heads, head_dim).to(dtype)
    qk = qkv[:, : (heads + kv_heads) * head_dim].view(tokens, heads + kv_heads, head_dim)  # strided rows
    cos, sin = (t.to(dtype) for t in cos_sin(tokens, head_dim))
    got = cpu_elementwise.rotary(qk, cos, sin)
    assert got is not None and got.is_contiguous() and got.dtype == dtype
    assert torch.equal(got, reference.rotary(qk, cos, sin))


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float32: the exp's and the sum order's ~1e-7; bfloat16: one unit of its 8-bit mantissa."""
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 1e-6}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ROWS)
def test_silu_and_mul_matches_the_reference(rows, dtype):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(rows, 2 * 1536, generator=g) * 4).to(dtype)
    got = cpu_elementwise.silu_and_mul(x)
    assert got is not None and got.dtype == dtype
    torch.testing.assert_close(got, reference.silu_and_mul(x), **tolerance(dtype))


def test_silu_and_mul_at_extremes():
    """Large negative gates underflow to (signed) zero instead of overflowing exp; large
    positive ones pass through; infinities and NaN behave as in torch."""
    gate = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 88.0, -88.0, 1e4, -1e4, 3e38, -3e38,
                         float("inf"), float("nan")])
    x = torch.cat([gate, torch.full_like(gate, 1.5)])[None]
    torch.testing.assert_close(cpu_elementwise.silu_and_mul(x), reference.silu_and_mul(x), rtol=1e-6, atol=1e-30,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_the_reference(rows, with_residual, dtype):
    g = torch.Generator().manual_seed(3)
    x, residual, weight = torch.randn(rows, 576, generator=g), torch.randn(rows, 576, generator=g), torch.rand(576) + 0.5
    x, residual, weight = x.to(dtype), residual.to(dtype), weight.to(dtype)
    if not with_residual:
        got = cpu_elementwise.rms_norm(x, weight, 1e-5)
        assert got.dtype == dtype
        torch.testing.assert_close(got, reference.rms_norm(x, weight, 1e-5), **tolerance(dtype))
        return
    normed, h = cpu_elementwise.rms_norm(x, weight, 1e-5, residual)
    ref_normed, ref_h = reference.rms_norm(x, weight, 1e-5, residual)
    assert torch.equal(h, ref_h)  # the new residual is the exact sum (rounded as torch rounds)
    torch.testing.assert_close(normed, ref_normed, **tolerance(dtype))


def test_bf16_rounding_at_extremes_as_torch():
    """Ties (x * 1.5 lands halfway between bfloat16 neighbours for odd mantissas), overflow to
    infinity, infinities, NaN and subnormals round as torch's bfloat16 ops round them."""
    values = [1 + 2**-7, 1 + 3 * 2**-7, -(1 + 5 * 2**-7), 3e38, -3e38, 1e-38, 1e-40, float("inf"),
              -float("inf"), float("nan"), 0.0, -0.0]
    x = torch.tensor(values * 2).to(torch.bfloat16).view(1, 1, -1)  # x1 and x2 alike
    cos = torch.full_like(x, 1.5)
    sin = torch.full_like(x, -0.5)
    torch.testing.assert_close(cpu_elementwise.rotary(x, cos, sin), reference.rotary(x, cos, sin),
                               rtol=0, atol=0, equal_nan=True)


def test_rms_norm_of_zeros_is_zero_not_nan():
    assert torch.equal(cpu_elementwise.rms_norm(torch.zeros(2, 64), torch.ones(64), 1e-6), torch.zeros(2, 64))


def test_declines_what_it_does_not_serve():
    x = torch.randn(4, 64)
    assert cpu_elementwise.silu_and_mul(x.half()) is None
    assert cpu_elementwise.rms_norm(x.bfloat16(), torch.ones(64), 1e-5) is None  # mixed dtypes
    assert cpu_elementwise.silu_and_mul(x.t()) is None  # not contiguous
    assert cpu_elementwise.rms_norm(x, torch.ones(64).double(), 1e-5) is None
    assert cpu_elementwise.rms_norm(x, torch.ones(64), 1e-5, torch.randn(64, 4).t()) is None  # residual not contiguous
    cos, sin = cos_sin(4, 16)
    heads = x.view(4, 4, 16)
    assert cpu_elementwise.rotary(heads.transpose(0, 1), cos, sin) is None  # heads not laid out in rows
    assert cpu_elementwise.rotary(heads, cos[:2], sin[:2]) is None  # a table for other tokens
    native_build.set_enabled(False)
    try:
        assert cpu_elementwise.silu_and_mul(x) is None
    finally:
        native_build.set_enabled(True)


def test_cpu_ops_fall_back_to_the_reference_where_c_declines():
    x = torch.randn(3, 2, 64, dtype=torch.float64)
    cos, sin = (t.double() for t in cos_sin(3, 64))
    assert torch.equal(cpu_ops.rotary(x, cos, sin), reference.rotary(x, cos, sin))
    y = torch.randn(3, 128).half()
    assert torch.equal(cpu_ops.silu_and_mul(y), reference.silu_and_mul(y))
