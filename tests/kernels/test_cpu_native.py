"""The C decode rows (kernels/cpu_native.py) against a direct torch computation on random
pools: GQA ratios 1/3/8, head dims 64 and 128, one row and many, ragged key counts, keys
from 0 and from a shared-prefix offset, an empty key range, a bfloat16 pool; and where the
path declines."""

from __future__ import annotations

import pytest
import torch

from radixlm.kernels import cpu_native

pytestmark = pytest.mark.skipif(not cpu_native.available(), reason="no C compiler for the native kernel")


def expected(q, k, v, r2t, rows, seq, start, scale):
    """Per row: softmax(q·K) V over its keys [start, seq), and the log-sum-exp per head."""
    n, H, D = q.shape
    KV = k.shape[1]
    o, lse = torch.zeros(n, H, D), torch.full((n, H), float("-inf"))
    for r in range(n):
        slots = r2t[rows[r], start:seq[r]].long()
        if slots.numel() == 0:
            continue
        keys = k[slots].repeat_interleave(H // KV, dim=1).transpose(0, 1)  # [H, S, D]
        vals = v[slots].repeat_interleave(H // KV, dim=1).transpose(0, 1)
        s = (keys @ q[r][:, :, None])[:, :, 0] * scale  # [H, S]
        o[r] = (torch.softmax(s, -1)[:, None, :] @ vals)[:, 0]
        lse[r] = torch.logsumexp(s, -1)
    return o, lse


def random_pool(n, seq, kv, d, seed):
    g = torch.Generator().manual_seed(seed)
    slots = 1 + sum(seq)
    k, v = torch.randn(slots, kv, d, generator=g), torch.randn(slots, kv, d, generator=g)
    r2t = torch.zeros(n + 2, max(seq) + 5, dtype=torch.int32)
    perm = torch.randperm(slots - 1, generator=g) + 1  # scattered slots, as a radix cache hands them out
    used = 0
    for r, s in enumerate(seq):
        r2t[r + 2, :s] = perm[used:used + s].to(torch.int32)
        used += s
    return k, v, r2t, torch.arange(2, n + 2)


@pytest.mark.parametrize("group", [1, 3, 8])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("n", [1, 37])
@pytest.mark.parametrize("start", [0, 5])
def test_decode_rows_match_torch(group, head_dim, n, start):
    kv = 2
    g = torch.Generator().manual_seed(group * 1000 + head_dim + n + start)
    seq = torch.randint(start + 1, 300, (n,), generator=g).tolist()
    k, v, r2t, rows = random_pool(n, seq, kv, head_dim, seed=n + group)
    q = torch.randn(n, kv * group, head_dim, generator=g)
    o, lse = cpu_native.decode_rows(q, k, v, r2t, rows, torch.tensor(seq), start, head_dim**-0.5)
    want_o, want_lse = expected(q, k, v, r2t, rows, seq, start, head_dim**-0.5)
    torch.testing.assert_close(o, want_o, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=2e-5, rtol=1e-5)


def test_empty_key_range_gives_zero_output_and_minus_infinite_lse():
    k, v, r2t, rows = random_pool(2, [10, 4], 1, 64, seed=0)
    q = torch.randn(2, 3, 64)
    o, lse = cpu_native.decode_rows(q, k, v, r2t, rows, torch.tensor([10, 4]), 4, 0.125)
    assert torch.equal(o[1], torch.zeros(3, 64)) and torch.isneginf(lse[1]).all()
    assert torch.isfinite(lse[0]).all()


def test_declines_what_it_does_not_serve():
    k, v, r2t, rows = random_pool(1, [8], 1, 64, seed=1)
    q = torch.randn(1, 2, 64)
    seq = torch.tensor([8])
    assert cpu_native.decode_rows(q.half(), k.half(), v.half(), r2t, rows, seq, 0, 0.1) is None
    assert cpu_native.decode_rows(q, k, v.bfloat16(), r2t, rows, seq, 0, 0.1) is None  # mixed K/V types
    cpu_native.set_enabled(False)
    try:
        assert cpu_native.decode_rows(q, k, v, r2t, rows, seq, 0, 0.1) is None
    finally:
        cpu_native.set_enabled(True)


def test_without_a_compiler_the_torch_path_serves(tmp_path):
    """A fresh cache and no working compiler: not available, a warning, and CPU attention
    still answers (through the torch path) — in a process of its own, as a server would."""
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from radixlm.kernels import cpu_attention, cpu_native\n"
        "assert not cpu_native.available()\n"
        "k, v = torch.randn(9, 1, 8), torch.randn(9, 1, 8)\n"
        "r2t = torch.arange(1, 9, dtype=torch.int32)[None]\n"
        "o = cpu_attention.decode_attention(torch.randn(1, 2, 8), k, v, r2t, torch.tensor([0]), torch.tensor([8]), 0.3)\n"
        "assert torch.isfinite(o).all()\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "XDG_CACHE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "native CPU attention not built" in run.stderr


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 3])
def test_rows_split_by_head_when_fewer_than_threads(threads, n):
    """With fewer rows than threads each KV head of a row is its own work item."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seq = [70, 64, 129][:n]  # a block and a key, a whole block, two blocks and a key
        k, v, r2t, rows = random_pool(n, seq, 4, 64, seed=threads + n)
        q = torch.randn(n, 8, 64, generator=torch.Generator().manual_seed(n))
        o, lse = cpu_native.decode_rows(q, k, v, r2t, rows, torch.tensor(seq), 0, 0.125)
    finally:
        torch.set_num_threads(before)
    want_o, want_lse = expected(q, k, v, r2t, rows, seq, 0, 0.125)
    torch.testing.assert_close(o, want_o, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=2e-5, rtol=1e-5)


def test_peaked_scores_and_a_late_maximum():
    """Scores hundreds apart (most probabilities underflow to zero) and the largest score in
    the last block, so the running maximum rises after two blocks were summed."""
    seq = [200]
    k, v, r2t, rows = random_pool(1, seq, 1, 64, seed=7)
    q = torch.randn(1, 2, 64, generator=torch.Generator().manual_seed(7)) * 40
    k[r2t[2, 190].long()] = q[0, 0] / q[0, 0].norm() * 10  # aligned with head 0: its peak, late
    o, lse = cpu_native.decode_rows(q, k, v, r2t, rows, torch.tensor(seq), 0, 0.125)
    want_o, want_lse = expected(q, k, v, r2t, rows, seq, 0, 0.125)
    torch.testing.assert_close(o, want_o, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 9])
def test_bfloat16_pool_matches_float32_math_on_the_same_values(n):
    """A bfloat16 K/V pool (a bf16 model's) is read as bf16 and multiplied in float32: the
    result equals the float32 computation on the bf16-rounded K/V, to float32 rounding."""
    g = torch.Generator().manual_seed(n)
    seq = torch.randint(1, 200, (n,), generator=g).tolist()
    k, v, r2t, rows = random_pool(n, seq, 3, 64, seed=n)
    k, v = k.bfloat16(), v.bfloat16()
    q = torch.randn(n, 9, 64, generator=g).bfloat16()
    o, lse = cpu_native.decode_rows(q, k, v, r2t, rows, torch.tensor(seq), 0, 0.125)
    assert o.dtype == lse.dtype == torch.float32
    want_o, want_lse = expected(q.float(), k.float(), v.float(), r2t, rows, seq, 0, 0.125)
    torch.testing.assert_close(o, want_o, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=2e-5, rtol=1e-5)


def expected_extend(q, k, v, r2t, row, prefix, n, q_row, start, scale):
    """Tokens prefix..prefix+n-1 of one request (q rows q_row..) causally over keys [start, pos]:
    token t is a decode row with prefix + t + 1 keys (in float32)."""
    rows = torch.full((n,), row)
    seq = [prefix + t + 1 for t in range(n)]
    return expected(q[q_row:q_row + n].float(), k.float(), v.float(), r2t, rows, seq, start, scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group", [1, 3, 8])
@pytest.mark.parametrize("start", [0, 7])
def test_extend_tiles_match_causal_torch(dtype, group, start):
    """Two requests in one call: 100 new tokens after a 30-token prefix (tiles crossing key
    blocks, the causal edge inside them) and 9 tokens with no prefix; keys from `start`."""
    kv, d = 2, 64
    specs = [(30, 100), (0, 9)] if start == 0 else [(30, 100), (start, 9)]  # (prefix, new tokens)
    seq = [p + n for p, n in specs]
    k, v, r2t, rows = random_pool(2, seq, kv, d, seed=group + start)
    k, v = k.to(dtype), v.to(dtype)
    T = sum(n for _, n in specs)
    q = torch.randn(T, kv * group, d, generator=torch.Generator().manual_seed(group)).to(dtype)
    q_rows = [0, specs[0][1]]
    tiles = cpu_native.extend_tiles(q_rows, [n for _, n in specs], [p for p, _ in specs], rows.tolist())
    o = torch.full((T, kv * group, d), float("nan"))
    lse = torch.full((T, kv * group), float("nan"))
    assert cpu_native.extend_into(q, k, v, r2t, tiles, start, 0.125, o, lse)
    for (p, n), q_row, row in zip(specs, q_rows, rows.tolist()):
        want_o, want_lse = expected_extend(q, k, v, r2t, row, p, n, q_row, start, 0.125)
        torch.testing.assert_close(o[q_row:q_row + n], want_o, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(lse[q_row:q_row + n], want_lse, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("queries", [1, 8, 21])
def test_prefix_tiles_see_every_prefix_key(queries):
    """Decode queries against a shared prefix of 150 keys (prefix_tiles): no causal edge."""
    k, v, r2t, rows = random_pool(1, [150], 3, 64, seed=queries)
    q = torch.randn(queries, 9, 64, generator=torch.Generator().manual_seed(queries))
    tiles = cpu_native.prefix_tiles(queries, 150, int(rows[0]))
    o, lse = torch.empty(queries, 9, 64), torch.empty(queries, 9)
    assert cpu_native.extend_into(q, k, v, r2t, tiles, 0, 0.125, o, lse)
    want_o, want_lse = expected(q, k, v, r2t, rows.repeat(queries), [150] * queries, 0, 0.125)
    torch.testing.assert_close(o, want_o, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=2e-5, rtol=1e-5)
