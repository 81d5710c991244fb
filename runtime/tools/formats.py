"""How a model writes tool calls, and how radixlm makes it write calls that validate.

Each format says what a call looks like in text, gives the constraint for each tool_choice
and parses calls back:

  hermes (qwen25): <tool_call>{"name": "f", "arguments": {...}}</tool_call>, one per call;
                   the default for models whose chat template knows no tools (SmolLM2)
  llama3:          {"name": "f", "parameters": {...}}, calls separated by "; "
  mistral:         [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]

Constraints (the JSON inside a call is always one of the tools' and validates against its
parameters, `strict` closing every object of them):
  required / named: the whole output is calls (one, or several if parallel_tool_calls);
  auto: a structural_tag: free text until the call's opening, then a complete call.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from radixlm.runtime.constrained.constraints import (
    COMPACT_WHITESPACE,
    canonical_spec,
    constraint_regex,
    escape_literal,
)
from radixlm.runtime.tools.spec import ToolSpec


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text of the arguments object
    id: str = ""

    def with_id(self) -> ParsedCall:
        return ParsedCall(self.name, self.arguments, self.id or "call_" + uuid.uuid4().hex[:24])


class ToolCallFormat:
    name = "hermes"
    begin, end, separator = "<tool_call>", "</tool_call>", "\n"
    arguments_key = "arguments"

    # ---- constraints --------------------------------------------------------------------
    def call_schema(self, tools: list[ToolSpec]) -> dict:
        """One call's JSON: a tool's name and its arguments, name first."""
        options = [{"type": "object", "properties": {"name": {"const": t.name}, self.arguments_key: arguments_schema(t)},
                    "required": ["name", self.arguments_key], "additionalProperties": False}
                   for t in tools]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def calls_regex(self, tools: list[ToolSpec], parallel: bool, whitespace: str | None = COMPACT_WHITESPACE) -> str:
        """required / named: an output that is one call, or several when parallel."""
        one = (escape_literal(self.begin)
               + constraint_regex("json_schema", canonical_spec("json_schema", self.call_schema(tools)), whitespace)
               + escape_literal(self.end))
        # Each call followed by the separator: `one(sep one)*` would write the call's regex
        # twice, doubling the automaton the regex backend must build.
        return f"(?:{one}{escape_literal(self.separator)})+" if parallel else one

    def structural_tag(self, tools: list[ToolSpec]) -> dict:
        """auto: free text, and a complete call after the opening."""
        return {"type": "structural_tag", "triggers": [self.begin],
                "structures": [{"begin": self.begin, "schema": self.call_schema(tools), "end": self.end}]}

    # ---- text ---------------------------------------------------------------------------
    def render_call(self, name: str, arguments: Any) -> str:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
        return f'{self.begin}{{"name":{json.dumps(name)},"{self.arguments_key}":{args}}}{self.end}'

    def parse(self, text: str) -> tuple[str | None, list[ParsedCall]]:
        """(the text before the first call or None, the calls); what does not parse stays text."""
        calls, first = [], None
        for m in re.finditer(re.escape(self.begin) + r"(.*?)(?:" + re.escape(self.end) + r"|$)", text, re.DOTALL):
            call = self._parse_one(m.group(1))
            if call is not None:
                calls.append(call)
                first = m.start() if first is None else first
        content = text if first is None else text[:first]
        return (content.strip() or None), calls

    def cut(self, text: str) -> bool:
        """A call was opened in `text` and not finished (max_tokens cut it)."""
        return text.count(self.begin) > len(self.parse(text)[1])

    def _parse_one(self, body: str) -> ParsedCall | None:
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        args = obj.get(self.arguments_key, {})
        text = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"), ensure_ascii=False)
        return ParsedCall(obj["name"], text)

    def system_prompt(self, tools: list[ToolSpec]) -> str:
        """For chat templates that know no tools: the tools and the call syntax, in words."""
        listing = "\n".join(json.dumps({"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}}) for t in tools)
        example = self.render_call("<function-name>", "<arguments-json-object>")
        return ("You may call one or more functions to help with the user's request. The functions:\n"
                f"<tools>\n{listing}\n</tools>\nTo call a function, reply with exactly:\n{example}")


class Llama3Format(ToolCallFormat):
    name = "llama3"
    begin, end, separator = '{"name":', "", "; "
    arguments_key = "parameters"

    def calls_regex(self, tools: list[ToolSpec], parallel: bool, whitespace: str | None = COMPACT_WHITESPACE) -> str:
        one = constraint_regex("json_schema", canonical_spec("json_schema", self.call_schema(tools)), whitespace)
        return one + (f"(?:{escape_literal(self.separator)}{one})*" if parallel else "")

    def structural_tag(self, tools: list[ToolSpec]) -> dict:
        raise ValueError('tool_choice "auto" is not supported with the llama3 format (its calls have no '
                         'opening marker to trigger on); use "required" or a named function')

    def render_call(self, name: str, arguments: Any) -> str:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
        return f'{{"name":{json.dumps(name)},"parameters":{args}}}'

    def parse(self, text: str) -> tuple[str | None, list[ParsedCall]]:
        body = text.removeprefix("<|python_tag|>").strip()
        calls = [c for c in (self._parse_one(part) for part in body.split(self.separator)) if c]
        return (None, calls) if calls else (text.strip() or None, [])

    def cut(self, text: str) -> bool:
        body = text.removeprefix("<|python_tag|>").strip()
        return body.startswith("{") and len(self.parse(text)[1]) < len(body.split(self.separator))


class MistralFormat(ToolCallFormat):
    name = "mistral"
    begin, end, separator = "[TOOL_CALLS]", "", ""

    def calls_regex(self, tools: list[ToolSpec], parallel: bool, whitespace: str | None = COMPACT_WHITESPACE) -> str:
        array = {"type": "array", "items": self.call_schema(tools), "minItems": 1}
        if not parallel:
            array["maxItems"] = 1
        return escape_literal(self.begin) + constraint_regex("json_schema", canonical_spec("json_schema", array), whitespace)

    def structural_tag(self, tools: list[ToolSpec]) -> dict:
        array = {"type": "array", "items": self.call_schema(tools), "minItems": 1}
        return {"type": "structural_tag", "triggers": [self.begin],
                "structures": [{"begin": self.begin, "schema": array, "end": ""}]}

    def render_call(self, name: str, arguments: Any) -> str:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
        return f'{self.begin}[{{"name":{json.dumps(name)},"arguments":{args}}}]'

    def parse(self, text: str) -> tuple[str | None, list[ParsedCall]]:
        at = text.find(self.begin)
        if at < 0:
            return text.strip() or None, []
        try:
            items = json.loads(text[at + len(self.begin):].strip())
        except json.JSONDecodeError:
            return text.strip() or None, []
        if not isinstance(items, list):
            return text.strip() or None, []
        calls = [c for c in (self._parse_one(json.dumps(i)) for i in items) if c]
        return (text[:at].strip() or None), calls

    def cut(self, text: str) -> bool:
        return self.begin in text and not self.parse(text)[1]


FORMATS = {"hermes": ToolCallFormat(), "qwen25": ToolCallFormat(), "llama3": Llama3Format(),
           "mistral": MistralFormat()}


def format_for(parser: str | None, chat_template: str | None) -> ToolCallFormat:
    """--tool-call-parser, else what the model's chat template writes, else hermes."""
    if parser is not None:
        if parser not in FORMATS:
            raise ValueError(f"unknown tool call parser {parser!r}; use one of {', '.join(FORMATS)}")
        return FORMATS[parser]
    template = chat_template or ""
    if "[TOOL_CALLS]" in template:
        return FORMATS["mistral"]
    if "<|python_tag|>" in template or "ipython" in template:
        return FORMATS["llama3"]
    return FORMATS["hermes"]


def template_takes_tools(chat_template: str | None) -> bool:
    """The template renders `tools` itself (Qwen2.5, Llama 3.1, Mistral, Hermes templates)."""
    return bool(chat_template) and re.search(r"\btools\b", chat_template) is not None


@dataclass(frozen=True)
class ToolSetup:
    """The server's tool-call format and whether its chat template renders `tools` itself."""

    fmt: ToolCallFormat
    template_takes_tools: bool

    @classmethod
    def of(cls, parser: str | None, chat_template: str | None) -> ToolSetup:
        return cls(format_for(parser, chat_template), template_takes_tools(chat_template))

    def metadata(self) -> dict[str, Any]:
        """For /get_model_info and /v1/models: how this server writes and describes tools."""
        return {"tool_call_parser": self.fmt.name,
                "tool_call_prompt": "chat template" if self.template_takes_tools else "system message"}


def arguments_schema(tool: ToolSpec) -> dict:
    """The schema a call's arguments are held to (`strict` closes its objects)."""
    return closed_objects(tool.parameters) if tool.strict else tool.parameters


def closed_objects(schema: Any) -> Any:
    """`strict`, as OpenAI defines it: every object of the schema has exactly the properties
    it lists (`additionalProperties: false` where the schema says nothing)."""
    if isinstance(schema, list):
        return [closed_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed_objects(v) for k, v in schema.items()}
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
