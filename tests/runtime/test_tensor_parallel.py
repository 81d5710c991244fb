"""Tensor parallelism on the CPU (gloo, 2 real processes): the same results as one device.

Contract (runtime/distributed/, docs/architecture.md §4): `Engine(tp=2)` gives greedy output
ids identical to `Engine(tp=1)` on the parity prompts, with final-position logits within
LOGIT_ATOL (float32; ranks sum partial products in a different order), from a prefill and
from a decode step; each rank holds about half the weights; a model whose heads do not divide
is refused before anything starts; a rank that dies stops the engine with an error naming it.

The subjects are small random-weight models (tests/conftest.py `small_tp_model`): one with
its KV heads split and an odd vocabulary (a padded last shard), one with its single KV head
replicated and q/k/v biases. The bundled SmolLM2 (9 query heads) runs at tp 3 in the slow test.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from radixlm.runtime import Engine
from radixlm.runtime.engine import EngineClosedError
from radixlm.runtime.model.forward_batch import ForwardBatch

MAX_NEW = 24
LOGIT_ATOL = 1e-4
GREEDY = {"max_new_tokens": MAX_NEW, "temperature": 0, "ignore_eos": True}


def final_logits(sched, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits after each prompt: (from one prefill of all of them, from a decode step of
    their last tokens after a prefill of the rest). Runs on the engine's loop thread; every
    slot and row is given back."""
    rows = [sched.req_pool.alloc() for _ in ids]
    slots = sched.kv_pool.alloc(sum(len(x) for x in ids))
    offsets = [0]
    for row, x in zip(rows, ids):
        sched.req_pool.req_to_token[row, : len(x)] = slots[offsets[-1] : offsets[-1] + len(x)].to(torch.int32)
        offsets.append(offsets[-1] + len(x))
    common = dict(req_pool_indices=rows, req_to_token=sched.req_pool.req_to_token,
                  k_buffers=sched.kv_pool.k_buffers, v_buffers=sched.kv_pool.v_buffers)
    prefill = sched.runner.forward(ForwardBatch.build(
        input_ids=[t for x in ids for t in x], prefix_lens=[0] * len(ids), extend_lens=[len(x) for x in ids],
        out_cache_loc=slots, logits_indices=[o - 1 for o in offsets[1:]], **common))
    sched.runner.forward(ForwardBatch.build(
        input_ids=[t for x in ids for t in x[:-1]], prefix_lens=[0] * len(ids),
        extend_lens=[len(x) - 1 for x in ids], logits_indices=[], **common,
        out_cache_loc=torch.cat([slots[a : b - 1] for a, b in zip(offsets, offsets[1:])])))
    decode = sched.runner.forward(ForwardBatch.build(
        input_ids=[x[-1] for x in ids], prefix_lens=[len(x) - 1 for x in ids], extend_lens=[1] * len(ids),
        out_cache_loc=slots[torch.tensor(offsets[1:]) - 1], logits_indices=list(range(len(ids))), **common))
    sched.kv_pool.free(slots)
    for row in rows:
        sched.req_pool.free(row)
    return prefill, decode


def run_engine(folder, tokenizer, prompts, tp: int) -> dict:
    ids = [tokenizer(p).input_ids for p in prompts]
    # tp 1 without the compiled one-token forward: tp 2 runs eagerly, and the Inductor
    # compile would double this module's time (its parity with eager is test_parity.py's).
    with Engine(model_path=str(folder), tp=tp, max_total_tokens=20000, disable_torch_compile=True) as engine:
        results = engine.generate(prompts, GREEDY)
        prefill, decode = engine.call_in_loop(lambda s: final_logits(s, ids))
        runner = engine.scheduler.runner
        engine.call_in_loop(lambda s: s.check_invariant())
        return {"ids": [r["output_ids"] for r in results], "prefill": prefill, "decode": decode,
                "param_bytes": [f["param_bytes"] for f in runner.tp_ranks] or [runner.param_bytes()],
                "kv_heads": runner.kv_heads}


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def runs(request, small_tp_model, tokenizer, prompts) -> dict:
    folder = small_tp_model(request.param)
    return {tp: run_engine(folder, tokenizer, prompts, tp) for tp in (1, 2)}


def test_greedy_ids_at_tp2_equal_tp1(runs):
    for i, (one, two) in enumerate(zip(runs[1]["ids"], runs[2]["ids"])):
        assert one == two, f"prompt {i} diverges: tp 1 {one} vs tp 2 {two}"


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_final_position_logits_at_tp2_match_tp1(runs, phase):
    one, two = runs[1][phase], runs[2][phase]
    assert one.shape == two.shape  # the whole vocabulary: the padded shard row is cut off
    diff = (one - two).abs().max().item()
    assert diff < LOGIT_ATOL, f"{phase}: max |logit diff| {diff:.2e} >= {LOGIT_ATOL}"


def test_each_rank_holds_about_half_the_weights(runs):
    whole, = runs[1]["param_bytes"]
    per_rank = runs[2]["param_bytes"]
    assert len(per_rank) == 2
    for b in per_rank:  # replicated: the norms (and, for qwen2, the KV head and its bias)
        assert 0.5 <= b / whole < 0.52, f"a rank holds {b} of {whole} weight bytes"


def test_each_rank_pool_holds_its_kv_heads(runs):
    assert runs[1]["kv_heads"] in (1, 2)
    assert runs[2]["kv_heads"] == max(runs[1]["kv_heads"] // 2, 1)


def test_a_model_whose_heads_do_not_divide_is_refused_before_anything_starts():
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"--tp 2 does not divide the model's 9 attention heads: "
                                         r"use a tp that does \(1, 3, 9\)"):
        Engine(tp=2)  # the bundled SmolLM2-135M: 9 query heads, 3 KV heads
    assert time.monotonic() - start < 30  # no rank was started, no weight loaded


def test_a_killed_rank_stops_the_engine_with_an_error_naming_it(small_tp_model, tokenizer):
    engine = Engine(model_path=str(small_tp_model("llama")), tp=2, max_total_tokens=4000,
                    disable_torch_compile=True)
    try:
        pid = engine.scheduler.runner.tp_ranks[1]["pid"]
        handle = engine.submit("Once upon a time", {"max_new_tokens": 900, "ignore_eos": True})
        next(iter(handle.events.get, None))  # it is decoding
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineClosedError, match=rf"tp rank 1 \(pid {pid}\) exited with code -9"):
            handle.future.result(timeout=60)
        with pytest.raises(EngineClosedError):
            engine.generate("Hello", GREEDY)
    finally:
        engine.shutdown()


@pytest.mark.slow
def test_bundled_gguf_model_at_tp3_equals_tp1(tokenizer, prompts):
    """The real SmolLM2-135M (GGUF, converted to an HF folder, loaded slice by slice): 9 query
    and 3 KV heads divide by 3. Three ranks on this 2-core machine: slow, not a speed test."""
    few = prompts[:4] + prompts[10:12]
    ids, weights = {}, {}
    for tp in (1, 3):
        with Engine(tp=tp, max_total_tokens=8000) as engine:
            ids[tp] = [r["output_ids"] for r in engine.generate(few, GREEDY)]
            runner = engine.scheduler.runner
            weights[tp] = [f["param_bytes"] for f in runner.tp_ranks] or [runner.param_bytes()]
    for i, (one, three) in enumerate(zip(ids[1], ids[3])):
        assert one == three, f"prompt {i} diverges: tp 1 {one} vs tp 3 {three}"
    assert len(weights[3]) == 3
    assert all(1 / 3 <= b / weights[1][0] < 0.34 for b in weights[3]), weights
