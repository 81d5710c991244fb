"""A conversation with tools, as the model's chat template wants it.

A template that renders `tools` itself (Qwen2.5, Llama 3.1+, Mistral, Hermes) gets the
tools and the conversation as OpenAI sends them (a call's arguments as an object). Any other
template (SmolLM2's) gets the format's own words: the tools described in the system
message, past calls written in the format's syntax, and tool results as user turns in
<tool_response> tags, as Hermes-style models were trained on.
"""

from __future__ import annotations

import json
from typing import Any

from radixlm.runtime.tools.formats import ToolCallFormat
from radixlm.runtime.tools.spec import ToolSpec


def tool_conversation(messages: list[dict], tools: list[ToolSpec], fmt: ToolCallFormat,
                      template_takes_tools: bool) -> tuple[list[dict], dict[str, Any]]:
    """(messages, extra keyword arguments for apply_chat_template)."""
    if template_takes_tools:
        return [_for_template(m) for m in messages], {"tools": [_openai_tool(t) for t in tools]}
    out = [_in_words(m, fmt) for m in messages]
    if not tools:  # past calls and results only (tool_choice aside, no tools this turn)
        return out, {}
    described = fmt.system_prompt(tools)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{described}".strip()}
    else:
        out.insert(0, {"role": "system", "content": described})
    return out, {}


def _openai_tool(t: ToolSpec) -> dict:
    return {"type": "function", "function": {"name": t.name, "description": t.description,
                                             "parameters": t.parameters}}


def _for_template(m: dict) -> dict:
    if m["role"] == "assistant" and m.get("tool_calls"):
        calls = [{"type": "function", "id": c.get("id"), "function": {
            "name": c["function"]["name"], "arguments": _as_object(c["function"].get("arguments"))}}
            for c in m["tool_calls"]]
        return {**m, "content": m.get("content") or "", "tool_calls": calls}
    return m


def _in_words(m: dict, fmt: ToolCallFormat) -> dict:
    if m["role"] == "assistant" and m.get("tool_calls"):
        calls = fmt.separator.join(fmt.render_call(c["function"]["name"], c["function"].get("arguments") or "{}")
                                   for c in m["tool_calls"])
        return {"role": "assistant", "content": (m.get("content") or "") + calls}
    if m["role"] == "tool":
        return {"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"}
    return {"role": m["role"], "content": m.get("content") or ""}


def _as_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}
