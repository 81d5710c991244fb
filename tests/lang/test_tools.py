"""Tools in the DSL: schemas from functions and pydantic models, validated calls on the real
model, and the agent example (examples/tool_agent.py) run end to end with bounded steps."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Literal

import jsonschema
import pydantic
import pytest

import radixlm.lang as rl
from radixlm.lang.tools import ToolCall, openai_tool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def forecast(city: str, days: int = 1, unit: Literal["c", "f"] = "c", hourly: bool = False) -> str:
    """Weather forecast for a city."""
    return f"{city}: sunny"


class Booking(pydantic.BaseModel):
    """Book a table."""

    restaurant: str
    guests: int


def test_a_function_becomes_its_signature_schema():
    fn = openai_tool(forecast)["function"]
    assert fn["name"] == "forecast" and fn["description"] == "Weather forecast for a city."
    assert fn["parameters"] == {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]},
        "hourly": {"type": "boolean"}}}


def test_a_pydantic_model_becomes_its_schema():
    fn = openai_tool(Booking)["function"]
    assert fn["name"] == "Booking" and set(fn["parameters"]["required"]) == {"restaurant", "guests"}


def test_tool_call_text_parses_to_name_and_arguments():
    call = ToolCall('<tool_call>{"name":"forecast","arguments":{"city":"Oslo"}}</tool_call>')
    assert call.is_call and call.name == "forecast" and call.arguments == {"city": "Oslo"}
    assert isinstance(call, str) and not ToolCall("just text").is_call


@pytest.mark.parametrize("choice", ["required", "forecast", forecast])
def test_a_tools_gen_writes_a_valid_call(backend, choice):
    @rl.function
    def ask(s):
        s += rl.system(rl.describe_tools([forecast, Booking]))
        s += rl.user("What will the weather be in Oslo?")
        s += rl.assistant(rl.gen("call", tools=[forecast, Booking], tool_choice=choice, max_tokens=48))

    call = ask.run(backend=backend, temperature=0)["call"]
    assert call.name in ("forecast", "Booking") and (choice == "required" or call.name == "forecast")
    schema = openai_tool(forecast if call.name == "forecast" else Booking)["function"]["parameters"]
    jsonschema.validate(call.arguments, schema)
    if call.name == "forecast":
        inspect.signature(forecast).bind(**call.arguments)


def _example():
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("tool_agent", EXAMPLES / "tool_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agent_example_runs_its_loop(backend):
    example = _example()
    rl.set_default_backend(backend)
    result = example.run("What is 12 times 7 plus 5?")
    assert 1 <= len(result["calls"]) <= example.MAX_STEPS
    for name, arguments in result["calls"]:
        assert name in example.TOOLS
        inspect.signature(example.TOOLS[name]).bind(**arguments)
    assert isinstance(result["answer"], str)
