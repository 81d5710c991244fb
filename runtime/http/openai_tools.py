"""Tool calling on /v1/chat/completions: what `tools` change in a request (docs/tool-calling.md).

    plan = tool_plan(body, setup)                   # None without tools; ValueError -> 400
    messages, extra = prompt_messages(messages, plan, setup)   # the chat template's input
    constraint = plan.constraint(response_schema)   # sampling fields: regex or structural_tag
    message, finish = plan.message(text, finish)    # the response's message
    stream = plan.stream()                          # the deltas of one streamed choice

The tool-call text format (`runtime/tools/formats.py`) is the server's: --tool-call-parser or
the one the chat template writes. "required" and a named function constrain the whole output
to calls; "auto" is a structural_tag, so a call the model starts always completes and
validates. With `parallel_tool_calls: false` at most one call is made (auto stops at the
call's end). The legacy `functions` / `function_call` answer in their own shape
(`message.function_call`, finish_reason "function_call").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from radixlm.runtime.constrained.constraints import (
    COMPACT_WHITESPACE,
    canonical_spec,
    constraint_regex,
)
from radixlm.runtime.tools.formats import ParsedCall, ToolCallFormat, ToolSetup, arguments_schema
from radixlm.runtime.tools.prompt import tool_conversation
from radixlm.runtime.tools.spec import ToolChoice, ToolSpec, parse_tool_choice, parse_tools
from radixlm.runtime.tools.stream import ToolCallStream
from radixlm.runtime.validation import Bool

# Constraint fields a client may send itself: they and tools cannot both shape one output.
_OWN_CONSTRAINTS = ("regex", "json_schema", "ebnf")
_PARALLEL = Bool(description="several calls in one answer (default true)")


@dataclass(frozen=True)
class ToolPlan:
    fmt: ToolCallFormat
    tools: list[ToolSpec]
    choice: ToolChoice
    parallel: bool
    legacy: bool  # sent as functions / function_call: answered as message.function_call

    @property
    def constrains(self) -> bool:
        return self.choice.mode != "none"

    def constraint(self, response_schema: str | None) -> dict[str, Any]:
        """Sampling fields that make the output calls (required / named) or text that may
        start a call that then completes (auto). With a response_format under auto, the
        text answer is held to that schema: the output is the schema's JSON or calls."""
        if self.choice.mode == "none":
            return {}
        chosen = [t for t in self.tools if self.choice.mode != "named" or t.name == self.choice.name]
        calls = self.fmt.calls_regex(chosen, self.parallel)
        if self.choice.mode != "auto":
            return {"regex": calls}
        if response_schema is not None:
            answer = constraint_regex("json_schema", canonical_spec("json_schema", response_schema), COMPACT_WHITESPACE)
            return {"regex": f"(?:{answer})|(?:{calls})"}
        tag = self.fmt.structural_tag(chosen)
        if self.parallel or not self.fmt.end:
            return {"structural_tag": json.dumps(tag)}
        return {"structural_tag": json.dumps(tag), "stop": [self.fmt.end]}

    def message(self, text: str, finish: str | None) -> tuple[dict[str, Any], str | None]:
        """The assistant message of one choice and its finish_reason. Only whole calls are
        returned as calls: one cut by max_tokens (possible only on a grammar backend without
        budget completion) is left out, and the finish_reason is then "length"."""
        content, calls = self.fmt.parse(text) if self.constrains else (text, [])
        if not calls:
            return {"role": "assistant", "content": text, "tool_calls": None}, finish
        calls = [c.with_id() for c in (calls if self.parallel else calls[:1])]
        if self.legacy:
            return ({"role": "assistant", "content": content, "tool_calls": None,
                     "function_call": {"name": calls[0].name, "arguments": calls[0].arguments}},
                    self.finish_reason(text, finish, "function_call"))
        return ({"role": "assistant", "content": content, "tool_calls": [_call(c) for c in calls]},
                self.finish_reason(text, finish, "tool_calls"))

    def finish_reason(self, text: str, finish: str | None, calls: str) -> str | None:
        """A call cut by max_tokens says so ("length"); otherwise the output made calls."""
        return finish if finish == "length" and self.fmt.cut(text) else calls

    def stream(self) -> ToolDeltas | None:
        return ToolDeltas(self) if self.constrains else None


class ToolDeltas:
    """One streamed choice: content deltas, then the calls' deltas (OpenAI's shape)."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.parser = ToolCallStream(plan.fmt)
        self.text = ""

    def feed(self, text: str, final: bool) -> list[dict[str, Any]]:
        self.text = text
        deltas = self.parser.finish(text) if final else self.parser.feed(text)
        if not self.plan.parallel:
            deltas = [d for d in deltas if "tool_calls" not in d or d["tool_calls"][0]["index"] == 0]
        if self.plan.legacy:
            deltas = [_legacy_delta(d) for d in deltas]
        return deltas

    def finish_reason(self, reason: str | None) -> str | None:
        if reason is None or not self.parser.calls:
            return reason
        return self.plan.finish_reason(self.text, reason, "function_call" if self.plan.legacy else "tool_calls")


def tool_plan(body: dict, setup: ToolSetup) -> ToolPlan | None:
    """The request's tools and how it may use them; None when it sends none."""
    legacy = body.get("functions") is not None or body.get("function_call") is not None
    tools = parse_tools(body.get("tools"), body.get("functions"))
    choice = parse_tool_choice(body.get("tool_choice"), body.get("function_call"), tools)
    if not tools:
        if body.get("parallel_tool_calls") is not None:
            _PARALLEL.check("parallel_tool_calls", body["parallel_tool_calls"])
        return None
    parallel = _PARALLEL.check("parallel_tool_calls", body.get("parallel_tool_calls"), True) and not legacy
    if choice.mode != "none":
        if own := [k for k in _OWN_CONSTRAINTS if body.get(k) is not None]:
            raise ValueError(f"{', '.join(own)} cannot be combined with tools (tool_choice {choice.mode!r} "
                             "constrains the output itself); send tool_choice \"none\" or drop them")
        if choice.mode == "auto":
            setup.fmt.structural_tag(tools)  # the format's own 400 where auto cannot work (llama3)
        _check_schemas(tools, "functions" if legacy else "tools")
    return ToolPlan(setup.fmt, tools, choice, parallel, legacy)


def _check_schemas(tools: list[ToolSpec], field: str) -> None:
    """A 400 that names the tool whose parameters no constraint can be built from (the
    grammar compile would only name the schema)."""
    for i, t in enumerate(tools):
        try:
            constraint_regex("json_schema", canonical_spec("json_schema", arguments_schema(t)))
        except ValueError as e:
            where = f"{field}[{i}]" if field == "functions" else f"{field}[{i}].function"
            raise ValueError(f"{where}.parameters of {t.name!r}: {e}") from None


def prompt_messages(messages: list[dict], plan: ToolPlan | None,
                    setup: ToolSetup) -> tuple[list[dict], dict[str, Any]]:
    """(messages, extra chat template arguments): the tools described and past calls and
    results written as the model reads them. Messages without tools pass unchanged."""
    has_history = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if plan is None and not has_history:
        return messages, {}
    return tool_conversation(messages, plan.tools if plan else [], setup.fmt, setup.template_takes_tools)


def _call(c: ParsedCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}


def _legacy_delta(delta: dict[str, Any]) -> dict[str, Any]:
    if "tool_calls" not in delta:
        return delta
    fn = dict(delta["tool_calls"][0]["function"])
    return {"function_call": fn}
