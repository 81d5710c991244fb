"""Regex-, dtype- and JSON-schema-constrained gens (need constrained decoding in the runtime).

Skipped, with the reason, while the runtime answers that regex is not supported yet
(radixlm.runtime.constrained is being integrated); they run as soon as it is.
"""

from __future__ import annotations

import json
import re

import pytest

import radixlm.lang as sgl

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


def test_gen_int_produces_an_integer(constrained_backend):
    @sgl.function
    def prog(s):
        s += "Q: How many legs does a dog have?\nA: " + sgl.gen_int("legs", max_tokens=4)

    state = prog.run(backend=constrained_backend, temperature=0)
    assert re.fullmatch(r"[-+]?[0-9]+", state["legs"]), state["legs"]


def test_dtype_bool_and_float(constrained_backend):
    @sgl.function
    def prog(s):
        s += "Is water wet? " + sgl.gen("wet", dtype=bool, max_tokens=3)
        s += "\nPi is about " + sgl.gen("pi", dtype="float", max_tokens=6)

    state = prog.run(backend=constrained_backend, temperature=0)
    assert state["wet"] in ("True", "False")
    float(state["pi"])


def test_gen_string_is_a_quoted_string(constrained_backend):
    @sgl.function
    def prog(s):
        s += "Name a color: " + sgl.gen_string("color", max_tokens=8)

    state = prog.run(backend=constrained_backend, temperature=0)
    assert re.fullmatch(r"\"[\w\d\s]*\"", state["color"]), state["color"]


def test_regex_gen_matches_the_pattern(constrained_backend):
    @sgl.function
    def prog(s):
        s += "The IP address of the local host is " + sgl.gen(
            "ip", regex=r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)",
            max_tokens=16)

    state = prog.run(backend=constrained_backend, temperature=0)
    assert re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", state["ip"]), state["ip"]


def test_json_schema_gen_parses(constrained_backend):
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                                          "age": {"type": "integer"}},
                         "required": ["name", "age"]})

    @sgl.function
    def prog(s):
        s += "A person as JSON: " + sgl.gen("person", json_schema=schema, max_tokens=32)

    state = prog.run(backend=constrained_backend, temperature=0)
    person = json.loads(state["person"])
    assert set(person) == {"name", "age"}
