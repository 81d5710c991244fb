"""The field rules of runtime/validation.py: what each accepts, what it says when it refuses,
and the JSON-schema fragment /openapi.json gets from it."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest

from radixlm.runtime.sampling.sampling_params import FIELD_RULES, SamplingParams
from radixlm.runtime.validation import Bool, Int, ListOf, Number, Object, Str


def refusal(rule, value, name: str = "field") -> str:
    with pytest.raises(ValueError) as info:
        rule.check(name, value)
    return str(info.value)


# ---- null ---------------------------------------------------------------------------------

def test_null_is_the_default_when_nullable():
    assert Int().check("n", None, default=7) == 7


def test_null_is_refused_when_not_nullable():
    assert refusal(Int(nullable=False), None, "n") == "n must be an integer (got None)"


def test_nullable_schema_allows_null_and_keeps_the_description():
    assert Bool(description="stream the result").schema() == {
        "anyOf": [{"type": "boolean"}, {"type": "null"}], "description": "stream the result"}
    assert Bool(nullable=False).schema() == {"type": "boolean"}


# ---- Int ----------------------------------------------------------------------------------

def test_int_range_message_names_the_field_and_the_bound():
    rule = Int(lo=0, hi=20)
    assert refusal(rule, -3, "max_new_tokens") == "max_new_tokens must be >= 0 (got -3)"
    assert refusal(rule, 21, "top_logprobs_num") == "top_logprobs_num must be <= 20 (got 21)"
    assert rule.check("x", 20) == 20


@pytest.mark.parametrize("value", [True, "5", 1.5, [5]])
def test_int_refuses_what_is_not_an_integer(value):
    assert refusal(Int(), value, "n") == f"n must be an integer (got {value!r})"


def test_int_refuses_an_integral_float_saying_to_send_the_integer():
    """One rule on every route (issue 22): /generate took 5.0 where /v1 refused it."""
    assert refusal(Int(), 5.0, "max_tokens") == "max_tokens must be an integer literal (got 5.0); send 5"
    assert refusal(Int(), -1.0, "top_k") == "top_k must be an integer literal (got -1.0); send -1"


def test_int_schema_states_the_range_and_that_5_0_is_refused():
    schema = Int(lo=1, hi=128, nullable=False).schema()
    assert schema["type"] == "integer" and (schema["minimum"], schema["maximum"]) == (1, 128)
    assert "not 5.0" in schema["description"]


# ---- Number -------------------------------------------------------------------------------

def test_number_open_lower_bound_refuses_the_bound():
    rule = Number(lo=0, hi=1, lo_open=True)
    assert refusal(rule, 0, "top_p") == "top_p must be > 0 (got 0)"
    assert rule.check("top_p", 1) == 1


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_number_refuses_non_finite_values(value):
    assert "temperature must be finite" in refusal(Number(), value, "temperature")


def test_number_refuses_booleans_and_strings():
    assert refusal(Number(), True, "min_p") == "min_p must be a number (got True)"
    assert refusal(Number(), "hot", "temperature") == "temperature must be a number (got 'hot')"


def test_number_schema_uses_exclusive_minimum_for_an_open_bound():
    assert Number(lo=0, hi=1, lo_open=True, nullable=False).schema() == {
        "type": "number", "exclusiveMinimum": 0, "maximum": 1}


# ---- Bool, Str ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, "", "true"])
def test_bool_refuses_values_python_would_call_truthy_or_falsy(value):
    assert refusal(Bool(), value, "stream") == f"stream must be a boolean (got {value!r})"


def test_str_limits_length_in_bytes_and_describes_a_sound_character_bound():
    rule = Str(max_bytes=4, nullable=False)
    assert rule.check("s", "abcd") == "abcd"
    assert "at most 4 bytes" in refusal(rule, "ééé", "s")  # 3 characters, 6 bytes
    assert rule.schema() == {"type": "string", "maxLength": 4}


def test_str_with_min_len_1_refuses_the_empty_string():
    assert refusal(Str(min_len=1), "", "stop") == "stop must not be empty (got '')"


# ---- ListOf, Object -----------------------------------------------------------------------

def test_list_takes_a_bare_string_as_one_entry():
    assert ListOf(item=Str(), bare=True).check("stop", "\n") == ["\n"]


def test_list_entries_are_checked_under_their_index():
    rule = ListOf(item=Int(lo=0))
    assert refusal(rule, [1, -1], "stop_token_ids") == "stop_token_ids[1] must be >= 0 (got -1)"
    assert refusal(rule, [None], "stop_token_ids") == "stop_token_ids[0] must be an integer (got None)"


def test_list_refuses_too_many_entries_and_a_non_list():
    rule = ListOf(item=Str(), max_items=2, bare=True)
    assert refusal(rule, ["a", "b", "c"], "stop") == "stop may have at most 2 entries (got 3)"
    assert refusal(rule, 5, "stop") == "stop must be a string or a list of strings (got 5)"


def test_list_accepts_a_tuple_from_python_callers():
    assert ListOf(item=Int()).check("ids", (1, 2)) == [1, 2]


def test_bare_list_schema_allows_the_entry_or_a_list_of_them():
    entry = {"type": "string", "minLength": 1}
    assert ListOf(item=Str(min_len=1), max_items=32, bare=True, nullable=False).schema() == {
        "anyOf": [entry, {"type": "array", "items": entry, "maxItems": 32}]}


def test_object_values_are_checked_under_their_key():
    rule = Object(values=Number(lo=-100, hi=100))
    assert refusal(rule, {"5": 200}, "logit_bias") == "logit_bias[5] must be <= 100 (got 200)"
    assert refusal(rule, [1], "logit_bias") == "logit_bias must be an object (got [1])"
    assert rule.schema()["anyOf"][0] == {"type": "object", "additionalProperties":
                                         {"type": "number", "minimum": -100, "maximum": 100}}


# ---- rule and schema agree ----------------------------------------------------------------

SAMPLES = [None, True, 0, -1, 5, 5.0, 5.5, 200, float("inf"), "", "a", "ééé", [], ["a"], ["a", ""],
           [1, -1], {}, {"1": 2}, {"1": 200}, {"1": None}]
RULES = [Int(lo=0, hi=20), Int(lo=-1, nullable=False), Number(lo=0, hi=1, lo_open=True),
         Bool(), Str(min_len=1, max_bytes=4), ListOf(item=Str(min_len=1), max_items=1, bare=True),
         ListOf(item=Int(lo=0)), Object(values=Number(lo=-100, hi=100)), Object()]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_schema_accepts_every_value_the_rule_accepts(rule):
    """What the fuzzer relies on: a value the schema calls invalid is one the server refuses."""
    for value in SAMPLES:
        try:
            rule.check("field", value)
        except ValueError:
            continue
        jsonschema.validate(value, rule.schema())


# ---- the sampling parameters' table -------------------------------------------------------

def test_sampling_errors_name_the_field_as_the_client_sent_it():
    with pytest.raises(ValueError, match=r"^seed must be an integer \(got '1'\)$"):
        SamplingParams.from_dict({"sampling_seed": "1"}, names={"sampling_seed": "seed"})
    with pytest.raises(ValueError, match=r"^min_tokens \(3\) must be <= max_tokens \(1\)$"):
        SamplingParams.from_dict({"min_new_tokens": 3, "max_new_tokens": 1},
                                 names={"min_new_tokens": "min_tokens", "max_new_tokens": "max_tokens"})


def test_every_sampling_field_but_the_constraints_has_a_rule():
    constraints = {"regex", "json_schema", "ebnf", "structural_tag", "choices"}
    assert set(FIELD_RULES) == {f.name for f in dataclasses.fields(SamplingParams)} - constraints


@pytest.mark.parametrize("name", sorted(FIELD_RULES))
def test_each_field_default_passes_its_rule_and_its_schema(name):
    """The schema /openapi.json shows for a field accepts what SamplingParams() holds."""
    default = getattr(SamplingParams(), name)
    rule = FIELD_RULES[name]
    assert rule.check(name, default) == default
    jsonschema.validate(default, rule.schema())
