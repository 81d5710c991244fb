"""OpenAI's streaming deltas for a choice that may call tools.

    parser = ToolCallStream(fmt)
    for text in cumulative_texts:            # the choice's whole text after each output
        for delta in parser.feed(text): ...  # {"content": ...} or {"tool_calls": [...]}
    parser.finish(text)                      # what is left once the choice is done

Content streams until a call opens (a suffix that may be the start of the opening is held
back); then each call's first delta carries `index`, `id`, `type` and `function.name` (with
empty arguments), and the following ones `function.arguments` as it is written; text after
the calls is dropped, as OpenAI returns none there.
"""

from __future__ import annotations

import re
import uuid

from radixlm.runtime.tools.formats import ToolCallFormat

_NAME = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


class ToolCallStream:
    def __init__(self, fmt: ToolCallFormat) -> None:
        self.fmt = fmt
        self.sent_content = 0  # characters of content sent
        self.calls: list[dict] = []  # per started call: id, name, arguments sent so far
        self.saw_call = False

    def feed(self, text: str, final: bool = False) -> list[dict]:
        start = text.find(self.fmt.begin) if self.fmt.begin else -1
        deltas = []
        content_end = start if start >= 0 else len(text) - (0 if final else _held_back(text, self.fmt.begin))
        if content_end > self.sent_content and not self.saw_call:
            deltas.append({"content": text[self.sent_content:content_end]})
            self.sent_content = content_end
        if start >= 0:
            self.saw_call = True
            deltas += self._call_deltas(text[start + len(self.fmt.begin):], final)
        return deltas

    def finish(self, text: str) -> list[dict]:
        return self.feed(text, final=True)

    def _call_deltas(self, body: str, final: bool) -> list[dict]:
        if not self.fmt.end:  # no closing marker to stream against: whole calls at the end
            return self._whole_calls(self.fmt.begin + body) if final else []
        out = []
        bodies = body.split(self.fmt.end + self.fmt.separator + self.fmt.begin)
        for i, part in enumerate(bodies):
            # At the end a call may lack its closing marker: a stop string trimmed it.
            closed = i < len(bodies) - 1 or self.fmt.end in part or final
            out += self._one(i, part.split(self.fmt.end)[0], closed)
        return out

    def _one(self, index: int, body: str, closed: bool) -> list[dict]:
        m = _NAME.match(body)
        if m is None:
            return []
        out = []
        if index == len(self.calls):
            self.calls.append({"id": "call_" + uuid.uuid4().hex[:24], "sent": 0})
            out.append(_header(index, self.calls[index]["id"], m.group(1)))
        args = body[m.end():]
        if closed:
            args = args[:-1]  # the call object's own closing brace
        else:  # hold back what may be that brace and the start of the closing marker
            args = args[: len(args) - _held_back(args, "}" + self.fmt.end)]
        sent = self.calls[index]["sent"]
        if len(args) > sent:
            out.append({"tool_calls": [{"index": index, "function": {"arguments": args[sent:]}}]})
            self.calls[index]["sent"] = len(args)
        return out

    def _whole_calls(self, text: str) -> list[dict]:
        out = []
        for index, call in enumerate(self.fmt.parse(text)[1]):
            call = call.with_id()
            out.append(_header(index, call.id, call.name))
            out.append({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
        return out


def _header(index: int, call_id: str, name: str) -> dict:
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                            "function": {"name": name, "arguments": ""}}]}


def _held_back(text: str, opening: str) -> int:
    """How many trailing characters of `text` could be the start of `opening`."""
    for k in range(min(len(opening), len(text)), 0, -1):
        if opening.startswith(text[-k:]):
            return k
    return 0
