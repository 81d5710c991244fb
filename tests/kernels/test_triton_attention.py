"""Triton store_kv / extend / decode attention against the plain-torch reference.

On CPU the kernels run under TRITON_INTERPRET=1 (set by conftest), so the default cases
use tiny shapes; the `gpu` cases at the end run realistic sizes on the compiled kernels.
Each kernel output buffer is filled with NaN first, so an element the kernel fails to
write fails the comparison. The expected values are the reference run in fp32 on the same
(already rounded) inputs, so the tolerance measures the kernel's own error.
"""

from __future__ import annotations

import pytest
import torch

from radixlm.kernels import reference

pytest.importorskip(
    "triton", reason="triton is not importable (pip install triton)", exc_type=ImportError
)

from radixlm.kernels import (  # noqa: E402  (after the importorskip above)
    triton_decode_attention,
    triton_extend_attention,
    triton_ops,
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DTYPE_IDS = ["fp32", "bf16", "fp16"]
# (num_heads, num_kv_heads): MHA, SmolLM2's GQA of 3, MQA with 8 query heads.
GQA = [(2, 2), (9, 3), (8, 1)]
GQA_IDS = ["group1", "group3", "group8"]


def reference_extend(b) -> torch.Tensor:
    f = b.as_fp32()
    return reference.extend_attention(
        f.q_extend,
        f.k_cache,
        f.v_cache,
        f.req_to_token,
        f.req_pool_indices,
        f.prefix_lens,
        f.extend_lens,
        f.extend_start_loc,
        f.sm_scale,
    )


def reference_decode(b) -> torch.Tensor:
    f = b.as_fp32()
    return reference.decode_attention(
        f.q_decode, f.k_cache, f.v_cache, f.req_to_token, f.req_pool_indices, f.seq_lens, f.sm_scale
    )


def triton_extend(b, **tuning) -> torch.Tensor:
    out = torch.full_like(b.q_extend, float("nan"))
    result = triton_extend_attention.extend_attention(
        b.q_extend,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.prefix_lens,
        b.extend_lens,
        b.extend_start_loc,
        b.sm_scale,
        max_seq_len=b.max_seq_len,
        max_extend_len=b.max_extend_len,
        out=out,
        **tuning,
    )
    assert result is out
    return out


def triton_decode(b, **tuning) -> torch.Tensor:
    out = torch.full_like(b.q_decode, float("nan"))
    result = triton_decode_attention.decode_attention(
        b.q_decode,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.seq_lens,
        b.sm_scale,
        max_seq_len=b.max_seq_len,
        out=out,
        **tuning,
    )
    assert result is out
    return out


# --- store_kv ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_store_kv_writes_exactly_the_given_slots(device, dtype):
    gen = torch.Generator().manual_seed(10)
    k_cache = torch.randn(40, 3, 64, generator=gen).to(dtype).to(device)
    v_cache = torch.randn(40, 3, 64, generator=gen).to(dtype).to(device)
    k_before, v_before = k_cache.clone(), v_cache.clone()
    loc = torch.tensor([17, 3, 38, 21, 9], device=device)
    k = torch.randn(5, 3, 64, generator=gen).to(dtype).to(device)
    v = torch.randn(5, 3, 64, generator=gen).to(dtype).to(device)
    triton_ops.store_kv(k_cache, v_cache, loc, k, v)
    reference.store_kv(k_before, v_before, loc, k, v)
    assert torch.equal(k_cache, k_before) and torch.equal(v_cache, v_before)


def test_store_kv_reads_strided_kv_and_int32_locations(device):
    """K and V as views into a fused qkv output, slots as int32: no copy needed by callers."""
    gen = torch.Generator().manual_seed(11)
    num_tokens, heads, kv_heads, dim = 4, 9, 3, 64
    qkv = torch.randn(num_tokens, (heads + 2 * kv_heads) * dim, generator=gen).to(device)
    k = qkv[:, heads * dim : (heads + kv_heads) * dim].view(num_tokens, kv_heads, dim)
    v = qkv[:, (heads + kv_heads) * dim :].view(num_tokens, kv_heads, dim)
    assert not k.is_contiguous()
    k_cache = torch.zeros(12, kv_heads, dim, device=device)
    v_cache = torch.zeros(12, kv_heads, dim, device=device)
    loc = torch.tensor([5, 1, 11, 8], dtype=torch.int32, device=device)
    triton_ops.store_kv(k_cache, v_cache, loc, k, v)
    assert torch.equal(k_cache[loc.long()], k) and torch.equal(v_cache[loc.long()], v)
    others = torch.ones(12, dtype=torch.bool)
    others[loc.long().cpu()] = False
    assert not k_cache[others].any() and not v_cache[others].any()


def test_store_kv_casts_to_the_pool_dtype(device, assert_kernel_close):
    k_cache = torch.zeros(8, 2, 64, dtype=torch.bfloat16, device=device)
    v_cache = torch.zeros_like(k_cache)
    loc = torch.tensor([2, 6], device=device)
    k, v = torch.randn(2, 2, 64, device=device), torch.randn(2, 2, 64, device=device)
    triton_ops.store_kv(k_cache, v_cache, loc, k, v)
    assert_kernel_close(k_cache[loc], k, torch.bfloat16)
    assert_kernel_close(v_cache[loc], v, torch.bfloat16)


# --- extend attention --------------------------------------------------------------------


@pytest.mark.parametrize("num_heads, num_kv_heads", GQA, ids=GQA_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_extend_matches_reference_on_a_ragged_batch(
    attention_batch, assert_kernel_close, device, dtype, num_heads, num_kv_heads
):
    # Prefix 0 (a fresh prompt), a one-token extend, and a longer extend over a prefix.
    b = attention_batch(
        [0, 5, 19], [7, 1, 12], num_heads, num_kv_heads, 64, dtype, device, seed=num_heads
    )
    assert_kernel_close(triton_extend(b), reference_extend(b), dtype)


@pytest.mark.parametrize(
    "prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim, dtype",
    [
        pytest.param([0], [9], 9, 3, 128, torch.bfloat16, id="one-prompt-no-prefix-hd128"),
        pytest.param([40], [1], 8, 1, 64, torch.float16, id="one-token-after-long-prefix"),
        pytest.param([3, 0, 11], [2, 5, 6], 4, 4, 128, torch.float32, id="ragged-hd128-fp32"),
        pytest.param(
            [0, 2, 0, 7, 1, 0, 4, 3],
            [3, 1, 6, 2, 1, 4, 1, 5],
            9,
            3,
            64,
            torch.bfloat16,
            id="eight-requests",
        ),
    ],
)
def test_extend_matches_reference_on_batch_shapes(
    attention_batch,
    assert_kernel_close,
    device,
    prefix_lens,
    extend_lens,
    num_heads,
    num_kv_heads,
    head_dim,
    dtype,
):
    b = attention_batch(
        prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim, dtype, device, seed=20
    )
    assert_kernel_close(triton_extend(b), reference_extend(b), dtype)


def test_extend_spans_many_query_and_key_blocks(attention_batch, assert_kernel_close, device):
    """16-wide tiles over 40 new tokens and 33-token prefixes: several query blocks per
    request, key blocks that straddle the prefix/new-token boundary, ragged last blocks."""
    dtype = torch.bfloat16
    b = attention_batch([33, 0, 17], [40, 21, 16], 2, 1, 64, dtype, device, seed=30)
    assert_kernel_close(triton_extend(b, block_m=16, block_n=16), reference_extend(b), dtype)


def test_extend_leaves_other_rows_of_out_untouched(attention_batch, device):
    """Writes land only at the new tokens' rows of `out`, so callers can pass a view."""
    b = attention_batch([2, 0], [3, 4], 2, 2, 64, torch.float32, device, seed=31)
    big = torch.full((b.q_extend.shape[0] + 2, 2, 64), 7.0, device=device)
    out = big[1:-1]
    triton_ops.extend_attention(
        b.q_extend,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.prefix_lens,
        b.extend_lens,
        b.extend_start_loc,
        b.sm_scale,
        out=out,
    )
    assert (big[0] == 7.0).all() and (big[-1] == 7.0).all()
    torch.testing.assert_close(out, reference_extend(b), atol=2e-5, rtol=2e-5)


# --- decode attention --------------------------------------------------------------------


@pytest.mark.parametrize("num_heads, num_kv_heads", GQA, ids=GQA_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_decode_matches_reference_on_a_ragged_batch(
    attention_batch, assert_kernel_close, device, dtype, num_heads, num_kv_heads
):
    # seq_lens 1, 6, 40: with 4 splits the first request leaves three splits empty.
    b = attention_batch(
        [0, 5, 39], [1, 1, 1], num_heads, num_kv_heads, 64, dtype, device, seed=40 + num_heads
    )
    assert_kernel_close(triton_decode(b, num_kv_splits=4, block_n=16), reference_decode(b), dtype)


@pytest.mark.parametrize(
    "seq_lens, num_heads, num_kv_heads, head_dim, dtype, num_kv_splits",
    [
        pytest.param([50], 9, 3, 64, torch.bfloat16, None, id="one-request-auto-splits"),
        pytest.param([23, 1, 64], 9, 3, 128, torch.float32, 1, id="no-split-hd128"),
        pytest.param([37, 12], 8, 1, 128, torch.bfloat16, 3, id="three-splits-hd128"),
        pytest.param([5, 2], 4, 2, 64, torch.float16, 16, id="more-splits-than-keys"),
        pytest.param(
            [1, 9, 30, 4, 17, 2, 25, 8, 3, 12, 40, 19],
            4,
            1,
            64,
            torch.bfloat16,
            2,
            id="twelve-requests-group4",
        ),
    ],
)
def test_decode_matches_reference_on_batch_shapes(
    attention_batch,
    assert_kernel_close,
    device,
    seq_lens,
    num_heads,
    num_kv_heads,
    head_dim,
    dtype,
    num_kv_splits,
):
    b = attention_batch(
        [n - 1 for n in seq_lens],
        [1] * len(seq_lens),
        num_heads,
        num_kv_heads,
        head_dim,
        dtype,
        device,
        seed=50,
    )
    out = triton_decode(b, num_kv_splits=num_kv_splits, block_n=16)
    assert_kernel_close(out, reference_decode(b), dtype)


def test_decode_split_count_grows_with_context_and_stays_a_power_of_two():
    choose = triton_decode_attention.choose_num_kv_splits
    cpu = torch.device("cpu")
    assert choose(batch=1, num_kv_heads=3, max_seq_len=100, device=cpu) == 1
    long_context = choose(batch=1, num_kv_heads=3, max_seq_len=8192, device=cpu)
    assert long_context > 1 and long_context & (long_context - 1) == 0
    # A batch that already fills the machine gets no splits.
    assert choose(batch=256, num_kv_heads=3, max_seq_len=8192, device=cpu) == 1


# --- realistic sizes on a GPU ------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "num_heads, num_kv_heads, head_dim", [(9, 3, 64), (32, 8, 128), (16, 16, 64), (8, 1, 128)]
)
def test_gpu_extend_matches_reference_at_serving_sizes(
    attention_batch, assert_kernel_close, cuda_device, dtype, num_heads, num_kv_heads, head_dim
):
    gen = torch.Generator().manual_seed(60)
    prefix = torch.randint(0, 1500, (12,), generator=gen)
    prefix[:3] = 0  # fresh prompts alongside radix-cache hits
    extend = torch.randint(1, 600, (12,), generator=gen)
    b = attention_batch(
        prefix.tolist(),
        extend.tolist(),
        num_heads,
        num_kv_heads,
        head_dim,
        dtype,
        cuda_device,
        seed=61,
    )
    assert_kernel_close(triton_extend(b), reference_extend(b), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "num_heads, num_kv_heads, head_dim", [(9, 3, 64), (32, 8, 128), (16, 16, 64), (8, 1, 128)]
)
@pytest.mark.parametrize("batch, max_len", [(1, 8192), (64, 4096), (256, 600)])
def test_gpu_decode_matches_reference_at_serving_sizes(
    attention_batch,
    assert_kernel_close,
    cuda_device,
    dtype,
    num_heads,
    num_kv_heads,
    head_dim,
    batch,
    max_len,
):
    gen = torch.Generator().manual_seed(70)
    seq_lens = torch.randint(1, max_len + 1, (batch,), generator=gen)
    seq_lens[0] = max_len
    b = attention_batch(
        (seq_lens - 1).tolist(),
        [1] * batch,
        num_heads,
        num_kv_heads,
        head_dim,
        dtype,
        cuda_device,
        seed=71,
    )
    assert_kernel_close(triton_decode(b), reference_decode(b), dtype)
