"""The structured-output guarantee on the real server (docs/structured-output.md).

Every constraint of structured_cases.py, at temperature 0 and 1 (seeded) and with
max_new_tokens 48 and 160: the answer is a 200 whose text is a full match (the regex
matches it in full; the JSON validates against its schema) with finish_reason `stop`, or a
400 because the budget is below the shortest valid output. Before budget-aware decoding and
end-on-reject, 6-9 of 64 such outputs were cut at max_new_tokens or pushed to run on.
Requests run 16 at a time; the whole module stays near two minutes on this CPU.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from .structured_cases import REGEXES, SCHEMAS

BUDGETS = (48, 160)
TEMPERATURES = (0.0, 1.0)
CONCURRENCY = 16


def _prompt(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def _cases(tokenizer) -> list[tuple[str, dict, str, object]]:
    out = []
    for name, schema in SCHEMAS.items():
        question = f"Answer with a JSON value for: {name}. Schema: {json.dumps(schema)}"
        out.append((f"schema {name}", {"json_schema": json.dumps(schema)}, _prompt(tokenizer, question), schema))
    for name, regex in REGEXES.items():
        out.append((f"regex {name}", {"regex": regex}, _prompt(tokenizer, f"Write one example of: {name}."), regex))
    return out


def _check(name: str, kind_spec, status: int, body: dict) -> str | None:
    """None if the answer keeps the guarantee, else what is wrong with it."""
    if status == 400:
        message = body["error"]["message"]
        return None if "too small for this" in message else f"{name}: 400 {message}"
    if status != 200:
        return f"{name}: HTTP {status} {body}"
    text, reason = body["text"], body["meta_info"]["finish_reason"]
    if reason["type"] != "stop":
        return f"{name}: finish_reason {reason} for {text!r}"
    if isinstance(kind_spec, str):
        return None if re.fullmatch(kind_spec, text) else f"{name}: {text!r} is not a full match"
    try:
        jsonschema.validate(json.loads(text), kind_spec)
    except (json.JSONDecodeError, jsonschema.ValidationError) as e:
        return f"{name}: {text!r} does not validate: {str(e).splitlines()[0]}"
    return None


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_every_constrained_output_is_complete_and_valid(server, tokenizer, temperature):
    jobs = []
    for name, constraint, prompt, spec in _cases(tokenizer):
        for budget in BUDGETS:
            params = {"max_new_tokens": budget, "temperature": temperature, "sampling_seed": 7, **constraint}
            jobs.append((f"{name} @ {budget} tokens, T={temperature}", spec,
                         {"text": prompt, "sampling_params": params}))

    def run(job):
        label, spec, body = job
        resp = server.post("/generate", body)
        return _check(label, spec, resp.status_code, resp.json())

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        problems = [p for p in pool.map(run, jobs) if p is not None]
    assert not problems, "\n".join(problems)


def test_a_budget_below_the_shortest_output_is_a_400_naming_both_numbers(server):
    resp = server.post("/generate", {"text": "JSON:", "sampling_params": {
        "max_new_tokens": 4, "json_schema": json.dumps(SCHEMAS["record of six fields"])}})
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert re.search(r"max_new_tokens=4 is too small for this json_schema: its shortest valid output takes \d+ tokens",
                     message), message


def test_budget_completion_can_be_turned_off_per_request(server, tokenizer):
    """Without it the grammar alone masks: a long string runs into max_new_tokens."""
    prompt = _prompt(tokenizer, "Write a very long essay about the sea as JSON.")
    schema = {"type": "object", "properties": {"essay": {"type": "string"}}, "required": ["essay"]}
    body = {"text": prompt, "sampling_params": {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True,
                                                "json_schema": json.dumps(schema)}}
    on = server.generate(body)
    off = server.generate({**body, "sampling_params": {**body["sampling_params"], "complete_within_budget": False}})
    assert on["meta_info"]["finish_reason"]["type"] == "stop" and json.loads(on["text"])["essay"] is not None
    assert off["meta_info"]["finish_reason"]["type"] == "length"


def test_end_on_reject_ends_a_number_where_the_model_ends_it(server):
    """The model wants ` hours` after `24`; the mask forbids it; without end-on-reject the
    number goes on (SGLang's test_decode_int answered 24000000000...)."""
    body = {"text": "The number of hours in a day is ", "sampling_params": {
        "max_new_tokens": 16, "temperature": 0, "regex": r"[-+]?[0-9]+[ \n]*"}}
    ended = server.generate(body)
    pushed = server.generate({**body, "sampling_params": {**body["sampling_params"], "end_on_reject": False,
                                                          "complete_within_budget": False}})
    assert ended["text"].strip() == "24"
    assert len(pushed["text"]) > len(ended["text"])


def test_greedy_output_is_unchanged_where_end_on_reject_never_triggers(server):
    body = {"text": "Count: one, two,", "sampling_params": {"max_new_tokens": 12, "temperature": 0,
                                                             "regex": "( [a-z]+,){4}"}}
    assert server.generate(body)["text"] == server.generate(
        {**body, "sampling_params": {**body["sampling_params"], "end_on_reject": False}})["text"]
