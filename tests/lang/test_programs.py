"""Real programs on the bundled model.

Tests taking `backend` run twice: on the in-process engine and on the real server over HTTP
(launched through `Runtime`); the rest run on the engine only, to keep the suite short.
Greedy decoding and a handful of tokens per gen keep each program to a few seconds on a CPU.
"""

from __future__ import annotations

import asyncio

import pytest

import radixlm.lang as rl

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


@rl.function
def multi_turn(s, first, second):
    s += rl.system("You are a concise assistant.")
    s += rl.user(first)
    s += rl.assistant(rl.gen("answer_1", max_tokens=6))
    s += rl.user(second)
    with s.assistant():
        s += rl.gen("answer_2", max_tokens=6)


def test_multi_turn_roles_record_messages_and_use_the_chat_template(backend):
    state = multi_turn.run("What is the capital of France?", "And of Italy?",
                           backend=backend, temperature=0)
    assert state.error() is None
    messages = state.messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == state["answer_1"].lstrip()
    assert messages[4]["content"] == state["answer_2"].lstrip()
    assert state.text().startswith("<|im_start|>system\nYou are a concise assistant.<|im_end|>\n")
    assert "Paris" in state["answer_1"]
    meta = state.get_meta_info("answer_2")
    assert meta["completion_tokens"] <= 6 and meta["cached_tokens"] > 0  # turn 1 was reused


def test_select_picks_the_likeliest_choice_in_one_scoring_batch(backend):
    @rl.function
    def capital(s):
        s += "The capital of France is"
        s += rl.select("city", choices=[" London", " Paris", " Berlin"])

    state = capital.run(backend=backend)
    assert state["city"] == " Paris"
    meta = state.get_meta_info("city")
    scores = meta["normalized_prompt_logprobs"]
    assert len(scores) == 3 and scores[1] == max(scores)
    assert state.text() == "The capital of France is Paris"


def test_greedy_token_selection_agrees_on_a_clear_choice(engine_backend):
    backend = engine_backend
    @rl.function
    def capital(s):
        s += "The capital of France is" + rl.select(
            "city", choices=[" Paris", " Rome"], choices_method=rl.greedy_token_selection)

    state = capital.run(backend=backend)
    assert state["city"] == " Paris"
    assert "greedy_logprob_matrix" in state.get_meta_info("city")


def test_fork_join_runs_branches_with_their_own_variables(backend):
    @rl.function
    def drafts(s):
        s += "Here are short facts about animals.\n"
        forks = s.fork(2)
        forks += lambda i: ["Cats:", "Dogs:"][i]
        forks += rl.gen("fact", max_tokens=5, stop="\n")
        forks.join()

    state = drafts.run(backend=backend, temperature=0)
    assert state.error() is None
    facts = state["fact"]
    assert isinstance(facts, list) and len(facts) == 2 and all(isinstance(f, str) for f in facts)
    assert state.text() == "Here are short facts about animals.\n"


def test_concate_and_append_join_continues_from_all_branches(engine_backend):
    backend = engine_backend
    @rl.function
    def merged(s):
        s += "Two colors:"
        forks = s.fork(2)
        forks += [" red,", " blue,"]
        forks.join(mode="concate_and_append")
        s += rl.gen("more", max_tokens=3)

    state = merged.run(backend=backend, temperature=0)
    assert state.error() is None
    assert state.text().startswith("Two colors: red, blue,")


def test_streaming_yields_deltas_with_incremental_logprobs_and_cumulative_counters(backend):
    @rl.function
    def story(s):
        s += "Once upon a time"
        s += rl.gen("story", max_tokens=8, return_logprob=True)

    state = story.run(backend=backend, stream=True, temperature=0)

    async def collect():
        return [pair async for pair in state.text_async_iter("story", return_meta_data=True)]

    pairs = asyncio.run(collect())
    assert "".join(chunk for chunk, _ in pairs) == state["story"]
    seen = 0
    for _chunk, meta in pairs:
        grown = meta["completion_tokens"] - seen
        assert len(meta["output_token_logprobs"]) == grown  # increments, not cumulative lists
        assert meta["output_token_logprobs_length"] == meta["completion_tokens"]
        seen = meta["completion_tokens"]
    assert seen == state.get_meta_info("story")["completion_tokens"] == 8
    assert state.text() == "Once upon a time" + state["story"]


def test_text_iter_streams_the_whole_program_text(engine_backend):
    backend = engine_backend
    @rl.function
    def hello(s):
        s += "Hello,"
        s += rl.gen("rest", max_tokens=4)

    state = hello.run(backend=backend, stream=True, temperature=0)
    chunks = list(state.text_iter())
    assert len(chunks) >= 2 and "".join(chunks) == state.text()


def test_min_tokens_keeps_generating_past_a_stop_token(engine_backend):
    backend = engine_backend
    @rl.function
    def probe(s, min_tokens, stop_id):
        s += "1, 2, 3,"
        s += rl.gen("x", max_tokens=4, min_tokens=min_tokens, return_logprob=True,
                    stop_token_ids=[stop_id] if stop_id is not None else None)

    first = probe.run(0, None, backend=backend, temperature=0)
    stop_id = first.get_meta_info("x")["output_token_logprobs"][0][1]  # the greedy first token
    stopped = probe.run(0, stop_id, backend=backend, temperature=0)
    assert stopped.get_meta_info("x")["completion_tokens"] == 1
    kept = probe.run(4, stop_id, backend=backend, temperature=0)
    assert kept.get_meta_info("x")["completion_tokens"] == 4


def test_a_backend_error_surfaces_in_state_error(backend):
    @rl.function
    def broken(s):
        s += "Hello" + rl.gen("x", max_tokens=4, top_p=5.0)

    state = broken.run(backend=backend)
    assert "top_p" in str(state.error())
    with pytest.raises(KeyError, match="top_p"):
        state["x"]
