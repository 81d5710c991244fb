"""Triggered constraints (SGLang's structural_tag) on the real model: free text until a
trigger, then the structure is completed and valid; none is started that cannot end."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from radixlm.runtime import Engine

ARGS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CALL = {"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": ARGS},
        "required": ["name", "arguments"]}
TAG = {"type": "structural_tag", "triggers": ["<tool_call>"],
       "structures": [{"begin": "<tool_call>", "schema": CALL, "end": "</tool_call>"}]}
SYSTEM = ('You can call tools. To call one, write <tool_call>{"name": ..., "arguments": {...}}</tool_call>. '
          "Tool: get_weather(city).")
CALLS = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@pytest.fixture(scope="module")
def engine():
    with Engine(max_total_tokens=8192) as e:
        yield e


def few_shot(tokenizer, question: str) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the weather in Rome?"},
                {"role": "assistant", "content": '<tool_call>{"name":"get_weather","arguments":{"city":"Rome"}}'
                                                 "</tool_call>"},
                {"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def assert_calls_valid(text: str) -> int:
    """Every started call is closed and validates; returns how many there are."""
    assert text.count("<tool_call>") == len(CALLS.findall(text)), text
    for body in CALLS.findall(text):
        jsonschema.validate(json.loads(body), CALL)
    return len(CALLS.findall(text))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_triggered_call_completes_and_validates(engine, temperature):
    out = engine.generate(few_shot(engine.tokenizer, "What is the weather in Paris?"),
                          {"max_new_tokens": 64, "temperature": temperature, "sampling_seed": 1,
                           "structural_tag": json.dumps(TAG)})
    assert out["meta_info"]["finish_reason"]["type"] == "stop"
    assert_calls_valid(out["text"])


@pytest.mark.parametrize("max_new_tokens", [6, 12, 20, 28])
def test_no_call_is_started_that_the_budget_cannot_finish(engine, max_new_tokens):
    out = engine.generate(few_shot(engine.tokenizer, "What is the weather in Paris?"),
                          {"max_new_tokens": max_new_tokens, "temperature": 0, "structural_tag": json.dumps(TAG)})
    assert_calls_valid(out["text"])


def test_at_least_one_starts_with_a_structure(engine):
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Say hi"}], tokenize=False,
                                                  add_generation_prompt=True)
    out = engine.generate(prompt, {"max_new_tokens": 40, "temperature": 0,
                                   "structural_tag": json.dumps({**TAG, "at_least_one": True})})
    assert out["text"].startswith("<tool_call>") and assert_calls_valid(out["text"]) >= 1


@pytest.mark.parametrize(("tag", "needle"), [
    ({**TAG, "triggers": []}, "triggers"),
    ({**TAG, "structures": [{"begin": "<call>", "schema": CALL, "end": "</call>"}]}, "starts with none"),
    ("{not json", "not valid JSON"),
])
def test_a_malformed_structural_tag_is_refused(engine, tag, needle):
    with pytest.raises(ValueError, match=needle):
        engine.generate("x", {"structural_tag": tag if isinstance(tag, str) else json.dumps(tag)})
