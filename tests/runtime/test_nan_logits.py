"""NaN/inf logits abort only their own request (fault injection on the real bundled model).

The contract, chosen to match what SGLang/vLLM users expect from a server-side fault that
concerns one request:
  * that request finishes with `finish_reason = {"type": "abort", "status_code": 500,
    "message": "...NaN/inf logits..."}`; the tokens generated before the fault are kept and
    the token sampled from the bad row is never emitted;
  * `Engine.generate` returns that result (as SGLang's Engine returns an aborted request)
    instead of raising; over HTTP the same abort becomes a 500 JSON error for a
    non-streaming request and an `{"error": {..., "code": 500}}` SSE event for a stream
    (`request_lifecycle.abort_error`), never a 4xx: the client did nothing wrong;
  * every other request of the same batch continues with exactly the output it has alone.

The fault is injected where it would surface: the logits the scheduler hands to the
sampler. `PoisonedRow` wraps `Sampler.sample` and overwrites one request's row.
"""

from __future__ import annotations

import pytest
import torch

from radixlm.runtime import Engine

GREEDY = {"temperature": 0, "max_new_tokens": 10, "ignore_eos": True}
PROMPTS = [
    "The capital of France is",
    "List of fruits:\n- apple\n-",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    ",
]


@pytest.fixture(scope="module")
def engine():
    with Engine(max_total_tokens=4096) as e:
        yield e


@pytest.fixture(scope="module")
def solo(engine) -> list[list[int]]:
    """Each prompt's greedy output ids, generated alone."""
    return [engine.generate(p, GREEDY)["output_ids"] for p in PROMPTS]


class PoisonedRow:
    """Once the request whose prompt is `prompt` has `after` output tokens, its row of the
    logits reaching the sampler becomes `value` (one step only)."""

    def __init__(self, engine: Engine, prompt: str, value: float, after: int) -> None:
        self.ids = engine.tokenizer(prompt).input_ids
        self.value, self.after = value, after
        self.batch_sizes: list[int] = []  # the batch size at each injection
        self.sampler = engine.scheduler.sampler
        self.real = self.sampler.sample

    def __enter__(self) -> PoisonedRow:
        self.sampler.sample = self
        return self

    def __exit__(self, *exc) -> None:
        self.sampler.sample = self.real

    def __call__(self, logits: torch.Tensor, reqs, **kw):
        for i, r in enumerate(reqs):
            if r.input_ids == self.ids and len(r.output_ids) == self.after and not self.batch_sizes:
                logits = logits.clone()
                logits[i] = self.value
                self.batch_sizes.append(len(reqs))
        return self.real(logits, reqs, **kw)


def assert_aborted_for_nan(result: dict) -> None:
    reason = result["meta_info"]["finish_reason"]
    assert reason["type"] == "abort" and reason["status_code"] == 500, reason
    assert "NaN/inf" in reason["message"]


def assert_pool_clean(engine: Engine) -> None:
    engine.call_in_loop(lambda s: s.check_invariant())
    assert engine.call_in_loop(lambda s: not s.running and not s.waiting)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_logits_mid_decode_abort_only_that_request(engine, solo, value):
    with PoisonedRow(engine, PROMPTS[1], value, after=3) as poison:
        results = engine.generate(PROMPTS, GREEDY)
    assert poison.batch_sizes and poison.batch_sizes[0] >= 2, "the fault must hit a shared batch"
    assert_aborted_for_nan(results[1])
    assert results[1]["output_ids"] == solo[1][:3]  # kept up to the fault, garbage not emitted
    for i in (0, 2, 3):
        assert results[i]["meta_info"]["finish_reason"]["type"] == "length"
        assert results[i]["output_ids"] == solo[i]
    assert_pool_clean(engine)


def test_bad_logits_on_the_first_token_abort_before_any_output(engine, solo):
    with PoisonedRow(engine, PROMPTS[0], float("-inf"), after=0) as poison:
        results = engine.generate(PROMPTS[:2], GREEDY)
    assert poison.batch_sizes
    assert_aborted_for_nan(results[0])
    assert results[0]["output_ids"] == [] and results[0]["meta_info"]["completion_tokens"] == 0
    assert results[1]["output_ids"] == solo[1]
    assert_pool_clean(engine)
    # the engine keeps serving, and the aborted prompt works again once the fault is gone
    assert engine.generate(PROMPTS[0], GREEDY)["output_ids"] == solo[0]


def test_a_stream_ends_with_the_abort_event(engine):
    with PoisonedRow(engine, PROMPTS[2], float("nan"), after=2):
        events = list(engine.generate_stream(PROMPTS[2], GREEDY))
    assert_aborted_for_nan(events[-1])
    assert events[-1]["meta_info"]["completion_tokens"] == 2
    assert_pool_clean(engine)
