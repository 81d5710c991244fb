"""run_batch sends the traced few-shot prefix once, and every item then hits the radix cache."""

from __future__ import annotations

import pytest

import radixlm.lang as rl

FEW_SHOT = "".join(
    f"Question: What is {a} plus {b}?\nAnswer: {a + b}\n\n"
    for a, b in [(1, 2), (3, 4), (10, 5), (7, 7), (20, 22), (6, 9)]
)


@rl.function
def few_shot_qa(s, question):
    s += FEW_SHOT
    s += "Question: " + question + "\nAnswer:"
    s += rl.gen("answer", max_tokens=3, stop="\n")


@pytest.fixture
def sent_prefixes(engine_backend, monkeypatch):
    """Records every cache_prefix call on the engine backend (and still performs it)."""
    sent: list[str] = []
    original = engine_backend.cache_prefix

    def spy(prefix: str) -> None:
        sent.append(prefix)
        original(prefix)

    monkeypatch.setattr(engine_backend, "cache_prefix", spy)
    return sent


def test_run_batch_of_32_sends_the_shared_prefix_once_and_every_item_reuses_it(engine_backend, sent_prefixes, engine):
    engine.flush_cache()
    questions = [{"question": f"What is {i} plus {i + 3}?"} for i in range(32)]
    states = few_shot_qa.run_batch(questions, backend=engine_backend, temperature=0, progress_bar=True)

    assert sent_prefixes == [FEW_SHOT + "Question: "]
    prefix_tokens = len(engine.tokenizer(FEW_SHOT).input_ids)
    for state in states:
        assert state.error() is None
        meta = state.get_meta_info("answer")
        assert meta["cached_tokens"] >= prefix_tokens, meta
    assert states[0]["answer"].strip() == "3"  # 0 plus 3, few-shot format followed
