"""OpenAI tool calling through the official `openai` client against `radixlm serve`
(docs/tool-calling.md): every call names a listed function and its arguments validate
against that function's schema, streamed or not, at temperature 0 and 1."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import jsonschema
import openai
import pydantic
import pytest

from radixlm.runtime.tools.formats import closed_objects

from .conftest import API_KEY
from .tool_cases import PROMPTS, TOOLS

BY_NAME = {t["function"]["name"]: t["function"] for t in TOOLS}
MAX_TOKENS = 160
# "required" over these five compiles on the regex backend (budget completion: every call
# complete); over all ten, the automaton is too large for it and llguidance takes it.
FIVE = [t for t in TOOLS if t["function"]["name"] in
        ("get_weather", "search_flights", "add_todo", "lookup_user", "convert_currency")]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


def ask(tool_name: str) -> list[dict]:
    return [{"role": "user", "content": PROMPTS[tool_name]}]


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


def call(client: openai.OpenAI, stream: bool, **kw: Any) -> tuple[str | None, list[dict], str]:
    """(content, calls as {id, name, arguments}, finish_reason), from a response or a stream."""
    kw = {"model": "any", "tools": TOOLS, "max_tokens": MAX_TOKENS, **kw}
    if not stream:
        choice = client.chat.completions.create(**kw).choices[0]
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                 for c in choice.message.tool_calls or []]
        return choice.message.content, calls, choice.finish_reason
    return reassemble(client.chat.completions.create(stream=True, **kw))


def reassemble(chunks) -> tuple[str | None, list[dict], str]:
    """OpenAI's streaming contract: the first delta of call i has its index, id, type and
    name; later ones only pieces of its arguments."""
    content, calls, finish = [], {}, None
    for chunk in chunks:
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        for tc in delta.tool_calls or []:
            if tc.index not in calls:
                assert tc.id and tc.type == "function" and tc.function.name, tc
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            else:
                assert tc.id is None and tc.function.name is None, tc
            calls[tc.index]["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert sorted(calls) == list(range(len(calls)))
    return "".join(content) or None, [calls[i] for i in sorted(calls)], finish


def assert_valid(calls: list[dict], allowed: set[str]) -> None:
    for c in calls:
        assert c["name"] in allowed, c
        assert c["id"].startswith("call_"), c
        fn = BY_NAME[c["name"]]
        schema = closed_objects(fn["parameters"]) if fn.get("strict") else fn["parameters"]
        jsonschema.validate(json.loads(c["arguments"]), schema)


def run_all(client: openai.OpenAI, cases: list[dict]) -> list[tuple]:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda kw: call(client, **kw), cases))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_and_named_calls_validate_streamed_or_not(client, temperature):
    cases = [{"stream": s, "parallel_tool_calls": p, "tool_choice": "required", "tools": FIVE,
              "messages": ask("get_weather")} for s in (False, True) for p in (False, True)]
    cases += [{"stream": i % 2 == 1, "parallel_tool_calls": i // 2 % 2 == 1, "tool_choice": named(name),
               "messages": ask(name)} for i, name in enumerate(BY_NAME)]
    for kw, (content, calls, finish) in zip(cases, run_all(client, [{**kw, "temperature": temperature, "seed": 7}
                                                                   for kw in cases]), strict=True):
        choice = kw["tool_choice"]
        allowed = {t["function"]["name"] for t in FIVE} if choice == "required" else {choice["function"]["name"]}
        assert finish == "tool_calls" and content is None, (kw, content, finish)
        assert calls and (kw["parallel_tool_calls"] or len(calls) == 1), (kw, calls)
        assert_valid(calls, allowed)


def test_required_over_many_tools_returns_only_whole_calls(client):
    # On llguidance (no budget completion) max_tokens may cut a call: it is left out of
    # tool_calls and the finish_reason says "length"; every call returned validates.
    cases = [{"stream": s, "parallel_tool_calls": True, "tool_choice": "required", "messages": ask(name),
              "temperature": 1.0, "seed": i} for i, name in enumerate(BY_NAME) for s in (False, True)]
    for kw, (content, calls, finish) in zip(cases, run_all(client, cases), strict=True):
        assert finish in ("tool_calls", "length"), (kw, finish)
        if not kw["stream"]:
            assert calls or finish == "length", (kw, content)
            assert_valid(calls, set(BY_NAME))
        elif finish == "tool_calls":  # a stream has sent the cut call's start before it ends
            assert_valid(calls, set(BY_NAME))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_auto_answers_in_text_or_in_calls_that_validate(client, temperature):
    names = list(BY_NAME)
    cases = [{"stream": s, "parallel_tool_calls": p, "messages": ask(names[(2 * s + p) % len(names)])}
             for s in (False, True) for p in (False, True)]
    for kw, (content, calls, finish) in zip(cases, run_all(client, [{**kw, "temperature": temperature, "seed": 3}
                                                                   for kw in cases]), strict=True):
        if calls:
            assert finish == "tool_calls", (kw, finish)
            assert kw["parallel_tool_calls"] or len(calls) == 1
            assert_valid(calls, set(BY_NAME))
        else:
            assert finish in ("stop", "length") and content, (kw, content, finish)


def test_auto_calls_when_the_conversation_leads_into_one(client):
    # After a tool result for one of two cities, the model (SmolLM2 on its hermes prompt)
    # goes on with the next call at T0: a started call in auto mode, completed and valid.
    messages = [
        {"role": "user", "content": "What is the weather in Paris and in Rome? Call get_weather for each."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18}'},
    ]
    for stream in (False, True):
        content, calls, finish = call(client, stream, messages=messages, temperature=0, tools=TOOLS[:1])
        assert finish == ("tool_calls" if calls else "stop")
        assert_valid(calls, {"get_weather"})


def test_streamed_deltas_reassemble_to_the_same_calls(client):
    for kw in ({"tool_choice": "required", "parallel_tool_calls": False, "messages": ask("get_weather")},
               {"tool_choice": "required", "parallel_tool_calls": True, "messages": ask("send_email")},
               {"tool_choice": named("create_event"), "messages": ask("create_event")}):
        _, whole, _ = call(client, False, temperature=0, **kw)
        _, streamed, finish = call(client, True, temperature=0, **kw)
        assert finish == "tool_calls"
        assert [(c["name"], c["arguments"]) for c in streamed] == [(c["name"], c["arguments"]) for c in whole]


def test_each_of_n_choices_carries_its_own_calls(client):
    r = client.chat.completions.create(model="any", messages=ask("add_todo"), tools=FIVE, tool_choice="required",
                                       n=3, temperature=1, max_tokens=MAX_TOKENS)
    assert len(r.choices) == 3
    for choice in r.choices:
        assert choice.finish_reason == "tool_calls"
        assert_valid([{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                      for c in choice.message.tool_calls], {t["function"]["name"] for t in FIVE})


def test_tool_choice_none_answers_in_text(client):
    content, calls, finish = call(client, False, messages=ask("get_weather"), tool_choice="none", temperature=0,
                                  max_tokens=16)
    assert content and not calls and finish in ("stop", "length")


def test_a_three_step_conversation_carries_calls_and_results(client):
    tools = [TOOLS[0], TOOLS[6]]
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = client.chat.completions.create(model="any", messages=messages, tools=tools, tool_choice="required",
                                           parallel_tool_calls=False, temperature=0, max_tokens=MAX_TOKENS)
    msg = first.choices[0].message
    assert msg.tool_calls[0].function.name in ("get_weather", "convert_currency")
    messages += [msg.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": '{"celsius": -3, "sky": "snow"}'}]
    second = client.chat.completions.create(model="any", messages=messages, tools=tools, temperature=0,
                                            max_tokens=24)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 10  # the call and its result are in the prompt
    messages += [second.choices[0].message.model_dump(exclude_none=True),
                 {"role": "user", "content": "Now convert 30 EUR to USD."}]
    third = client.chat.completions.create(model="any", messages=messages, tools=tools,
                                           tool_choice=named("convert_currency"), temperature=0,
                                           max_tokens=MAX_TOKENS)
    assert third.usage.prompt_tokens > second.usage.prompt_tokens
    c = third.choices[0].message.tool_calls[0]
    assert_valid([{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}], {"convert_currency"})


def test_legacy_functions_answer_with_function_call(client):
    r = client.chat.completions.create(model="any", messages=ask("lookup_user"),
                                       functions=[BY_NAME["lookup_user"], BY_NAME["get_weather"]],
                                       function_call={"name": "lookup_user"}, temperature=0, max_tokens=MAX_TOKENS)
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call.name == "lookup_user"
    jsonschema.validate(json.loads(choice.message.function_call.arguments), BY_NAME["lookup_user"]["parameters"])


class Weather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=20)
    unit: Literal["celsius", "fahrenheit"]


class Answer(pydantic.BaseModel):
    color: Literal["red", "green", "blue"]
    confidence: int


def test_the_openai_parse_helpers_work_unchanged(client):
    r = client.chat.completions.parse(model="any", messages=[{"role": "user", "content": "Pick a color."}],
                                      response_format=Answer, temperature=0, max_tokens=MAX_TOKENS)
    assert isinstance(r.choices[0].message.parsed, Answer)
    r = client.chat.completions.parse(model="any", messages=ask("get_weather"),
                                      tools=[openai.pydantic_function_tool(Weather)], tool_choice="required",
                                      temperature=0, max_tokens=MAX_TOKENS)
    assert isinstance(r.choices[0].message.tool_calls[0].function.parsed_arguments, Weather)


def test_tools_metadata_says_how_this_server_writes_calls(client, server):
    card = client.models.list().data[0].model_dump()
    info = server.get("/get_model_info").json()
    for meta in (card, info):
        assert meta["tool_call_parser"] == "hermes" and meta["tool_call_prompt"] == "system message"


BAD = [
    ({"tool_choice": named("book_hotel")}, "tool_choice names the function 'book_hotel', which is not among"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "frobnicate"}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters of 'f': unsupported json_schema: Unsupported type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "tools[0].function.parameters must be a JSON schema of an object"),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "tool names must be unique"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name must be"),
    ({"tools": [], "tool_choice": "required"}, 'tool_choice "required" needs tools'),
    ({"tool_choice": "sometimes"}, 'tool_choice must be "none", "auto", "required" or'),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls must be a boolean"),
    ({"extra_body": {"regex": "[a-z]+"}}, "regex cannot be combined with tools"),
    ({"functions": [BY_NAME["get_weather"]]}, "send tools or the legacy functions, not both"),
    ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]},
     "messages[0].tool_calls: only assistant messages carry tool calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": 3}}]}, {"role": "user", "content": "hi"}]},
     "messages[0].tool_calls[0].function.arguments must be a JSON string"),
]


@pytest.mark.parametrize("fields, message", BAD, ids=[m[:32] for _, m in BAD])
def test_bad_tool_requests_are_400s_naming_the_problem(client, fields, message):
    kw = {"model": "any", "messages": ask("get_weather"), "tools": TOOLS, "max_tokens": 4, **fields}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**kw)
    assert message in err.value.body["message"], err.value.body


def test_completions_refuse_tools(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="any", prompt="hi", max_tokens=4, extra_body={"tools": TOOLS})
    assert "tools is not supported by /v1/completions" in err.value.body["message"]
