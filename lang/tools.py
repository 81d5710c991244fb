"""Tools in the DSL: `gen(..., tools=[...])` writes a tool call that validates.

    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    s += rl.system(rl.describe_tools([add]))
    s += rl.user("What is 2 + 3?")
    s += rl.assistant(rl.gen("call", tools=[add], tool_choice="required"))
    call = s["call"]                   # a ToolCall: the text, plus .name and .arguments
    if call.is_call:
        result = add(**call.arguments)

A tool is a Python function (its schema from the signature and type hints, its description
from the docstring), a pydantic model class (its fields are the arguments), or an OpenAI tool
dict. Calls are written in the hermes format (`<tool_call>{"name": ..., "arguments":
{...}}</tool_call>`), constrained by the server: "required" or a function's name makes the
output one call; "auto" lets the model answer in text or call, and a call it starts always
completes (a structural_tag). The schema logic is the runtime's (radixlm.runtime.tools),
imported only when a program uses tools.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object", list: "array"}


class ToolCall(str):
    """The text a tools gen wrote; `.name` / `.arguments` when it is a call (`.is_call`)."""

    name: str | None
    arguments: dict

    def __new__(cls, text: str) -> ToolCall:
        from radixlm.runtime.tools.formats import FORMATS

        self = super().__new__(cls, text)
        _, calls = FORMATS["hermes"].parse(text)
        self.name = calls[0].name if calls else None
        self.arguments = json.loads(calls[0].arguments) if calls else {}
        return self

    @property
    def is_call(self) -> bool:
        return self.name is not None


def openai_tool(tool: Any) -> dict:
    """The OpenAI tool dict of a function, a pydantic model class or a dict."""
    if isinstance(tool, dict):
        return tool if "function" in tool else {"type": "function", "function": tool}
    if isinstance(tool, type) and hasattr(tool, "model_json_schema"):
        schema = tool.model_json_schema()
        return {"type": "function", "function": {"name": tool.__name__, "description": (tool.__doc__ or "").strip(),
                                                 "parameters": schema}}
    if callable(tool):
        return {"type": "function", "function": {"name": tool.__name__,
                                                 "description": inspect.getdoc(tool) or "",
                                                 "parameters": _signature_schema(tool)}}
    raise TypeError(f"a tool must be a function, a pydantic model class or an OpenAI tool dict (got {tool!r})")


def describe_tools(tools: list[Any]) -> str:
    """The system message text that tells the model about `tools` and how to call them."""
    from radixlm.runtime.tools.formats import FORMATS
    from radixlm.runtime.tools.spec import parse_tools

    return FORMATS["hermes"].system_prompt(parse_tools([openai_tool(t) for t in tools]))


def tool_sampling(tools: list[Any], tool_choice: Any) -> dict:
    """Sampling params (a structural_tag, a stop at the call's end) for a tools gen."""
    from radixlm.runtime.tools.formats import FORMATS
    from radixlm.runtime.tools.spec import parse_tool_choice, parse_tools

    specs = parse_tools([openai_tool(t) for t in tools])
    choice = parse_tool_choice(_choice(tool_choice), None, specs)
    if choice.mode == "none":
        return {}
    fmt = FORMATS["hermes"]
    chosen = [t for t in specs if choice.mode != "named" or t.name == choice.name]
    tag = fmt.structural_tag(chosen)
    tag["at_least_one"] = choice.mode != "auto"
    return {"structural_tag": json.dumps(tag), "stop": [fmt.end], "no_stop_trim": True}


def _choice(tool_choice: Any) -> Any:
    if isinstance(tool_choice, str) and tool_choice not in ("none", "auto", "required"):
        return {"type": "function", "function": {"name": tool_choice}}  # a function's name
    if callable(tool_choice) and not isinstance(tool_choice, (str, dict)):
        return {"type": "function", "function": {"name": tool_choice.__name__}}
    return tool_choice


def _signature_schema(fn: Callable) -> dict:
    hints = typing.get_type_hints(fn)
    properties, required = {}, []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        properties[name] = _type_schema(hints.get(name, str))
        if param.default is inspect.Parameter.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _type_schema(tp: Any) -> dict:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _JSON_TYPES:
        return {"type": _JSON_TYPES[tp]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set):
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    if isinstance(tp, type) and hasattr(tp, "model_json_schema"):
        return tp.model_json_schema()
    return {}
