"""Tool calling's pure parts: tool specs and choices, call formats (constraint regexes that
accept exactly well-formed calls, parsers), streaming deltas, prompts."""

from __future__ import annotations

import json
import re

import pytest

from radixlm.runtime.tools.formats import FORMATS, format_for, template_takes_tools
from radixlm.runtime.tools.prompt import tool_conversation
from radixlm.runtime.tools.spec import parse_tool_choice, parse_tools
from radixlm.runtime.tools.stream import ToolCallStream

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "unit": {"enum": ["c", "f"]}},
                          "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def test_tools_and_the_legacy_functions_parse_alike():
    assert parse_tools([WEATHER]) == parse_tools(None, [WEATHER["function"]])


@pytest.mark.parametrize(("tools", "needle"), [
    ([{"type": "retrieval"}], "tools[0] must be"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], "parameters"),
    ([WEATHER, WEATHER], "unique"),
])
def test_malformed_tools_are_refused_naming_the_field(tools, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        parse_tools(tools)


def test_tool_choice_forms():
    tools = parse_tools([WEATHER, TIME])
    assert parse_tool_choice(None, None, tools).mode == "auto"
    assert parse_tool_choice(None, None, []).mode == "none"
    assert parse_tool_choice("required", None, tools).mode == "required"
    named = parse_tool_choice({"type": "function", "function": {"name": "get_time"}}, None, tools)
    assert (named.mode, named.name) == ("named", "get_time")
    assert parse_tool_choice(None, {"name": "get_time"}, tools).name == "get_time"  # legacy function_call
    with pytest.raises(ValueError, match="not among the tools"):
        parse_tool_choice({"type": "function", "function": {"name": "nope"}}, None, tools)


@pytest.mark.parametrize("name", ["hermes", "llama3", "mistral"])
@pytest.mark.parametrize("parallel", [False, True])
def test_calls_regex_accepts_rendered_calls_and_nothing_else(name, parallel):
    fmt, tools = FORMATS[name], parse_tools([WEATHER, TIME])
    regex = fmt.calls_regex(tools, parallel)
    # parallel hermes writes the separator after every call (formats.py says why)
    tail = fmt.separator if parallel and fmt.end else ""
    one = fmt.render_call("get_weather", {"city": "Paris", "unit": "c"})
    assert re.fullmatch(regex, one + tail)
    assert not re.fullmatch(regex, fmt.render_call("get_weather", {"unit": "c"}) + tail)  # city is required
    assert not re.fullmatch(regex, fmt.render_call("unknown", {}) + tail)
    assert not re.fullmatch(regex, "Sure! " + one + tail)
    if name != "mistral":
        two = one + fmt.separator + fmt.render_call("get_time", {}) + tail
        assert bool(re.fullmatch(regex, two)) == parallel
        assert fmt.parse(two)[1][0].name == "get_weather"


@pytest.mark.parametrize("name", ["hermes", "llama3", "mistral"])
def test_rendered_calls_parse_back(name):
    fmt = FORMATS[name]
    text = fmt.render_call("get_weather", {"city": "Paris"})
    content, calls = fmt.parse(text)
    assert content is None and [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_hermes_keeps_text_before_the_call_as_content():
    content, calls = FORMATS["hermes"].parse('Checking.<tool_call>{"name":"get_time","arguments":{}}</tool_call>')
    assert content == "Checking." and calls[0].name == "get_time"


def test_streamed_deltas_reassemble_to_the_parsed_calls():
    fmt = FORMATS["hermes"]
    text = ('One moment.<tool_call>{"name":"get_weather","arguments":{"city":"Par}is"}}</tool_call>\n'
            '<tool_call>{"name":"get_time","arguments":{}}</tool_call>')
    stream, deltas = ToolCallStream(fmt), []
    for i in range(1, len(text) + 1):
        deltas += stream.feed(text[:i])
    deltas += stream.finish(text)
    calls: dict[int, dict] = {}
    for d in deltas:
        for tc in d.get("tool_calls", []):
            call = calls.setdefault(tc["index"], {"arguments": ""})
            call.update({k: tc[k] for k in ("id",) if k in tc})
            call["name"] = tc["function"].get("name", call.get("name"))
            call["arguments"] += tc["function"].get("arguments", "")
    assert "".join(d.get("content", "") for d in deltas) == "One moment."
    parsed = fmt.parse(text)[1]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == \
        [(c.name, json.loads(c.arguments)) for c in parsed]
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_a_template_without_tools_gets_them_in_words():
    tools = parse_tools([WEATHER])
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]
    out, kwargs = tool_conversation(messages, tools, FORMATS["hermes"], template_takes_tools=False)
    assert kwargs == {} and out[0]["role"] == "system" and "get_weather" in out[0]["content"]
    assert out[2]["content"] == '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
    assert out[3] == {"role": "user", "content": "<tool_response>\n18 C\n</tool_response>"}


def test_a_template_with_tools_gets_them_as_sent():
    tools = parse_tools([WEATHER])
    out, kwargs = tool_conversation([{"role": "user", "content": "hi"}], tools, FORMATS["hermes"], True)
    assert out == [{"role": "user", "content": "hi"}] and kwargs["tools"][0]["function"]["name"] == "get_weather"


def test_the_format_is_told_from_the_template():
    assert format_for(None, "{{ '<|python_tag|>' }}").name == "llama3"
    assert format_for(None, "[TOOL_CALLS]").name == "mistral"
    assert format_for(None, None).name == "hermes"
    assert format_for("qwen25", None).name == "hermes"
    assert template_takes_tools("{% if tools %}...{% endif %}") and not template_takes_tools("{{ messages }}")


def test_an_unknown_tool_call_parser_is_refused_at_start_up():
    from radixlm.runtime.server_args import ServerArgs

    with pytest.raises(ValueError, match="tool_call_parser must be one of hermes, qwen25, llama3, mistral"):
        ServerArgs(tool_call_parser="gorilla")
    assert ServerArgs(tool_call_parser="mistral").tool_call_parser == "mistral"


@pytest.mark.parametrize("template, parser, expected", [
    (None, None, "hermes"),  # SmolLM2: no tool support in its template
    ("{{ '[TOOL_CALLS]' }}", None, "mistral"),
    ("{% if tools %}<|python_tag|>{% endif %}", None, "llama3"),
    ("{{ '[TOOL_CALLS]' }}", "hermes", "hermes"),  # the flag wins
])
def test_the_format_is_the_flag_or_told_from_the_template(template, parser, expected):
    from radixlm.runtime.tools.formats import ToolSetup

    setup = ToolSetup.of(parser, template)
    assert setup.fmt.name == expected
    assert setup.metadata()["tool_call_prompt"] == ("chat template" if template and "tools" in template
                                                    else "system message")
