"""Attention kernels side by side: Triton vs the plain-torch reference vs torch SDPA.

    python benchmarks/bench_kernels.py                # on a CUDA machine: full table
    python benchmarks/bench_kernels.py --quick        # fewer shapes
    python benchmarks/bench_kernels.py --smoke        # anywhere: tiny shapes, CPU interpreter

Workload: SmolLM2-135M's attention (9 query heads, 3 KV heads, head_dim 64) by default, one
layer's token-level KV pool with each request's positions mapped to scattered slots (what a
radix cache hands the kernels). Every request in a row of the table has the same length so
that SDPA needs no padding mask.

  decode  one query per request over `context` keys; batch 1-256, context 512-8k.
  extend  `extend` new tokens per request over a cached prefix of `prefix` tokens.

Columns: Triton (`radixlm.kernels.triton_ops`), reference (`reference.py`: gathers K/V
through req_to_token, expands the KV heads, masked SDPA), and SDPA alone on K/V already
gathered into a dense [batch, heads, keys, head_dim] layout — the cost of attention with the
gather left out, i.e. what a contiguous-cache engine pays. Decode also reports the
bandwidth Triton achieves (bytes of K/V and q read / time) as a fraction of the GPU's copy
bandwidth measured here (a large device-to-device tensor copy); extend reports TFLOP/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from radixlm.kernels import reference

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class Heads:
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class DecodeCase:
    batch: int
    context: int


@dataclass(frozen=True)
class ExtendCase:
    batch: int
    prefix: int
    extend: int


FULL_DECODE = [DecodeCase(b, c) for b in (1, 16, 64, 256) for c in (512, 2048, 8192)]
QUICK_DECODE = [DecodeCase(1, 8192), DecodeCase(64, 2048), DecodeCase(256, 512)]
FULL_EXTEND = [
    ExtendCase(1, 0, 2048),
    ExtendCase(1, 4096, 512),
    ExtendCase(8, 0, 512),
    ExtendCase(8, 2048, 512),
    ExtendCase(32, 1024, 128),
    ExtendCase(64, 512, 32),
]
QUICK_EXTEND = [ExtendCase(1, 0, 2048), ExtendCase(8, 2048, 512)]
SMOKE_DECODE = [DecodeCase(2, 40)]
SMOKE_EXTEND = [ExtendCase(2, 16, 12)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes; runs on CPU (interpreter)")
    p.add_argument("--quick", action="store_true", help="a few representative shapes")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--heads", type=int, default=9, help="query heads (SmolLM2: 9)")
    p.add_argument("--kv-heads", type=int, default=3, help="KV heads (SmolLM2: 3)")
    p.add_argument("--head-dim", type=int, default=64, help="SmolLM2: 64")
    p.add_argument("--out", help="also write the markdown report to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_cuda = torch.cuda.is_available()
    if not on_cuda and not args.smoke:
        print(
            "bench_kernels.py needs a CUDA GPU (none found): the Triton kernels are timed only "
            "where they are compiled. Run with --smoke for a tiny CPU check of this harness."
        )
        return 0
    if not on_cuda:
        # Must happen before triton is imported: kernels are bound to the interpreter
        # when their module is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        import triton
    except ImportError:
        print("bench_kernels.py needs triton (pip install triton)")
        return 1 if on_cuda else 0

    device = torch.device("cuda" if on_cuda else "cpu")
    dtype = getattr(torch, DTYPES[args.dtype])
    heads = Heads(args.heads, args.kv_heads, args.head_dim)
    if args.smoke:
        decode_cases, extend_cases = SMOKE_DECODE, SMOKE_EXTEND
    elif args.quick:
        decode_cases, extend_cases = QUICK_DECODE, QUICK_EXTEND
    else:
        decode_cases, extend_cases = FULL_DECODE, FULL_EXTEND
    timer = Timer(device, smoke=args.smoke)

    machine = (
        torch.cuda.get_device_name(device)
        if on_cuda
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    copy_gbps = measure_copy_bandwidth(device, timer, small=args.smoke)
    lines = [
        f"## Attention kernels on {machine}",
        "",
        f"torch {torch.__version__}, triton {triton.__version__}, dtype {args.dtype}, "
        f"{heads.num_heads} query heads / {heads.num_kv_heads} KV heads / head_dim {heads.head_dim}, "
        "scattered token-level KV slots, equal lengths per row.",
        f"Copy bandwidth (device-to-device tensor copy, read + write): {copy_gbps:.0f} GB/s.",
    ]
    if args.smoke:
        lines.append("SMOKE RUN: CPU interpreter, tiny shapes — the timings mean nothing.")
    lines += _table(
        "Decode (one query per request)",
        "| batch | context | Triton ms | reference ms | SDPA (pre-gathered) ms | Triton vs ref | "
        "Triton GB/s | of copy BW | max abs err vs ref |",
        ((c, bench_decode(c, heads, dtype, device, timer)) for c in decode_cases),
        lambda c, r: f"| {c.batch} | {c.context} | {_times(r)} | {r['gbps']:.0f} | "
                     f"{r['gbps'] / copy_gbps:.0%} | {r['err']:.1e} |",
    )
    lines += _table(
        "Extend (new tokens over a cached prefix, causal among themselves)",
        "| batch | prefix | extend | Triton ms | reference ms | SDPA (pre-gathered) ms | "
        "Triton vs ref | Triton TFLOP/s | max abs err vs ref |",
        ((c, bench_extend(c, heads, dtype, device, timer)) for c in extend_cases),
        lambda c, r: f"| {c.batch} | {c.prefix} | {c.extend} | {_times(r)} | {r['tflops']:.1f} | "
                     f"{r['err']:.1e} |",
    )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report)
    return 0


def _times(r: dict) -> str:
    return (f"{r['triton']:.3f} | {r['reference']:.3f} | {r['sdpa']:.3f} | "
            f"{r['reference'] / r['triton']:.1f}x")


def _table(title: str, header: str, results, row) -> list[str]:
    """A markdown table of `results` ((case, numbers) pairs), each row also printed as it
    is measured (progress while the table builds)."""
    columns = header.count("|") - 1
    lines = ["", f"### {title}", "", header, "|" + "---:|" * columns]
    for case, r in results:
        lines.append(row(case, r))
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


class Timer:
    """Milliseconds per call: triton's do_bench (CUDA events, L2 flushed) on a GPU, a
    perf_counter loop under the CPU interpreter."""

    def __init__(self, device, smoke: bool) -> None:
        self.device = device
        self.smoke = smoke

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        fn()
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3


def measure_copy_bandwidth(device, timer: Timer, small: bool) -> float:
    """GB/s of `dst.copy_(src)` on a tensor far larger than L2 (counts read + write)."""
    nbytes = (16 << 20) if small else (2 << 30)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * nbytes / (ms * 1e-3) / 1e9


def make_pool(batch: int, seq_len: int, heads: Heads, dtype, device):
    """One layer's pool holding `batch` requests of `seq_len` tokens at scattered slots."""
    num_slots = batch * seq_len
    shape = (num_slots + 1, heads.num_kv_heads, heads.head_dim)
    k_cache = torch.randn(shape, dtype=dtype, device=device)
    v_cache = torch.randn(shape, dtype=dtype, device=device)
    slots = torch.randperm(num_slots, device=device) + 1  # slot 0 is padding
    req_to_token = slots.view(batch, seq_len).to(torch.int32).contiguous()
    req_pool_indices = torch.arange(batch, device=device)
    return k_cache, v_cache, req_to_token, req_pool_indices


def gather_dense(cache, req_to_token, num_heads: int):
    """[batch, seq, kv_heads, d] -> [batch, heads, seq, d], KV heads expanded for SDPA."""
    dense = cache[req_to_token.long()].transpose(1, 2)
    return dense.repeat_interleave(num_heads // dense.shape[1], dim=1).contiguous()


def bench_decode(case: DecodeCase, heads: Heads, dtype, device, timer: Timer) -> dict[str, float]:
    from radixlm.kernels import triton_ops  # after main() chose compiled vs interpreted

    k_cache, v_cache, req_to_token, req_pool_indices = make_pool(
        case.batch, case.context, heads, dtype, device
    )
    seq_lens = torch.full((case.batch,), case.context, device=device)
    q = torch.randn(case.batch, heads.num_heads, heads.head_dim, dtype=dtype, device=device)
    scale = heads.head_dim**-0.5
    out = torch.empty_like(q)
    args = (q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale)

    tri = timer(lambda: triton_ops.decode_attention(*args, max_seq_len=case.context, out=out))
    err = (out.float() - reference.decode_attention(*args).float()).abs().max().item()
    ref = timer(lambda: reference.decode_attention(*args, max_seq_len=case.context))
    k, v = (gather_dense(c, req_to_token, heads.num_heads) for c in (k_cache, v_cache))
    q4 = q[:, :, None, :]  # [batch, heads, 1, d]
    sdpa = timer(lambda: torch.nn.functional.scaled_dot_product_attention(q4, k, v, scale=scale))

    elem = k_cache.element_size()
    kv_bytes = 2 * case.batch * case.context * heads.num_kv_heads * heads.head_dim * elem
    q_bytes = q.numel() * elem
    gbps = (kv_bytes + q_bytes) / (tri * 1e-3) / 1e9
    return {"triton": tri, "reference": ref, "sdpa": sdpa, "gbps": gbps, "err": err}


def bench_extend(case: ExtendCase, heads: Heads, dtype, device, timer: Timer) -> dict[str, float]:
    from radixlm.kernels import triton_ops

    seq_len = case.prefix + case.extend
    k_cache, v_cache, req_to_token, req_pool_indices = make_pool(
        case.batch, seq_len, heads, dtype, device
    )
    prefix_lens = torch.full((case.batch,), case.prefix, device=device)
    extend_lens = torch.full((case.batch,), case.extend, device=device)
    extend_start_loc = torch.arange(case.batch, device=device) * case.extend
    q = torch.randn(
        case.batch * case.extend, heads.num_heads, heads.head_dim, dtype=dtype, device=device
    )
    scale = heads.head_dim**-0.5
    out = torch.empty_like(q)
    args = (
        q, k_cache, v_cache, req_to_token, req_pool_indices,
        prefix_lens, extend_lens, extend_start_loc, scale,
    )  # fmt: skip
    maxima = {"max_seq_len": seq_len, "max_extend_len": case.extend}

    tri = timer(lambda: triton_ops.extend_attention(*args, **maxima, out=out))
    err = (out.float() - reference.extend_attention(*args).float()).abs().max().item()
    ref = timer(lambda: reference.extend_attention(*args, **maxima))

    k, v = (gather_dense(c, req_to_token, heads.num_heads) for c in (k_cache, v_cache))
    q4 = q.view(case.batch, case.extend, heads.num_heads, heads.head_dim).transpose(1, 2)
    if case.prefix == 0:
        # Plain causal: SDPA can take its flash path.
        sdpa = timer(
            lambda: torch.nn.functional.scaled_dot_product_attention(
                q4, k, v, is_causal=True, scale=scale
            )
        )
    else:
        # is_causal aligns the diagonal top-left; with a prefix the mask is shifted.
        q_pos = case.prefix + torch.arange(case.extend, device=device)
        mask = torch.arange(seq_len, device=device)[None, :] <= q_pos[:, None]
        sdpa = timer(
            lambda: torch.nn.functional.scaled_dot_product_attention(
                q4, k, v, attn_mask=mask, scale=scale
            )
        )

    # QK^T and PV over the keys each query sees: prefix + (its index + 1).
    visible = case.batch * (case.extend * case.prefix + case.extend * (case.extend + 1) / 2)
    flops = 4 * heads.num_heads * heads.head_dim * visible
    return {
        "triton": tri,
        "reference": ref,
        "sdpa": sdpa,
        "tflops": flops / (tri * 1e-3) / 1e12,
        "err": err,
    }


if __name__ == "__main__":
    sys.exit(main())
