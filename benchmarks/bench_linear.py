"""CPU linear layers: the model's matmuls per forward at a range of row counts, several ways.

    python benchmarks/bench_linear.py [--rows 1,2,8,64,512] [--passes 5]
    python benchmarks/bench_linear.py --cold [--rows 1,16,32,64] [--dtype bfloat16]

Workload: SmolLM2-135M's weight shapes, random float32 — per forward the 30 layers' qkv
(960×576), o (576×576), gate_up (3072×576) and down (576×1536) matmuls plus the lm_head
(49152×576), for `rows` tokens. Columns, ms per forward (best of `--passes` timed loops,
the three ways interleaved so the machine's drift hits them alike):
  F.linear   ATen's `x @ Wᵀ` (MKL sgemm);
  MKL path   `kernels.cpu_ops.linear` without a prepacked weight ((W @ xᵀ)ᵀ at 2–64 rows,
             padded to a multiple of 8 above 8 rows);
  oneDNN     `kernels.cpu_ops.linear` with `prepack_weight` (what the runtime uses).

`--cold` times what a decode step sees instead: every layer its own weights (the whole
model's ~540 MB, more than the caches hold), one pass over all of them per forward, median
of `--passes`; columns oneDNN prepacked, column panels (`kernels/cpu_gemm.py`, up to 64
rows) and the MKL path, interleaved per pass; in float32 or bfloat16 (`--dtype`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

from radixlm.kernels import cpu_gemm, cpu_ops  # noqa: E402

LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]  # [out, in], 30 layers each
LM_HEAD = (49152, 576)
LAYERS = 30
DEFAULT_ROWS = "1,2,4,8,16,32,64,128,256,512,2048"


def _time(fn, loops: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops * 1e3


def shape_ms(rows: int, shape: tuple[int, int], passes: int) -> dict[str, float]:
    """Best ms of one matmul of `rows` rows by a weight of `shape`, per way."""
    w = torch.randn(*shape)
    x = torch.randn(rows, shape[1])
    packed = cpu_ops.prepack_weight(w)
    ways = {"F.linear": lambda: torch.nn.functional.linear(x, w),
            "MKL path": lambda: cpu_ops.linear(x, w),
            "oneDNN": lambda: cpu_ops.linear(x, w, packed=packed)}
    for fn in ways.values():
        fn()  # warm-up
    best = {name: float("inf") for name in ways}
    for _ in range(passes):
        for name, fn in ways.items():
            best[name] = min(best[name], _time(fn))
    return best


def forward_ms(rows: int, passes: int) -> dict[str, float]:
    """ms for one forward's matmuls at `rows` rows, per way (a layer shape timed once, x 30)."""
    totals = {"F.linear": 0.0, "MKL path": 0.0, "oneDNN": 0.0}
    for shape, repeat in [(s, LAYERS) for s in LAYER_SHAPES] + [(LM_HEAD, 1)]:
        for name, ms in shape_ms(rows, shape, passes).items():
            totals[name] += ms * repeat
    return totals


def cold_forward_ms(rows_list: list[int], passes: int, dtype: torch.dtype) -> dict[int, dict[str, float]]:
    """Median ms per forward over the whole model's distinct weights, per way and row count."""
    shapes = [s for _ in range(LAYERS) for s in LAYER_SHAPES] + [LM_HEAD]
    weights = [(torch.randn(*s) * 0.05).to(dtype) for s in shapes]
    packed = [cpu_ops.prepack_weight(w) for w in weights]
    panels = [cpu_gemm.pack(w) for w in weights]
    ways = {"oneDNN": lambda x, i: cpu_ops.linear(x, weights[i], packed=packed[i]),
            "panels": lambda x, i: cpu_ops.linear(x, weights[i], packed=panels[i]),
            "MKL path": lambda x, i: cpu_ops.linear(x, weights[i])}
    result = {}
    for rows in rows_list:
        xs = {k: torch.randn(rows, k).to(dtype) for k in {s[1] for s in shapes}}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(passes + 1):  # the first pass warms up
            for name, fn in ways.items():
                start = time.perf_counter()
                for i, w in enumerate(weights):
                    fn(xs[w.shape[1]], i)
                times[name].append((time.perf_counter() - start) * 1e3)
        result[rows] = {name: statistics.median(t[1:]) for name, t in times.items()}
    return result


def print_cold(rows_list: list[int], passes: int, dtype: torch.dtype) -> None:
    print(f"{dtype}, cold weights\n")
    print("| rows | oneDNN prepacked ms | column panels ms | MKL path ms | panels vs oneDNN |")
    print("|---:|---:|---:|---:|---:|")
    for rows, t in cold_forward_ms(rows_list, passes, dtype).items():
        print(f"| {rows} | {t['oneDNN']:.1f} | {t['panels']:.1f} | {t['MKL path']:.1f} | "
              f"{t['oneDNN'] / t['panels']:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="the whole model's distinct weights per forward")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="with --cold")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print_machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN "
          f"{'on' if torch.backends.mkldnn.is_available() else 'missing'}\n")
    if args.cold:
        print_cold([int(r) for r in (args.rows if args.rows != DEFAULT_ROWS else "1,16,32,64").split(",")], args.passes,
                   getattr(torch, args.dtype))
        return
    print("| rows | F.linear ms | MKL path ms | oneDNN prepacked ms | oneDNN vs MKL path |")
    print("|---:|---:|---:|---:|---:|")
    for rows in (int(r) for r in args.rows.split(",")):
        t = forward_ms(rows, args.passes)
        print(f"| {rows} | {t['F.linear']:.1f} | {t['MKL path']:.1f} | {t['oneDNN']:.1f} | "
              f"{t['MKL path'] / t['oneDNN']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
