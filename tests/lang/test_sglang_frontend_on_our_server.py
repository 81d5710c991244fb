"""The reverse direction: SGLang's own frontend (`sgl.RuntimeEndpoint`) against our server.

Needs `pip install --no-deps sglang` plus the few packages its frontend imports; skipped
with that reason when sglang is not installed.
"""

from __future__ import annotations

import pytest

sgl = pytest.importorskip("sglang", reason="sglang is not installed (pip install --no-deps sglang)")


@pytest.fixture(scope="module")
def endpoint(runtime):
    return sgl.RuntimeEndpoint(runtime.url)


def test_multi_turn(endpoint):
    @sgl.function
    def chat(s):
        s += sgl.user("What is the capital of France?")
        s += sgl.assistant(sgl.gen("a1", max_tokens=6))
        s += sgl.user("And of Italy?")
        s += sgl.assistant(sgl.gen("a2", max_tokens=6))

    state = chat.run(backend=endpoint, temperature=0)
    assert [m["role"] for m in state.messages()] == ["user", "assistant", "user", "assistant"]
    assert "Paris" in state["a1"]


def test_select(endpoint):
    @sgl.function
    def capital(s):
        s += "The capital of France is" + sgl.select("c", choices=[" London", " Paris"])

    assert capital.run(backend=endpoint)["c"] == " Paris"


def test_fork_join(endpoint):
    @sgl.function
    def drafts(s):
        s += "Facts:\n"
        forks = s.fork(2)
        forks += lambda i: ["Cats:", "Dogs:"][i]
        forks += sgl.gen("fact", max_tokens=4, stop="\n")
        forks.join()

    state = drafts.run(backend=endpoint, temperature=0)
    assert len(state["fact"]) == 2


def test_streaming_gen(endpoint):
    @sgl.function
    def story(s):
        s += "Once upon a time" + sgl.gen("story", max_tokens=6)

    state = story.run(backend=endpoint, stream=True, temperature=0)
    assert "".join(state.text_iter("story")) == state["story"]
    assert state.get_meta_info("story")["completion_tokens"] == 6


def test_sglangs_own_decode_int_program(endpoint):
    """SGLang 0.5.23's test_decode_int, run as it ships: `gen_int` after "hours in a day"
    must answer 24, where the model wants to write "24 hours" (end on reject)."""
    from sglang.test import test_programs

    sgl.set_default_backend(endpoint)
    test_programs.test_decode_int()


def test_sglangs_own_decode_json_program(endpoint):
    """SGLang 0.5.23's test_decode_json: typed gens inside a JSON object must parse."""
    from sglang.test import test_programs

    sgl.set_default_backend(endpoint)
    test_programs.test_decode_json()


def test_sglangs_own_tool_use_program(endpoint):
    """SGLang 0.5.23's test_tool_use: `select` picks the tools a question needs (the
    ordered choice among tool names, over our /generate's choices)."""
    from sglang.test import test_programs

    sgl.set_default_backend(endpoint)
    test_programs.test_tool_use()
