"""Judge the soak's outcomes: is each answer complete and well formed, do constrained answers
validate, and does every greedy answer equal its single-request answer.

`answer_of` reads the three response shapes (native, chat, completions; streamed or not)
into one `Answer`; it raises `Malformed` naming the first thing wrong with the shape.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import jsonschema

from .client import OK, Outcome
from .workload import CHAT, COMPLETIONS, NATIVE, Plan

LAST_TOKEN_CHARS = 16  # a generous bound on the characters of one token


class Malformed(Exception):
    pass


@dataclass
class Answer:
    text: str
    finish_reason: str  # "stop" | "length" | anything else is a problem
    completion_tokens: int | None  # None where the shape does not report it (OpenAI streams)


def answer_of(out: Outcome) -> Answer:
    api, stream = out.plan.api, out.plan.stream
    if api == NATIVE:
        return _native_stream(out.events) if stream else _native(out.body)
    if api in (CHAT, COMPLETIONS):
        return _openai_stream(out.events, api) if stream else _openai(out.body, api)
    raise Malformed(f"unknown api {api!r}")


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise Malformed(what)


def _native(body: dict) -> Answer:
    _require(isinstance(body, dict) and isinstance(body.get("text"), str), "no text")
    meta = body.get("meta_info") or {}
    reason = meta.get("finish_reason") or {}
    _require(isinstance(reason, dict) and "type" in reason, f"bad finish_reason {reason!r}")
    _require(len(body.get("output_ids", [])) == meta.get("completion_tokens"),
             "output_ids and completion_tokens disagree")
    return Answer(body["text"], reason["type"], meta.get("completion_tokens"))


def _native_stream(events: list[dict]) -> Answer:
    _require(bool(events), "no events")
    previous = ""
    for e in events[:-1]:
        _require(e["meta_info"]["finish_reason"] is None, "finish_reason before the last event")
        _require(e["text"].startswith(previous), "stream text is not cumulative")
        previous = e["text"]
    _require(events[-1]["text"].startswith(previous), "stream text is not cumulative")
    return _native(events[-1])


def _openai(body: dict, api: str) -> Answer:
    _require(body.get("object") == ("chat.completion" if api == CHAT else "text_completion"),
             f"object {body.get('object')!r}")
    choices = body.get("choices") or []
    _require(len(choices) == 1, f"{len(choices)} choices")
    text = choices[0]["message"]["content"] if api == CHAT else choices[0]["text"]
    _require(isinstance(text, str), "no text")
    return Answer(text, choices[0].get("finish_reason"), body["usage"]["completion_tokens"])


def _openai_stream(events: list[dict], api: str) -> Answer:
    kind = "chat.completion.chunk" if api == CHAT else "text_completion"
    parts, reasons = [], []
    for e in events:
        _require(e.get("object") == kind, f"chunk object {e.get('object')!r}")
        for c in e.get("choices") or []:
            _require(c.get("index") == 0, "choice index != 0")
            parts.append((c["delta"].get("content") if api == CHAT else c.get("text")) or "")
            if c.get("finish_reason") is not None:
                reasons.append(c["finish_reason"])
    _require(len(reasons) == 1, f"{len(reasons)} finish reasons in the stream")
    return Answer("".join(parts), reasons[0], None)


def problems(out: Outcome) -> list[str]:
    """What is wrong with a completed (status OK) outcome; [] when nothing."""
    try:
        ans = answer_of(out)
    except (Malformed, KeyError, TypeError, AttributeError) as exc:
        return [f"malformed answer: {type(exc).__name__}: {exc}"]
    plan, found = out.plan, []
    if ans.finish_reason not in ("stop", "length"):
        found.append(f"finish_reason {ans.finish_reason!r}")
    if ans.completion_tokens is not None and ans.completion_tokens > plan.max_new_tokens:
        found.append(f"{ans.completion_tokens} tokens > max_new_tokens {plan.max_new_tokens}")
    if ans.finish_reason == "length" and ans.completion_tokens not in (None, plan.max_new_tokens):
        found.append(f"length finish after {ans.completion_tokens} < {plan.max_new_tokens} tokens")
    found += [f"stop string {s!r} left in {ans.text!r} ({ans.finish_reason})"
              for s in plan.stop if not _stop_trimmed(ans, s)]
    if plan.constraint and (msg := constraint_violation(plan, ans)):
        found.append(msg)
    return found


def _stop_trimmed(ans: Answer, stop: str) -> bool:
    """A stop string never stays in a "stop" answer. As in SGLang, the length limit is
    checked first, so when the last allowed token completes a stop string the answer ends
    by "length" with it untrimmed: then it first occurs in the last token's characters."""
    if ans.finish_reason != "length":
        return stop not in ans.text
    at = ans.text.find(stop)
    return at < 0 or at >= len(ans.text) - LAST_TOKEN_CHARS


def constraint_violation(plan: Plan, ans: Answer) -> str:
    kind, spec = plan.constraint
    if ans.finish_reason != "stop":
        return f"{kind} output ended by {ans.finish_reason!r}: {ans.text!r}"
    if kind == "regex":
        return "" if re.fullmatch(spec, ans.text) else f"{ans.text!r} does not match {spec!r}"
    if kind == "choices":
        return "" if ans.text in spec else f"{ans.text!r} is not one of {spec}"
    try:
        jsonschema.validate(json.loads(ans.text), spec)
    except (ValueError, jsonschema.ValidationError) as exc:
        return f"{ans.text!r} fails the schema: {str(exc).splitlines()[0]}"
    return ""


def greedy_mismatches(outcomes: list[Outcome], reference: dict[str, str]) -> list[str]:
    """Completed greedy answers whose text differs from the single-request answer."""
    found = []
    for out in outcomes:
        if out.status != OK or not out.plan.greedy or problems(out):
            continue
        text, want = answer_of(out).text, reference[out.plan.greedy_key]
        if text != want:
            found.append(f"{out.plan.api} stream={out.plan.stream} {out.plan.prompt.question!r}: "
                         f"{text!r} != alone {want!r}")
    return found


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]
