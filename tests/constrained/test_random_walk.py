"""Property: every output a constrained walk finishes is valid, with and without jump-forward.

A seeded walker (conftest.RandomWalker) plays the model: it picks random allowed tokens
from the real bitmask, then steers to the end. Each finished output must be valid UTF-8
and match the constraint (`jsonschema` / `re.fullmatch`); with jump-forward every jump must
be a prefix of the forced string at that point (checked inside the walker).
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from radixlm.runtime.constrained.constraints import (
    REGEX_BOOL,
    REGEX_FLOAT,
    REGEX_INT,
    REGEX_STR,
)

SEEDS = (0, 1)


def _obj(props: dict, required: list[str] | None = None, **extra) -> dict:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required, **extra}


STR, INT, NUM, BOOL, NULL = ({"type": t} for t in ("string", "integer", "number", "boolean", "null"))

SCHEMAS = {
    "string": STR,
    "integer": INT,
    "number": NUM,
    "boolean": BOOL,
    "null": NULL,
    "enum_strings": {"enum": ["red", "green", "blue"]},
    "enum_mixed": {"enum": ["on", 3, None, True]},
    "const": {"const": "fixed"},
    "two_required": _obj({"name": STR, "age": INT}),
    "optional_props": _obj({"id": INT, "nick": STR, "score": NUM}, required=["id"]),
    "all_optional": _obj({"a": INT, "b": BOOL, "c": NULL}, required=[]),
    "nested_object": _obj({"user": _obj({"name": STR, "admin": BOOL}), "n": INT}),
    "three_levels": _obj({"a": _obj({"b": _obj({"c": INT})})}),
    "int_array": {"type": "array", "items": INT},
    "array_min_max": {"type": "array", "items": INT, "minItems": 1, "maxItems": 3},
    "array_of_objects": {"type": "array", "items": _obj({"x": INT, "y": INT}), "maxItems": 2},
    "array_of_enums": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2,
                       "maxItems": 2},
    "pattern": _obj({"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}}),
    "pattern_digits": {"type": "string", "pattern": r"^[0-9]{3}-[0-9]{4}$"},
    "length": _obj({"tag": {"type": "string", "minLength": 2, "maxLength": 4}}),
    "any_of": {"anyOf": [INT, NULL]},
    "nullable_string": {"type": ["string", "null"]},
    "nested_arrays": {"type": "array", "items": {"type": "array", "items": NUM, "maxItems": 2},
                      "maxItems": 2},
    "scalars": _obj({"ok": BOOL, "none": NULL, "ratio": NUM}),
    "date": _obj({"day": {"type": "string", "format": "date"}}),
    "uuid": {"type": "string", "format": "uuid"},
    "unicode_enum": _obj({"city": {"enum": ["東京", "café", "naïve"]}}),
    "unicode_keys": _obj({"名前": STR, "年齢": INT}),
    "ref_defs": {"$defs": {"pt": _obj({"x": INT, "y": INT})}, "type": "object",
                 "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
                 "required": ["a", "b"]},
    "enum_ints": _obj({"level": {"enum": [1, 2, 3, 10]}}),
    "no_additional": _obj({"k": STR}, additionalProperties=False),
    "extraction": _obj({"title": STR, "year": INT, "rating": NUM, "genres":
                        {"type": "array", "items": {"enum": ["drama", "comedy"]}, "maxItems": 2},
                        "sequel": BOOL}),
}

# `\d`, `\w` and `\s` follow Rust regex (outlines-core): Unicode classes of a newer Unicode
# version than Python's `re`, so the oracle could disagree on rare digits; ASCII classes here,
# and the frontend dtype regexes (which use them) as they are.
REGEXES = {
    "digits": r"[0-9]+",
    "decimal": r"-?[0-9]{1,4}\.[0-9]{2}",
    "animals": r"(cat|dog|bird)s?",
    "email": r"[a-z]{3,6}@[a-z]{2,5}\.(com|org)",
    "dtype_int": REGEX_INT,
    "dtype_float": REGEX_FLOAT,
    "dtype_bool": REGEX_BOOL,
    "dtype_str": REGEX_STR,
    "phone": r"[0-9]{3}-[0-9]{3}-[0-9]{4}",
    "answer": r"(yes|no|maybe)",
    "full_name": r"[A-Z][a-z]+ [A-Z][a-z]+",
    "hex": r"0x[0-9a-f]{4,8}",
    "signed": r"(\+|-)?[1-9][0-9]*",
    "pair": r"\(([0-9]+),([0-9]+)\)",
    "byte": r"[01]{8}",
    "repeat_group": r"(ab)+c",
    "counted": r"a{2,5}b*",
    "json_literal": r"(true|false|null)",
    "sentence": r"The answer is [0-9]+\.",
    "list": r"\[([0-9]+(, [0-9]+)*)?\]",
    "line": r"[^\n]{1,6}\n",
    "weekday": r"(Mon|Tues|Wednes)day",
    "iso_date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    "time": r"([01]?[0-9]|2[0-3]):[0-5][0-9]",
    "color": r"#[0-9a-fA-F]{6}",
    "quoted": r'"[^"]{0,10}"',
    "chinese_shared_prefix": r"霍格沃茨特快列车|霍比特人比尔博",
    "non_ascii_choice": r"(café|caffè|кофе)",
    "greek": r"[α-ω]{2,4}",
    "url": r"https?://[a-z]+\.[a-z]{2,3}(/[a-z]+)*",
    "tags": r"(<[a-z]+>)+",
    "key_value": r"[a-z]+=[0-9]+(;[a-z]+=[0-9]+){0,2}",
}


@pytest.mark.parametrize("jump_forward", [False, True], ids=["plain", "jump"])
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_walks_produce_valid_json(name, jump_forward, new_matcher, walker):
    schema = SCHEMAS[name]
    for seed in SEEDS:
        walk = walker.run(new_matcher("json_schema", schema), seed, jump_forward)
        jsonschema.validate(json.loads(walk.text), schema)


@pytest.mark.parametrize("jump_forward", [False, True], ids=["plain", "jump"])
@pytest.mark.parametrize("name", list(REGEXES))
def test_regex_walks_fullmatch(name, jump_forward, new_matcher, walker):
    regex = REGEXES[name]
    for seed in SEEDS:
        walk = walker.run(new_matcher("regex", regex), seed, jump_forward)
        assert re.fullmatch(regex, walk.text), (regex, walk.text)


def test_jump_forward_saves_steps_on_json(new_matcher, walker):
    """Compact JSON is mostly forced text: jumping must cut the sampled tokens."""
    schema = SCHEMAS["extraction"]
    plain = walker.run(new_matcher("json_schema", schema), seed=3)
    jumped = walker.run(new_matcher("json_schema", schema), seed=3, jump_forward=True)
    assert jumped.jumps
    assert jumped.steps < plain.steps
