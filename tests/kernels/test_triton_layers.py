"""Triton rms_norm / silu_and_mul against the reference, plus the Triton module's contract
(reference signatures, backend dispatch). Interpreted on CPU (conftest); the `gpu` cases
run serving sizes on the compiled kernels."""

from __future__ import annotations

import inspect

import pytest
import torch

import radixlm.kernels as kernels
from radixlm.kernels import reference

pytest.importorskip(
    "triton", reason="triton is not importable (pip install triton)", exc_type=ImportError
)

from radixlm.kernels import triton_ops  # noqa: E402  (after the importorskip above)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DTYPE_IDS = ["fp32", "bf16", "fp16"]


def randn(*shape: int, dtype: torch.dtype, device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(dtype).to(device)


# --- rms_norm ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "shape", [(1, 576), (7, 64), (2, 3, 100)], ids=["one-row-smollm2", "pow2-width", "3d-odd-width"]
)
def test_rms_norm_matches_reference(device, assert_kernel_close, dtype, shape):
    x = randn(*shape, dtype=dtype, device=device, seed=1)
    weight = randn(shape[-1], dtype=dtype, device=device, seed=2)
    out = triton_ops.rms_norm(x, weight, 1e-5)
    assert out.shape == x.shape and out.dtype == dtype
    assert_kernel_close(out, reference.rms_norm(x.float(), weight.float(), 1e-5), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rms_norm_with_residual_returns_normed_sum_and_new_residual(
    device, assert_kernel_close, dtype
):
    x = randn(5, 576, dtype=dtype, device=device, seed=3)
    residual = randn(5, 576, dtype=dtype, device=device, seed=4)
    weight = randn(576, dtype=dtype, device=device, seed=5)
    x_before, residual_before = x.clone(), residual.clone()
    normed, new_residual = triton_ops.rms_norm(x, weight, 1e-6, residual)
    ref_normed, ref_residual = reference.rms_norm(x, weight, 1e-6, residual)
    # The new residual is one rounding of x + residual: exact, except that the CPU
    # interpreter rounds fp32 -> bf16 by truncation (one ulp off), hence the tolerance.
    assert_kernel_close(new_residual, ref_residual, dtype)
    if dtype != torch.bfloat16 or device.type == "cuda":
        assert torch.equal(new_residual, ref_residual)
    # Normalise the kernel's own rounded sum in fp32 for the normed output.
    assert_kernel_close(
        normed, reference.rms_norm(new_residual.float(), weight.float(), 1e-6), dtype
    )
    assert_kernel_close(normed, ref_normed, dtype)
    assert torch.equal(x, x_before) and torch.equal(residual, residual_before)


# --- silu_and_mul ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "shape", [(1, 2 * 1536), (5, 2 * 17), (2, 3, 2 * 64)], ids=["two-col-blocks", "odd", "3d"]
)
def test_silu_and_mul_matches_reference(device, assert_kernel_close, dtype, shape):
    x = randn(*shape, dtype=dtype, device=device, seed=6)
    out = triton_ops.silu_and_mul(x)
    assert out.shape == (*shape[:-1], shape[-1] // 2) and out.dtype == dtype
    assert_kernel_close(out, reference.silu_and_mul(x.float()), dtype)


def test_silu_and_mul_reads_a_strided_input(device):
    wide = randn(4, 3 * 96, dtype=torch.float32, device=device, seed=7)
    x = wide[:, : 2 * 96]  # rows 288 apart: a view, not a copy
    torch.testing.assert_close(triton_ops.silu_and_mul(x), reference.silu_and_mul(x))


# --- module contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["store_kv", "extend_attention", "decode_attention", "rms_norm", "silu_and_mul"]
)
def test_triton_ops_take_the_reference_parameters(name):
    """Same positional parameters and defaults; extras are keyword-only tuning knobs."""
    ref = list(inspect.signature(getattr(reference, name)).parameters.values())
    tri = list(inspect.signature(getattr(triton_ops, name)).parameters.values())
    assert [(p.name, p.default, p.kind) for p in tri[: len(ref)]] == [
        (p.name, p.default, p.kind) for p in ref
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in tri[len(ref) :])


def test_forced_triton_backend_dispatches_to_triton(device, monkeypatch):
    calls = []
    monkeypatch.setattr(triton_ops, "silu_and_mul", lambda x: calls.append(x) or x)
    kernels.set_backend("triton")
    try:
        x = torch.randn(2, 8, device=device)
        kernels.silu_and_mul(x)
    finally:
        kernels.set_backend("auto")
    assert len(calls) == 1


# --- serving sizes on a GPU --------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("hidden", [576, 4096])
def test_gpu_layers_match_reference_at_serving_sizes(
    cuda_device, assert_kernel_close, dtype, hidden
):
    x = randn(4096, hidden, dtype=dtype, device=cuda_device, seed=8)
    residual = randn(4096, hidden, dtype=dtype, device=cuda_device, seed=9)
    weight = randn(hidden, dtype=dtype, device=cuda_device, seed=10)
    normed, new_residual = triton_ops.rms_norm(x, weight, 1e-5, residual)
    ref_normed, ref_residual = reference.rms_norm(x, weight, 1e-5, residual)
    assert torch.equal(new_residual, ref_residual)
    assert_kernel_close(normed, ref_normed, dtype)
    gate_up = randn(4096, 2 * 4 * hidden, dtype=dtype, device=cuda_device, seed=11)
    assert_kernel_close(
        triton_ops.silu_and_mul(gate_up), reference.silu_and_mul(gate_up.float()), dtype
    )
