"""Constraint kinds -> one regex, plus the canonical cache key of a constraint.

Kinds (at most one per request, see `SamplingParams.constraint`):
  * `regex`: a regex string, matched in full;
  * `json_schema`: a JSON schema as a string or a dict, through outlines-core's
    `build_regex_from_schema`; whitespace between tokens is compact (`""`) by default;
  * `choices`: a list of strings, one of which is produced verbatim;
  * `dtype`: `"int" | "float" | "bool" | "str"`, the frontend's typed-generation regexes;
  * `ebnf`: a context-free grammar (SGLang's syntax, `root ::= ...`; or llguidance's Lark):
    its recursion unrolled to a bounded depth (a regex), or compiled exactly by llguidance.
Errors are `ValueError` with the reason (the server answers HTTP 400).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from outlines_core.json_schema import build_regex_from_schema

from radixlm.runtime.constrained.schema_formats import plain_formats
from radixlm.runtime.constrained.schema_refs import inline_refs

# The frontend's typed-generation regexes (wire-protocol A.1; SGLang's sglang.lang.ir).
REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""
DTYPE_REGEXES = {"int": REGEX_INT, "float": REGEX_FLOAT, "bool": REGEX_BOOL, "str": REGEX_STR}

KINDS = ("regex", "json_schema", "choices", "dtype", "ebnf")
COMPACT_WHITESPACE = ""  # no whitespace between JSON tokens: longest jump-forward runs
MAX_JSON_RECURSION_DEPTH = 3

# Escaped in choices: the metacharacters both regex engines (Rust regex, interegular) know.
_REGEX_META = set("\\.+*?()|[]{}^$")


class GrammarKey(NamedTuple):
    """Cache key of a compiled grammar: same key, same automaton."""

    kind: str
    spec: str  # canonical text of the constraint
    whitespace: str | None  # json_schema only
    vocab_fingerprint: str
    exact: bool = False  # ebnf: the unbounded grammar (llguidance), not its bounded regex


def canonical_spec(kind: str, spec: Any) -> str:
    """A stable text for `spec`; raises ValueError for an unknown kind or a malformed spec."""
    if kind in ("regex", "ebnf"):
        return _require_str(kind, spec)
    if kind == "json_schema":
        # Key order is kept on purpose: it fixes the order of properties in the output.
        schema = _load_schema(spec)
        return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    if kind == "choices":
        return json.dumps(_check_choices(spec), ensure_ascii=False)
    if kind == "dtype":
        name = getattr(spec, "__name__", spec)
        if name not in DTYPE_REGEXES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_REGEXES)} (got {spec!r})")
        return name
    raise ValueError(f"unknown constraint kind {kind!r}; expected one of {', '.join(KINDS)}")


def _prepared(schema_text: str) -> str:
    """Recursion bounded by us (schema_refs.py says why) and formats made plain
    (schema_formats.py)."""
    schema = plain_formats(json.loads(schema_text))
    if '"$ref"' in schema_text:
        schema = inline_refs(schema, MAX_JSON_RECURSION_DEPTH)
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def constraint_regex(kind: str, canonical: str, whitespace: str | None = COMPACT_WHITESPACE) -> str:
    """The regex a whole output must match, from `canonical_spec(kind, ...)`."""
    if kind == "regex":
        return strip_outer_anchors(canonical)
    if kind == "json_schema":
        try:
            if '"$ref"' in canonical or '"format"' in canonical:
                canonical = _prepared(canonical)
            return build_regex_from_schema(canonical, whitespace, MAX_JSON_RECURSION_DEPTH)
        except (ValueError, TypeError, RuntimeError) as e:
            raise ValueError(f"unsupported json_schema: {e}") from None
    if kind == "choices":
        return "(" + "|".join(escape_literal(c) for c in json.loads(canonical)) + ")"
    if kind == "dtype":
        return DTYPE_REGEXES[canonical]
    if kind == "ebnf":  # its recursion bounded like a schema's (ebnf_regex.py)
        from radixlm.runtime.constrained.ebnf_regex import bounded_ebnf_regex

        return bounded_ebnf_regex(canonical, MAX_JSON_RECURSION_DEPTH)
    raise ValueError(f"unknown constraint kind {kind!r}; expected one of {', '.join(KINDS)}")


def strip_outer_anchors(regex: str) -> str:
    """Drop a leading `^` and an unescaped trailing `$`: the whole output must match anyway,
    and outlines-core cannot build an index for an anchored start."""
    if regex.startswith("^"):
        regex = regex[1:]
    if regex.endswith("$"):
        backslashes = len(regex[:-1]) - len(regex[:-1].rstrip("\\"))
        if backslashes % 2 == 0:  # `\$` is a literal dollar
            regex = regex[:-1]
    return regex


def escape_literal(text: str) -> str:
    """`text` as a regex that matches exactly it (portable across the two regex engines)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def _require_str(kind: str, spec: Any) -> str:
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{kind} must be a non-empty string (got {spec!r})")
    return spec


def _load_schema(spec: Any) -> Any:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"json_schema is not valid JSON: {e}") from None
    if not isinstance(spec, (dict, bool)):
        raise ValueError(f"json_schema must be a JSON object (got {type(spec).__name__})")
    return spec


def _check_choices(spec: Any) -> list[str]:
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ValueError(f"choices must be a non-empty list of strings (got {spec!r})")
    if not all(isinstance(c, str) and c for c in spec):
        raise ValueError(f"choices must be non-empty strings (got {spec!r})")
    return list(spec)
