"""CPU decode attention as a decode step meets it: the C rows (kernels/cpu_native.py) against
the torch gather path, and against the C rows of another git revision, with the K/V warm
in cache and cold (a 32 MiB sweep between calls, as a layer's weight matmuls evict them).
Then prefill (extend) attention of one request with no cached prefix: the C tiles against
the torch path.

    python benchmarks/bench_cpu_attention.py [--baseline 834f63d] [--threads 1]

Shapes: SmolLM2-135M's heads (9 query, 3 KV, head_dim 64), one layer's pool of 48,000
slots; each request's keys at consecutive slots (as a prefill allocates them) in a random
request order. Calls of the systems alternate; medians of --calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import print_machine  # noqa: E402

from radixlm.kernels import cpu_attention, cpu_native  # noqa: E402

CASES = [(1, 100, 300), (16, 40, 300), (64, 40, 300), (64, 300, 600)]  # rows, min keys, max keys


def baseline_module(rev: str):
    """kernels/cpu_native.py as of git revision `rev`, loaded under another name."""
    root = HERE.parent
    source = subprocess.run(["git", "-C", str(root), "show", f"{rev}:kernels/cpu_native.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "cpu_native_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cpu_native_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_case(rows: int, lo: int, hi: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    kv, d, heads, slots = 3, 64, 9, 48000
    k, v = torch.randn(slots, kv, d, generator=g), torch.randn(slots, kv, d, generator=g)
    seq = torch.randint(lo, hi, (rows,), generator=g)
    table = torch.zeros(rows, 2048, dtype=torch.int32)
    region = hi + 8  # a request's slots: one run of consecutive slots, regions in random order
    starts = torch.randperm(slots // region - 1, generator=g)[:rows] * region + 1
    for r in range(rows):
        table[r, : seq[r]] = torch.arange(int(starts[r]), int(starts[r]) + int(seq[r]), dtype=torch.int32)
    q = torch.randn(rows, heads, d, generator=g)
    return q, k, v, table, torch.arange(rows), seq


def systems(baseline) -> dict:
    def torch_path(q, k, v, table, idx, seq):
        cpu_native.set_enabled(False)
        try:
            return cpu_attention.decode_attention(q, k, v, table, idx, seq, 0.125, memo={})
        finally:
            cpu_native.set_enabled(True)

    out = {"C rows": lambda q, k, v, t, i, s: cpu_native.decode_rows(q, k, v, t, i, s, 0, 0.125),
           "torch gather": torch_path}
    if baseline is not None:
        out["C rows @ baseline"] = lambda q, k, v, t, i, s: baseline.decode_rows(q, k, v, t, i, s, 0, 0.125)
    return out


def time_case(case, fns: dict, cold: bool, calls: int) -> dict[str, float]:
    sweep = torch.randn(8 << 20)  # 32 MiB: more than this machine's L2 + L3 share
    times = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            if cold:
                sweep.sum()
            start = time.perf_counter()
            fn(*case)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=None, help="a git revision whose C rows run alongside")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    print_machine()
    torch.set_num_threads(args.threads)
    fns = systems(baseline_module(args.baseline) if args.baseline else None)
    print(f"threads {args.threads}; median of {args.calls} calls, systems alternating")
    print("| rows | keys | K/V | " + " | ".join(f"{n} µs" for n in fns) + " |")
    print("|---:|---|---|" + "---:|" * len(fns))
    for rows, lo, hi in CASES:
        case = make_case(rows, lo, hi)
        for cold in (False, True):
            t = time_case(case, fns, cold, args.calls)
            cells = " | ".join(f"{t[n] * 1e6:.0f}" for n in fns)
            print(f"| {rows} | {lo}–{hi} | {'cold' if cold else 'warm'} | {cells} |")
    extend_table(args.calls)


def extend_table(calls: int) -> None:
    print("\n| new tokens | C tiles µs | torch path µs |")
    print("|---:|---:|---:|")
    for n in (32, 165, 512):
        q, k, v, table, idx, _ = make_case(1, n, n + 1)
        args = (q[:1].expand(n, -1, -1).contiguous(), k, v, table, idx, torch.tensor([0]), torch.tensor([n]),
                torch.tensor([0]), 0.125)
        times = {}
        for native in (True, False, True, False):
            cpu_native.set_enabled(native)
            start = time.perf_counter()
            for _ in range(calls // 4):
                cpu_attention.extend_attention(*args, memo={})
            times.setdefault(native, []).append((time.perf_counter() - start) / (calls // 4))
        cpu_native.set_enabled(True)
        print(f"| {n} | {min(times[True]) * 1e6:.0f} | {min(times[False]) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
