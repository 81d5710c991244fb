"""The fast CPU attention equals the reference on random pools, with and without a shared
prefix, for decode, extend and mixed batches — with the C decode rows (cpu_native.py) and
with the torch path they replace."""

from __future__ import annotations

import pytest
import torch

from radixlm.kernels import cpu_attention, cpu_native, reference


@pytest.fixture(autouse=True, params=["native", "torch"])
def decode_rows_path(request):
    if request.param == "native" and not cpu_native.available():
        pytest.skip("no C compiler: the native decode rows are not built")
    cpu_native.set_enabled(request.param == "native")
    yield request.param
    cpu_native.set_enabled(True)


def make_pool(seq_lens, shared, kv_heads, head_dim, seed):
    g = torch.Generator().manual_seed(seed)
    total = shared + sum(s - shared for s in seq_lens) + 1
    k = torch.randn(total, kv_heads, head_dim, generator=g)
    v = torch.randn(total, kv_heads, head_dim, generator=g)
    r2t = torch.zeros(len(seq_lens), max(seq_lens) + 3, dtype=torch.int32)
    nxt = 1 + shared
    for b, s in enumerate(seq_lens):
        r2t[b, :shared] = torch.arange(1, 1 + shared)
        r2t[b, shared:s] = torch.arange(nxt, nxt + s - shared)
        nxt += s - shared
    return k, v, r2t


@pytest.mark.parametrize("group", [1, 3, 8])
@pytest.mark.parametrize("shared", [0, 40])
def test_decode_matches_reference(group, shared):
    seq_lens = [45, 60, 41, 77]
    kv, d = 2, 16
    k, v, r2t = make_pool(seq_lens, shared, kv, d, seed=group + shared)
    q = torch.randn(len(seq_lens), kv * group, d)
    idx = torch.arange(len(seq_lens))
    sl = torch.tensor(seq_lens)
    ref = reference.decode_attention(q, k, v, r2t, idx, sl, 0.25)
    ours = cpu_attention.decode_attention(q, k, v, r2t, idx, sl, 0.25, shared_prefix_len=shared)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [0, 33])
def test_mixed_extend_matches_reference(shared):
    prefix = [40, 35, 50, 33]
    ext = [1, 7, 1, 12]  # decode rows mixed with prefill chunks
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    kv, group, d = 3, 3, 8
    k, v, r2t = make_pool(seq_lens, shared, kv, d, seed=shared)
    q = torch.randn(sum(ext), kv * group, d)
    args = (
        q,
        k,
        v,
        r2t,
        torch.arange(4),
        torch.tensor(prefix),
        torch.tensor(ext),
        torch.tensor([0, 1, 8, 9]),
        0.3,
    )
    ref = reference.extend_attention(*args)
    out = torch.full_like(q, float("nan"))  # poisoned: every row must be written
    cpu_attention.extend_attention(*args, out=out, shared_prefix_len=shared)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [0, 30])
def test_short_extends_as_decode_rows_match_reference(shared):
    """A jump-forward step: one-token decodes plus forced spans of 2..8 tokens (the longest
    that runs as decode rows) and one of 9 (a padded group), prefixes of different lengths."""
    prefix = [30, 44, 31, 58, 30, 36]
    ext = [1, 8, 2, 1, 9, 5]
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    k, v, r2t = make_pool(seq_lens, shared, 3, 16, seed=11 + shared)
    q = torch.randn(sum(ext), 9, 16)
    starts = torch.tensor([0, 1, 9, 11, 12, 21])
    args = (q, k, v, r2t, torch.arange(6), torch.tensor(prefix), torch.tensor(ext), starts, 0.25)
    ref = reference.extend_attention(*args)
    out = torch.full_like(q, float("nan"))
    cpu_attention.extend_attention(*args, out=out, shared_prefix_len=shared)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [0, 30])
def test_bfloat16_extend_matches_float32(shared):
    """A bf16 model's mixed step (decode rows, a prefill chunk) on the CPU: the parts come in
    bf16 from the torch path and are merged in float32 (a dtype mismatch failed here before)."""
    prefix, ext = [30, 44, 31], [1, 6, 12]
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    k, v, r2t = make_pool(seq_lens, shared, 3, 16, seed=5 + shared)
    q = torch.randn(sum(ext), 9, 16)
    rest = (r2t, torch.arange(3), torch.tensor(prefix), torch.tensor(ext), torch.tensor([0, 1, 7]), 0.25)
    want = cpu_attention.extend_attention(q, k, v, *rest, shared_prefix_len=shared)
    bf = [t.bfloat16() for t in (q, k, v)]
    got = cpu_attention.extend_attention(*bf, *rest, shared_prefix_len=shared)
    assert got.dtype == torch.bfloat16
    ref = cpu_attention.extend_attention(*[t.float() for t in bf], *rest, shared_prefix_len=shared)
    torch.testing.assert_close(got.float(), ref, atol=5e-2, rtol=5e-2)  # bf16: 8 bits of mantissa
    assert (ref - want).abs().max() < 0.1  # the inputs' rounding alone


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("group", [1, 3, 8])
@pytest.mark.parametrize("shared", [0, 70])
def test_model_sized_extends_match_reference(head_dim, group, shared, decode_rows_path):
    """Prefill chunks at the head sizes real models use (the C tiles' AVX-512 bodies take
    head sizes that are multiples of 16 / 64), chunks longer and shorter than a key block."""
    prefix = [70, 75, 70, 140]
    ext = [150, 1, 33, 64]
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    k, v, r2t = make_pool(seq_lens, shared, 2, head_dim, seed=head_dim + group + shared)
    q = torch.randn(sum(ext), 2 * group, head_dim)
    args = (q, k, v, r2t, torch.arange(4), torch.tensor(prefix), torch.tensor(ext), torch.tensor([0, 150, 151, 184]),
            head_dim**-0.5)
    ref = reference.extend_attention(*args)
    out = torch.full_like(q, float("nan"))
    cpu_attention.extend_attention(*args, out=out, shared_prefix_len=shared)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_ragged_extend_groups_match_reference():
    prefix = [36, 36, 40, 36, 50, 36]
    ext = [3, 20, 1, 9, 2, 40]  # groups of different lengths plus a decode row
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    k, v, r2t = make_pool(seq_lens, 36, 2, 8, seed=7)
    q = torch.randn(sum(ext), 6, 8)
    starts = torch.tensor([0, 3, 23, 24, 33, 35])
    args = (q, k, v, r2t, torch.arange(6), torch.tensor(prefix), torch.tensor(ext), starts, 0.3)
    ref = reference.extend_attention(*args)
    for shared in (0, 36):
        out = torch.full_like(q, float("nan"))
        cpu_attention.extend_attention(*args, out=out, shared_prefix_len=shared)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [0, 36])
def test_memo_is_reused_across_layers(shared, decode_rows_path):
    """A forward shares one memo between its layers: the second layer (other KV, other q)
    must still get its own correct result from the index tensors the first one built."""
    prefix = [36, 40, 36, 50]
    seq_lens = [p + 1 for p in prefix]
    memo: dict = {}
    for layer in range(2):
        k, v, r2t = make_pool(seq_lens, 36, 2, 8, seed=layer)
        q = torch.randn(4, 6, 8)
        args = (q, k, v, r2t, torch.arange(4), torch.tensor(seq_lens), 0.3)
        ref = reference.decode_attention(*args)
        ours = cpu_attention.decode_attention(*args, shared_prefix_len=shared, memo=memo)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    if decode_rows_path == "torch" or shared:  # the C decode rows need no index tensors
        assert memo, "the first layer stores what later layers reuse"

    ext = [3, 1, 9, 2]
    starts = torch.tensor([0, 3, 4, 13])
    memo = {}
    for layer in range(2):
        seq = [p + e for p, e in zip(prefix, ext)]
        k, v, r2t = make_pool(seq, 36, 2, 8, seed=10 + layer)
        q = torch.randn(sum(ext), 6, 8)
        args = (q, k, v, r2t, torch.arange(4), torch.tensor(prefix), torch.tensor(ext), starts, 0.3)
        ref = reference.extend_attention(*args)
        out = torch.full_like(q, float("nan"))
        cpu_attention.extend_attention(*args, out=out, shared_prefix_len=shared, memo=memo)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_cpu_ops_match_reference():
    from radixlm.kernels import cpu_ops

    g = torch.Generator().manual_seed(3)
    x, res, w = torch.randn(5, 64, generator=g), torch.randn(5, 64, generator=g), torch.randn(64, generator=g)
    torch.testing.assert_close(cpu_ops.rms_norm(x, w, 1e-5), reference.rms_norm(x, w, 1e-5))
    got, ref = cpu_ops.rms_norm(x, w, 1e-5, res), reference.rms_norm(x, w, 1e-5, res)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    kc, vc = torch.full((10, 2, 4), float("nan")), torch.full((10, 2, 4), float("nan"))
    k, v, loc = torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.tensor([7, 1, 4])
    cpu_ops.store_kv(kc, vc, loc, k, v)
    torch.testing.assert_close(kc[loc], k)
    torch.testing.assert_close(vc[loc], v)


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 9, 14, 63, 64, 65, 200])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("prepacked", [False, True])
def test_cpu_linear_matches_reference_at_every_batch_size(rows, bias, prepacked):
    """Every path (oneDNN on a prepacked weight; without one, small batches take (W @ x^T)^T
    padded to a multiple of 8 rows above 8) gives x @ W^T + b, contiguous, with exactly the
    rows asked for."""
    from radixlm.kernels import cpu_ops

    g = torch.Generator().manual_seed(rows)
    x, w = torch.randn(rows, 96, generator=g), torch.randn(160, 96, generator=g)
    b = torch.randn(160, generator=g) if bias else None
    packed = cpu_ops.prepack_weight(w) if prepacked else None
    if prepacked and packed is None:
        pytest.skip("this torch build has no oneDNN")
    got = cpu_ops.linear(x, w, b, packed)
    assert got.is_contiguous() and got.shape == (rows, 160)
    torch.testing.assert_close(got, reference.linear(x, w, b), atol=1e-4, rtol=1e-5)


def test_prepack_weight_declines_what_it_cannot_serve():
    """Only float32 and bfloat16 CPU weights are prepacked; the rest keep the unpacked path."""
    from radixlm.kernels import cpu_ops

    assert cpu_ops.prepack_weight(torch.randn(8, 4, dtype=torch.float16)) is None
    assert cpu_ops.prepack_weight(torch.randn(8, 4, dtype=torch.float64)) is None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
@pytest.mark.parametrize("rows", [1, 16, 100])
def test_bfloat16_prepacked_linear_matches_float32_math(rows):
    """A bf16 weight prepacked for oneDNN (its bf16 dot products) gives the float32 product of
    the same bf16 values, up to the output's bf16 rounding (2^-8 relative)."""
    from radixlm.kernels import cpu_ops

    g = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 576, generator=g).bfloat16()
    x = torch.randn(rows, 576, generator=g).bfloat16()
    packed = cpu_ops.prepack_weight(w)
    assert packed is not None and packed.dtype == torch.bfloat16
    got = cpu_ops.linear(x, w, packed=packed)
    assert got.dtype == torch.bfloat16
    want = x.float() @ w.float().T
    torch.testing.assert_close(got.float(), want, rtol=8e-3, atol=8e-3 * float(want.abs().max()))
