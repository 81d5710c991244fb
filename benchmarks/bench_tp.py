"""Time per decode step at --tp 1 and --tp 2 on this machine (tensor parallelism over gloo).

    python benchmarks/bench_tp.py [--batches 1,8,32] [--context 256] [--steps 20]

Model: SmolLM2-135M's shape with heads that divide by 2 (SmolLM2's 9 do not): 30 layers,
hidden 576, MLP 1536, vocabulary 49152, tied embeddings, 8 query heads of 72 and 2 KV heads,
random float32 weights (~134M parameters), written once as a Hugging Face folder under the
cache directory. Each setting is an in-process Engine (tp 2: this process is rank 0 and
starts rank 1). For each batch size, `batch` requests of `context` tokens of KV decode one
token each: one ForwardBatch, forwarded `steps` times through `ModelRunner.forward` on the
engine's loop thread (the broadcast to the other rank included, sampling not); the median
step is reported. KV contents do not change the work, so the pool is not prefilled.
Rows: tp 1 with its compiled one-token forward (batch 1 only takes it), tp 1 eager, tp 2
(always eager: the compiled forward has no all-reduce). Also: weight bytes per rank.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from radixlm.runtime import Engine
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.model.loader import default_cache_dir, resolve_model
from radixlm.runtime.model.tokenizer import load_tokenizer

SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=8,
             num_key_value_heads=2, head_dim=72, vocab_size=49152, tie_word_embeddings=True,
             max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5)
SETTINGS = [("tp 1, compiled one-token forward", 1, False), ("tp 1, eager", 1, True), ("tp 2", 2, True)]


def model_folder() -> Path:
    """The benchmark's model, written once (random weights, seed 0)."""
    import transformers as tf

    folder = default_cache_dir() / "bench-tp-smollm2-shape-v1"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        tf.LlamaForCausalLM(tf.LlamaConfig(**SHAPE)).save_pretrained(folder)
        load_tokenizer(resolve_model(None)).save_pretrained(folder)
    return folder


def decode_step_ms(sched, batch: int, context: int, steps: int) -> float:
    """Median ms of one decode forward of `batch` requests with `context` tokens of KV each."""
    rows = [sched.req_pool.alloc() for _ in range(batch)]
    slots = sched.kv_pool.alloc(batch * (context + 1)).view(batch, context + 1)
    for row, s in zip(rows, slots):
        sched.req_pool.req_to_token[row, : context + 1] = s.to(torch.int32)
    fb = lambda: ForwardBatch.build(  # noqa: E731 - built per step, as the scheduler does
        input_ids=[100 + i for i in range(batch)], req_pool_indices=rows, prefix_lens=[context] * batch,
        extend_lens=[1] * batch, out_cache_loc=slots[:, -1].contiguous(), logits_indices=list(range(batch)),
        req_to_token=sched.req_pool.req_to_token, k_buffers=sched.kv_pool.k_buffers, v_buffers=sched.kv_pool.v_buffers)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        sched.runner.forward(fb())
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    sched.kv_pool.free(slots.reshape(-1))
    for row in rows:
        sched.req_pool.free(row)
    return statistics.median(times)


def run_setting(folder: Path, tp: int, eager: bool, batches: list[int], context: int, steps: int) -> dict:
    with Engine(model_path=str(folder), tp=tp, disable_torch_compile=eager, max_total_tokens=40000) as engine:
        runner = engine.scheduler.runner
        weights = [f["param_bytes"] for f in runner.tp_ranks] or [runner.param_bytes()]
        threads = engine.call_in_loop(lambda s: torch.get_num_threads())
        ms = {b: engine.call_in_loop(lambda s, b=b: decode_step_ms(s, b, context, steps)) for b in batches}
    return {"ms": ms, "weights": weights, "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    folder = model_folder()
    results = {}
    for name, tp, eager in SETTINGS:
        print(f"measuring {name} ...", flush=True)
        results[name] = run_setting(folder, tp, eager, batches, args.context, args.steps)
    print(f"\ndecode step, median of {args.steps}, {args.context} tokens of KV per request\n")
    print("| setting | torch threads (rank 0) | weights per rank, MiB | " + " | ".join(f"batch {b}, ms" for b in batches) + " |")
    print("|---|---:|---:|" + "---:|" * len(batches))
    for name, r in results.items():
        weights = " / ".join(f"{w / 2**20:.0f}" for w in r["weights"])
        print(f"| {name} | {r['threads']} | {weights} | " + " | ".join(f"{r['ms'][b]:.1f}" for b in batches) + " |")


if __name__ == "__main__":  # the tp 2 engine spawns its other rank, which re-imports this file
    main()
