"""OpenAI-compatible endpoints through the official `openai` client (docs/wire-protocol.md C)."""

from __future__ import annotations

import json

import openai
import pytest

from .conftest import API_KEY

MESSAGES = [{"role": "user", "content": "Name a color."}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)


def test_chat_completion_uses_the_model_chat_template(client, server):
    r = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    # the prompt is the SmolLM2 ChatML rendering (its default system prompt included)
    rendered = server.post("/encode", {"text": "<|im_start|>system\nYou are a helpful AI assistant named "
                                               "SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
                                               "Name a color.<|im_end|>\n<|im_start|>assistant\n"}).json()
    assert r.usage.prompt_tokens == len(rendered["input_ids"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_the_non_streaming_text(client):
    full = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4, temperature=0)
    chunks = list(client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0  # the same prompt again


def test_chat_logprobs_and_top_logprobs(client):
    r = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(len(c.top_logprobs) == 2 and c.logprob <= 0 for c in content)


def test_completion_with_n_stop_and_logprobs(client, server):
    r = client.completions.create(model="any", prompt="1, 2, 3,", max_tokens=6, temperature=0,
                                  n=2, stop=[" 5"], logprobs=1, seed=7)
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        assert c.text == " 4," and c.finish_reason == "stop"
        assert len(c.logprobs.token_logprobs) == len(c.logprobs.tokens)
    assert r.usage.prompt_tokens == len(server.post("/encode", {"text": "1, 2, 3,"}).json()["input_ids"])


def test_completion_stream_ends_with_the_full_text(client):
    full = client.completions.create(model="any", prompt="The sky is", max_tokens=4, temperature=0)
    chunks = list(client.completions.create(model="any", prompt="The sky is", max_tokens=4,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completion_echo_prepends_the_prompt_and_its_logprobs(client, server):
    """What evaluation harnesses (lm-eval's loglikelihood) rely on: echo + logprobs + max_tokens 0."""
    prompt = "The capital of France is Paris"
    n_prompt = len(server.post("/encode", {"text": prompt}).json()["input_ids"])
    scored = client.completions.create(model="any", prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    c = scored.choices[0]
    assert c.text == prompt and scored.usage.completion_tokens == 0
    lp = c.logprobs
    assert "".join(lp.tokens) == prompt and len(lp.tokens) == n_prompt
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.top_logprobs[0] is None and all(len(t) == 1 for t in lp.top_logprobs[1:])
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n_prompt)]

    plain = client.completions.create(model="any", prompt=prompt, max_tokens=3, temperature=0, logprobs=0)
    echoed = client.completions.create(model="any", prompt=prompt, max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + plain.choices[0].text
    chunks = list(client.completions.create(model="any", prompt=prompt, max_tokens=3, temperature=0,
                                            echo=True, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == echoed.choices[0].text


def test_completion_max_tokens_zero_needs_echo(server):
    resp = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 0})
    assert resp.status_code == 400 and "max_tokens" in resp.json()["error"]["message"]


CLIENT_NAMED_ERRORS = [
    ({"seed": "1"}, "seed must be an integer"),
    ({"min_tokens": -1}, "min_tokens must be >= 0"),
    ({"min_tokens": 5, "max_tokens": 2}, "min_tokens (5) must be <= max_tokens (2)"),
    ({"min_tokens": 5, "max_completion_tokens": 2}, "min_tokens (5) must be <= max_completion_tokens (2)"),
]


@pytest.mark.parametrize(("fields", "start"), CLIENT_NAMED_ERRORS, ids=[s for _, s in CLIENT_NAMED_ERRORS])
def test_chat_sampling_error_names_the_openai_field(server, fields, start):
    """SamplingParams checks `seed` as its `sampling_seed`, but the client sent `seed`."""
    resp = server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 1, **fields})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith(start)


def test_completion_sampling_error_names_the_openai_field(server):
    resp = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 1, "seed": 1.5})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("seed must be an integer")


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct"]
    assert client.models.retrieve("SmolLM2-135M-Instruct").id == "SmolLM2-135M-Instruct"


def test_unknown_model_is_404_model_not_found(server):
    resp = server.get("/v1/models/no-such-model")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


def test_response_format_json_schema_constrains_the_output(client):
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    r = client.chat.completions.create(
        model="any", messages=MESSAGES, max_tokens=24, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content)["color"], str)


def test_unsupported_response_format_is_refused_not_ignored(client):
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2,
                                       response_format={"type": "xml"})
