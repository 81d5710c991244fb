"""CPU linear layers: the model's matmuls per forward at a range of row counts, three ways.

    python benchmarks/bench_linear.py [--rows 1,2,8,64,512] [--passes 5]

Workload: SmolLM2-135M's weight shapes, random float32 — per forward the 30 layers' qkv
(960×576), o (576×576), gate_up (3072×576) and down (576×1536) matmuls plus the lm_head
(49152×576), for `rows` tokens. Columns, ms per forward (best of `--passes` timed loops,
the three ways interleaved so the machine's drift hits them alike):
  F.linear   ATen's `x @ Wᵀ` (MKL sgemm);
  MKL path   `kernels.cpu_ops.linear` without a prepacked weight ((W @ xᵀ)ᵀ at 2–64 rows,
             padded to a multiple of 8 above 8 rows);
  oneDNN     `kernels.cpu_ops.linear` with `prepack_weight` (what the runtime uses).
"""

from __future__ import annotations

import argparse
import time

import torch

from radixlm.kernels import cpu_ops

LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]  # [out, in], 30 layers each
LM_HEAD = (49152, 576)
LAYERS = 30


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1,2,4,8,16,32,64,128,256,512,2048")
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN "
          f"{'on' if torch.backends.mkldnn.is_available() else 'missing'}\n")
    print("| rows | F.linear ms | MKL path ms | oneDNN prepacked ms | oneDNN vs MKL path |")
    print("|---:|---:|---:|---:|---:|")
    for rows in (int(r) for r in args.rows.split(",")):
        t = forward_ms(rows, args.passes)
        print(f"| {rows} | {t['F.linear']:.1f} | {t['MKL path']:.1f} | {t['oneDNN']:.1f} | "
              f"{t['MKL path'] / t['oneDNN']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
