"""Recursive grammars made regular by bounding their depth: every string the bounded form
accepts is one the original accepts, and shallow ones are all kept."""

from __future__ import annotations

import re

import jsonschema
import pytest

from radixlm.runtime.constrained.ebnf_regex import bounded_ebnf_regex
from radixlm.runtime.constrained.schema_refs import inline_refs

ARITHMETIC = r'''
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= number | "(" expr ")"
number ::= [0-9]+
'''
TREE = {"$defs": {"node": {"type": "object", "properties": {
    "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
    "required": ["value"]}}, "$ref": "#/$defs/node"}
LIST = {"type": "object", "properties": {"v": {"type": "integer"},
                                         "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["v", "next"]}


@pytest.mark.parametrize(("text", "inside"), [
    ("1+2", True), ("(1+2)*3", True), ("((7))", True), ("(((7)))", False), ("1+", False), ("1 + 2", False),
])
def test_bounded_arithmetic_keeps_shallow_expressions(text, inside):
    assert bool(re.fullmatch(bounded_ebnf_regex(ARITHMETIC, depth=3), text)) == inside


def test_ebnf_literal_escapes_are_the_characters_they_stand_for():
    regex = bounded_ebnf_regex(r'root ::= "{\"v\":" [0-9] "}" "\n"', depth=3)
    assert re.fullmatch(regex, '{"v":7}\n')


def test_a_grammar_that_must_recurse_forever_has_no_bounded_form():
    with pytest.raises(ValueError, match="nests at most"):
        bounded_ebnf_regex('root ::= "(" root ")"', depth=3)


def test_lark_syntax_is_left_to_the_exact_backend():
    with pytest.raises(ValueError, match="Lark"):
        bounded_ebnf_regex('start: "a"', depth=3)


def test_inlined_tree_cuts_children_at_the_bound():
    bounded = inline_refs(TREE, depth=2)
    assert "$defs" not in bounded and "$ref" not in str(bounded)
    deep = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    jsonschema.validate({"value": 1, "children": [{"value": 2, "children": []}]}, bounded)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(deep, bounded)
    jsonschema.validate(deep, TREE)  # the original takes it: the bound only removes instances


def test_inlined_list_ends_with_null_at_the_bound():
    bounded = inline_refs(LIST, depth=1)
    jsonschema.validate({"v": 1, "next": {"v": 2, "next": None}}, bounded)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "next": {"v": 2, "next": {"v": 3, "next": None}}}, bounded)


def test_a_schema_that_must_recurse_forever_is_refused():
    with pytest.raises(ValueError, match="cannot end"):
        inline_refs({"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]}, depth=3)
