"""CharDFA: forced strings are exactly the text every continuation must start with."""

from __future__ import annotations

import json

import pytest

from radixlm.runtime.constrained.char_dfa import DEAD, CharDFA
from radixlm.runtime.constrained.constraints import canonical_spec, constraint_regex

SCHEMA_B = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"},
    "role": {"enum": ["admin", "editor", "viewer"]}, "active": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "age", "role", "active", "tags"]}


def _schema_dfa(whitespace: str | None) -> CharDFA:
    spec = canonical_spec("json_schema", SCHEMA_B)
    return CharDFA.from_regex(constraint_regex("json_schema", spec, whitespace))


def _forced(dfa: CharDFA, prefix: str) -> str:
    return dfa.forced(dfa.walk(dfa.initial, prefix)).text


# The reference's schema-B table (docs/constrained-decoding.md §3), both whitespaces.
@pytest.mark.parametrize("prefix, compact, optional_space", [
    ("", '{"name":"', "{"),
    ('{"', 'name":"', 'name"'),
    ('{"name":"Al', "", ""),
    ('{"name":"Al","age":3,"role":"e', 'ditor","active":', 'ditor"'),
    ('{"name":"Al","age":3,"role":"editor","active":t', 'rue,"tags":[', "rue"),
])
def test_schema_b_forced_strings(prefix, compact, optional_space):
    assert _forced(_schema_dfa(""), prefix) == compact
    assert _forced(_schema_dfa(None), prefix) == optional_space


def test_shared_first_character_is_forced_alone():
    dfa = CharDFA.from_regex("霍格沃茨特快列车|霍比特人比尔博")
    assert _forced(dfa, "") == "霍"
    assert _forced(dfa, "霍") == ""  # 格 or 比
    assert _forced(dfa, "霍比") == "特人比尔博"


def test_nothing_is_forced_where_the_output_may_end():
    dfa = CharDFA.from_regex("ab(cd)?")
    assert _forced(dfa, "") == "ab"
    assert _forced(dfa, "ab") == ""
    assert _forced(dfa, "abc") == "d"


def test_dead_branches_do_not_block_a_forced_character():
    """interegular keeps the unsatisfiable `c(?!x)x` branch as states that never accept;
    once they are pruned, b is the only way on."""
    dfa = CharDFA.from_regex("a(b|c(?!x)x)")
    assert _forced(dfa, "") == "ab"


def test_refused_character_is_dead():
    dfa = CharDFA.from_regex("[0-9]+")
    assert dfa.walk(dfa.initial, "12x") == DEAD
    assert dfa.forced(DEAD).text == ""


def test_forced_chain_end_state_continues_the_walk():
    dfa = CharDFA.from_regex('\\{"k":(true|false)\\}')
    chain = dfa.forced(dfa.initial)
    assert chain.text == '{"k":'
    assert chain.end_state == dfa.walk(dfa.initial, chain.text)


def test_forced_text_is_a_prefix_of_every_accepted_string():
    regex = constraint_regex("json_schema", canonical_spec("json_schema", SCHEMA_B), "")
    dfa = CharDFA.from_regex(regex)
    doc = json.dumps({"name": "x", "age": 1, "role": "admin", "active": True, "tags": ["a"]},
                     separators=(",", ":"))
    for cut in range(len(doc)):
        forced = _forced(dfa, doc[:cut])
        assert doc[cut:].startswith(forced), (doc[:cut], forced)
