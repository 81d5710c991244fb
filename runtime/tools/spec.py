"""The tools of a request and how it may use them, validated as OpenAI defines them.

    tools = parse_tools(body.get("tools"), body.get("functions"))
    choice = parse_tool_choice(body.get("tool_choice"), body.get("function_call"), tools)

`functions` / `function_call` are OpenAI's legacy names for the same thing. Errors are
ValueErrors naming the field: `tools[1].function.name must be ...`, `tool_choice names the
function 'f', which is not among the tools (get_weather)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict  # a JSON schema of the arguments object
    strict: bool = False


@dataclass(frozen=True)
class ToolChoice:
    mode: str  # "none" | "auto" | "required" | "named"
    name: str | None = None  # mode "named"


def parse_tools(tools: Any, functions: Any = None) -> list[ToolSpec]:
    if tools is not None and functions is not None:
        raise ValueError("send tools or the legacy functions, not both")
    if functions is not None:
        return [_function(f, f"functions[{i}]") for i, f in enumerate(_list(functions, "functions"))]
    out = []
    for i, t in enumerate(_list(tools, "tools")):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            raise ValueError(f'{where} must be {{"type": "function", "function": {{...}}}}')
        out.append(_function(t.get("function"), f"{where}.function"))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ValueError(f"tool names must be unique (got {names})")
    return out


def _list(value: Any, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise ValueError(f"{field} must be a list of at most {MAX_TOOLS} functions")
    return value


def _function(f: Any, where: str) -> ToolSpec:
    if not isinstance(f, dict):
        raise ValueError(f"{where} must be an object with a name and parameters")
    name, params = f.get("name"), f.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}.name must be 1-64 letters, digits, _ or - (got {name!r})")
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise ValueError(f"{where}.parameters must be a JSON schema of an object (got {params!r})")
    description = f.get("description") or ""
    if not isinstance(description, str):
        raise ValueError(f"{where}.description must be a string")
    strict = f.get("strict") or False
    if not isinstance(strict, bool):
        raise ValueError(f"{where}.strict must be a boolean (got {strict!r})")
    return ToolSpec(name, description, params, strict)


def parse_tool_choice(choice: Any, function_call: Any, tools: list[ToolSpec]) -> ToolChoice:
    """The default is "auto" with tools, "none" without (as OpenAI)."""
    if choice is not None and function_call is not None:
        raise ValueError("send tool_choice or the legacy function_call, not both")
    if function_call is not None:  # legacy: "none" | "auto" | {"name": ...}
        choice = function_call if isinstance(function_call, str) else {"function": function_call}
    if choice is None:
        return ToolChoice("auto" if tools else "none")
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise ValueError(f'tool_choice "{choice}" needs tools')
        return ToolChoice(choice)
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise ValueError('tool_choice must be "none", "auto", "required" or '
                         '{"type": "function", "function": {"name": ...}}')
    if name not in {t.name for t in tools}:
        raise ValueError(f"tool_choice names the function {name!r}, which is not among the tools "
                         f"({', '.join(t.name for t in tools) or 'none given'})")
    return ToolChoice("named", name)
