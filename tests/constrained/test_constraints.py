"""Constraint kinds -> regex, and canonical cache keys."""

from __future__ import annotations

import json
import re

import pytest

from radixlm.runtime.constrained.constraints import (
    REGEX_INT,
    canonical_spec,
    constraint_regex,
    escape_literal,
    strip_outer_anchors,
)


def _regex(kind, spec, whitespace=""):
    return constraint_regex(kind, canonical_spec(kind, spec), whitespace)


def test_json_schema_string_and_dict_give_the_same_key():
    schema = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "string"}}}
    assert canonical_spec("json_schema", schema) == canonical_spec("json_schema", json.dumps(schema, indent=2))


def test_json_schema_key_keeps_property_order():
    """Property order decides the output's key order, so it must stay in the key."""
    ab = {"properties": {"a": {}, "b": {}}}
    ba = {"properties": {"b": {}, "a": {}}}
    assert canonical_spec("json_schema", ab) != canonical_spec("json_schema", ba)


def test_json_schema_is_compact_by_default():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    regex = _regex("json_schema", schema)
    assert re.fullmatch(regex, '{"a":1}')
    assert not re.fullmatch(regex, '{"a": 1}')


def test_json_whitespace_is_configurable():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert re.fullmatch(_regex("json_schema", schema, r"[ ]?"), '{"a": 1}')


def test_choices_are_escaped_literals():
    regex = _regex("choices", ["a.b", "(x|y)", "1+1?", "tab\there"])
    assert all(re.fullmatch(regex, c) for c in ["a.b", "(x|y)", "1+1?", "tab\there"])
    assert not re.fullmatch(regex, "aXb")


def test_escape_literal_round_trips_metacharacters():
    text = r"\.+*?()|[]{}^$ -#&~"
    assert re.fullmatch(escape_literal(text), text)


@pytest.mark.parametrize("dtype, text", [("int", "-42 "), ("float", "3.14"), ("bool", "True"),
                                         ("str", '"hello world"')])
def test_dtype_regexes(dtype, text):
    assert re.fullmatch(_regex("dtype", dtype), text)


def test_dtype_accepts_python_types():
    assert _regex("dtype", int) == REGEX_INT


@pytest.mark.parametrize("kind, spec, message", [
    ("regex", "", "non-empty string"),
    ("regex", 3, "non-empty string"),
    ("json_schema", "{not json", "not valid JSON"),
    ("json_schema", [1, 2], "JSON object"),
    ("choices", [], "non-empty list"),
    ("choices", ["a", ""], "non-empty strings"),
    ("dtype", "complex", "dtype must be one of"),
    ("lark", "start: 'a'", "unknown constraint kind"),
])
def test_malformed_specs_are_value_errors(kind, spec, message):
    with pytest.raises(ValueError, match=message):
        canonical_spec(kind, spec)


@pytest.mark.parametrize("schema, reason", [
    ({"type": "frobnicate"}, "Unsupported type"),
    ({"$ref": "#/definitions/missing"}, "reference"),
    ({"type": "string", "format": "weird"}, "Format weird"),
])
def test_unsupported_schemas_name_the_reason(schema, reason):
    with pytest.raises(ValueError, match=f"unsupported json_schema: .*{reason}"):
        _regex("json_schema", schema)


@pytest.mark.parametrize("regex, stripped", [
    ("^[0-9]+$", "[0-9]+"),
    ("a|b$", "a|b"),
    (r"cost \$", r"cost \$"),  # a literal dollar stays
    ("ends\\\\$", "ends\\\\"),  # an escaped backslash, then the anchor
    ("[$]", "[$]"),
])
def test_outer_anchors_are_redundant_under_full_match(regex, stripped):
    assert strip_outer_anchors(regex) == stripped
    assert _regex("regex", regex) == stripped


def test_email_format_is_the_plain_address_pattern():
    # outlines' RFC 5322 regex (quoted local parts, IP literals) multiplies automata sizes;
    # the plain pattern is the form addresses are written in (schema_formats.py)


    schema = {"type": "array", "items": {"type": "string", "format": "email"}}
    regex = _regex("json_schema", schema)
    assert re.fullmatch(regex, '["ann.lee+work@mail.example.org","bob@x.io"]')
    assert not re.fullmatch(regex, '["ann@"]') and not re.fullmatch(regex, '[".ann@x.io"]')
    assert len(regex) < 300  # outlines writes the item twice; its RFC regex is 448 characters alone
    # a schema's own pattern is kept; enums with "format" in them are data, not schemas
    own = _regex("json_schema", {"type": "string", "format": "email", "pattern": "[a-z]+@corp\\.com"})
    assert re.fullmatch(own, '"joe@corp.com"') and not re.fullmatch(own, '"joe@x.io"')
