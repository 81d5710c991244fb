"""The OpenAI backend against our own server's OpenAI-compatible `/v1` routes."""

from __future__ import annotations

import pytest

import radixlm.lang as rl

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


@pytest.fixture(scope="module")
def chat_backend(runtime):
    return rl.OpenAI("SmolLM2-135M-Instruct", base_url=runtime.url + "/v1", api_key="unused")


@rl.function
def chat(s, question):
    s += rl.system("You are a helpful assistant.")
    s += rl.user(question)
    s += rl.assistant(rl.gen("answer", max_tokens=6))


def test_chat_model_sends_messages_and_counts_usage(chat_backend):
    state = chat.run("What is the capital of France?", backend=chat_backend, temperature=0)
    assert state.error() is None
    assert "Paris" in state["answer"]
    assert state.messages()[-1] == {"role": "assistant", "content": state["answer"]}
    assert chat_backend.token_usage.completion_tokens > 0


def test_chat_model_streams(chat_backend):
    state = chat.run("Say hello.", backend=chat_backend, temperature=0, stream=True)
    assert "".join(state.text_iter("answer")) == state["answer"] != ""


def test_completion_model_continues_the_text(runtime):
    backend = rl.OpenAI("SmolLM2-135M-Instruct", is_chat_model=False,
                        base_url=runtime.url + "/v1", api_key="unused")

    @rl.function
    def complete(s):
        s += "The capital of France is" + rl.gen("city", max_tokens=4, stop=".")

    state = complete.run(backend=backend, temperature=0)
    assert "Paris" in state["city"]


def test_gen_outside_an_assistant_turn_is_a_clear_error_for_chat_models(chat_backend):
    @rl.function
    def bare(s):
        s += "Hello" + rl.gen("x", max_tokens=2)

    assert "right after assistant_begin" in str(bare.run(backend=chat_backend).error())


def test_select_explains_that_it_needs_a_native_backend(chat_backend):
    @rl.function
    def pick(s):
        s += rl.user("Yes or no?") + rl.assistant(rl.select("a", choices=["yes", "no"]))

    assert "RuntimeEndpoint" in str(pick.run(backend=chat_backend).error())
