"""Shared setup for the kernel tests: interpreter mode, devices, tolerances, pool builders.

Without CUDA the Triton kernels run under the interpreter on CPU tensors. Triton reads
TRITON_INTERPRET when a kernel is *decorated* (module import), so it is set here, at
conftest import, before any test module imports `radixlm.kernels.triton_ops`. With CUDA it
is left alone and the same tests run the compiled kernels on the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

# (atol, rtol) for a kernel output against the fp32 reference on the same rounded inputs.
# One rounding of the output is 2^-8 relative for bf16 and 2^-11 for fp16; the attention
# kernels also round the softmax probabilities to the KV dtype before P @ V (as the GPU's
# tensor cores need), and the CPU interpreter rounds fp32 -> bf16 by truncation rather than
# to nearest. Two units in the last place covers all of it.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (1.6e-2, 1.6e-2),
    torch.float16: (2e-3, 2e-3),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """Compare in fp32 with the tolerance of `dtype`; NaN (an unwritten output) always fails."""
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


@pytest.fixture
def device() -> torch.device:
    """Where the small kernel tests run: CUDA when the kernels are compiled, else CPU."""
    if torch.cuda.is_available() and not INTERPRETED:
        return torch.device("cuda")
    return torch.device("cpu")


@pytest.fixture
def cuda_device() -> torch.device:
    """For the `gpu` tests: realistic sizes on the compiled kernels."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if INTERPRETED:
        pytest.skip("TRITON_INTERPRET=1 is set: the gpu tests time the compiled kernels")
    return torch.device("cuda")


@dataclass
class AttentionBatch:
    """A pool holding a ragged batch, as the runtime lays it out (docs/architecture.md §3).

    Each request's positions map to shuffled, non-contiguous slots in a row of its own
    (rows are not 0..batch-1 either), and every other slot holds random garbage, so a
    kernel that reads the wrong slot, row or head produces a wrong answer rather than a
    lucky one. The new tokens' K/V are already stored, as attention expects.
    """

    k_cache: torch.Tensor  # [num_slots + 1, num_kv_heads, head_dim]
    v_cache: torch.Tensor
    req_to_token: torch.Tensor  # [rows, max_context_len] int32
    req_pool_indices: torch.Tensor  # [batch] int64
    prefix_lens: torch.Tensor  # [batch] int64
    extend_lens: torch.Tensor
    seq_lens: torch.Tensor
    extend_start_loc: torch.Tensor
    out_cache_loc: torch.Tensor  # [num_extend_tokens] slots of the new tokens
    q_extend: torch.Tensor  # [num_extend_tokens, num_heads, head_dim]
    q_decode: torch.Tensor  # [batch, num_heads, head_dim]
    sm_scale: float

    @property
    def max_seq_len(self) -> int:
        return int(self.seq_lens.max())

    @property
    def max_extend_len(self) -> int:
        return int(self.extend_lens.max())

    def as_fp32(self) -> AttentionBatch:
        """The same values in fp32: the reference's input for the tolerance comparison."""
        fields = {**self.__dict__}
        for name in ("k_cache", "v_cache", "q_extend", "q_decode"):
            fields[name] = fields[name].float()
        return AttentionBatch(**fields)


def build_attention_batch(
    prefix_lens: list[int],
    extend_lens: list[int],
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: torch.device | str,
    seed: int,
) -> AttentionBatch:
    # Drawn on the target device: the gpu tests build pools of millions of slots.
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    batch = len(prefix_lens)
    prefix = torch.tensor(prefix_lens, dtype=torch.int64, device=device)
    extend = torch.tensor(extend_lens, dtype=torch.int64, device=device)
    seq = prefix + extend
    total = sum(prefix_lens) + sum(extend_lens)
    num_slots = total + 13  # spare slots that nobody owns, filled with garbage
    max_context_len = max(p + e for p, e in zip(prefix_lens, extend_lens)) + 5
    num_rows = batch + 3

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    k_cache = randn(num_slots + 1, num_kv_heads, head_dim)
    v_cache = randn(num_slots + 1, num_kv_heads, head_dim)
    req_to_token = torch.zeros(num_rows, max_context_len, dtype=torch.int32, device=device)
    rows = torch.randperm(num_rows, generator=gen, device=device)[:batch]
    slots = torch.randperm(num_slots, generator=gen, device=device)[:total] + 1  # 0 is padding
    out_cache_loc = []
    offset = 0
    for i, (p, e) in enumerate(zip(prefix_lens, extend_lens)):
        req_slots = slots[offset : offset + p + e]
        offset += p + e
        req_to_token[rows[i], : p + e] = req_slots.to(torch.int32)
        out_cache_loc.append(req_slots[p:])
    extend_start_loc = torch.cumsum(extend, 0) - extend
    return AttentionBatch(
        k_cache=k_cache,
        v_cache=v_cache,
        req_to_token=req_to_token,
        req_pool_indices=rows.to(torch.int64),
        prefix_lens=prefix,
        extend_lens=extend,
        seq_lens=seq,
        extend_start_loc=extend_start_loc,
        out_cache_loc=torch.cat(out_cache_loc),
        q_extend=randn(sum(extend_lens), num_heads, head_dim),
        q_decode=randn(batch, num_heads, head_dim),
        sm_scale=head_dim**-0.5,
    )


@pytest.fixture
def attention_batch():
    """The builder above, as a fixture (test modules cannot import conftest)."""
    return build_attention_batch


@pytest.fixture
def assert_kernel_close():
    """`assert_close(actual, expected, dtype)` with the per-dtype TOLERANCES above."""
    return assert_close
