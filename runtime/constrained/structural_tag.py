"""Triggered constraints: SGLang's `structural_tag` (free text, then constrained structures).

    {"type": "structural_tag",
     "structures": [{"begin": "<tool_call>", "schema": {...}, "end": "</tool_call>"}],
     "triggers": ["<tool_call>"], "at_least_one": false}

The output is free text until it ends with a trigger; from there it must complete one of the
structures whose `begin` starts with that trigger: the rest of `begin`, a JSON value of the
structure's schema, then `end`; after `end` it is free again. So a tool call, once started,
always completes and validates. Each trigger compiles to one regex (the alternation of its
structures), on the regex backend: budget-aware, so a structure started is finished within
max_new_tokens (and none is started when the tokens left could not finish one).
`at_least_one`: the output starts with a structure (tool_choice "required").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from radixlm.runtime.constrained.constraints import (
    COMPACT_WHITESPACE,
    constraint_regex,
    escape_literal,
)

MAX_STRUCTURES = 128


@dataclass(frozen=True)
class Structure:
    begin: str
    schema: str  # canonical JSON text
    end: str


@dataclass(frozen=True)
class StructuralTag:
    structures: tuple[Structure, ...]
    triggers: tuple[str, ...]
    at_least_one: bool = False


def parse_structural_tag(spec: Any) -> StructuralTag:
    """ValueError naming what is wrong with a structural_tag (a JSON string or an object)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"structural_tag is not valid JSON: {e}") from None
    if not isinstance(spec, dict) or spec.get("type", "structural_tag") != "structural_tag":
        raise ValueError('structural_tag must be an object {"type": "structural_tag", "structures": [...], '
                         '"triggers": [...]}')
    structures = spec.get("structures")
    triggers = spec.get("triggers")
    if not isinstance(structures, list) or not 0 < len(structures) <= MAX_STRUCTURES:
        raise ValueError(f"structural_tag.structures must be a list of 1 to {MAX_STRUCTURES} structures")
    if not isinstance(triggers, list) or not triggers or not all(isinstance(t, str) and t for t in triggers):
        raise ValueError("structural_tag.triggers must be a non-empty list of non-empty strings")
    parsed = tuple(_structure(s, i) for i, s in enumerate(structures))
    for i, s in enumerate(parsed):
        if not any(s.begin.startswith(t) for t in triggers):
            raise ValueError(f"structural_tag.structures[{i}].begin {s.begin!r} starts with none of the triggers")
    at_least_one = spec.get("at_least_one", False)
    if not isinstance(at_least_one, bool):
        raise ValueError(f"structural_tag.at_least_one must be a boolean (got {at_least_one!r})")
    return StructuralTag(parsed, tuple(dict.fromkeys(triggers)), at_least_one)


def _structure(s: Any, i: int) -> Structure:
    if not isinstance(s, dict) or not isinstance(s.get("begin"), str) or not isinstance(s.get("end"), str):
        raise ValueError(f"structural_tag.structures[{i}] must be an object with string begin and end")
    schema = s.get("schema", {})
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"structural_tag.structures[{i}].schema must be a JSON schema object")
    return Structure(s["begin"], json.dumps(schema, separators=(",", ":"), ensure_ascii=False), s["end"])


def canonical(tag: StructuralTag) -> str:
    return json.dumps({"structures": [[s.begin, s.schema, s.end] for s in tag.structures],
                       "triggers": list(tag.triggers), "at_least_one": tag.at_least_one},
                      separators=(",", ":"), ensure_ascii=False)


def after_trigger_regex(tag: StructuralTag, trigger: str, whitespace: str | None = COMPACT_WHITESPACE) -> str:
    """What must follow `trigger`: the rest of a matching structure's begin, its JSON, its end."""
    options = [escape_literal(s.begin[len(trigger):]) + constraint_regex("json_schema", s.schema, whitespace)
               + escape_literal(s.end)
               for s in tag.structures if s.begin.startswith(trigger)]
    return "(?:" + "|".join(options) + ")"


def opening_regex(tag: StructuralTag, whitespace: str | None = COMPACT_WHITESPACE) -> str:
    """`at_least_one`: an output that starts with a whole structure (then free text follows)."""
    return "(?:" + "|".join(escape_literal(t) + after_trigger_regex(tag, t, whitespace) for t in tag.triggers) + ")"
