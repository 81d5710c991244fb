"""Constrained decoding through runtime.Engine on the real bundled model.

Every constraint of test_random_walk (32 JSON schemas, 32 regexes) is decoded by the real
model in one batch, at temperature 0 and 1, with jump-forward on (the default) and off:
every output that finished (reason stop) validates; an output cut by max_new_tokens
(reason length) may be incomplete, as documented.
"""

from __future__ import annotations

import dataclasses
import json
import re

import jsonschema
import pytest

from radixlm.runtime import Engine

from .test_random_walk import REGEXES, SCHEMAS  # noqa: TID252 (pytest importlib mode)

MAX_NEW = 80


def cases(tokenizer) -> list[tuple[str, object, str]]:
    def chat(q):
        return tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True)

    out = [("json_schema", s, chat(f"Produce a JSON value for the '{name}' record.")) for name, s in SCHEMAS.items()]
    out += [("regex", r, chat(f"Write an example of {name}.")) for name, r in REGEXES.items()]
    return out


def run_all(engine, tokenizer, temperature: float) -> list[tuple[str, object, dict]]:
    cs = cases(tokenizer)
    params = [{"max_new_tokens": MAX_NEW, "temperature": temperature, "sampling_seed": i,
               kind: json.dumps(spec) if kind == "json_schema" else spec}
              for i, (kind, spec, _) in enumerate(cs)]
    outs = engine.generate([p for _, _, p in cs], params)
    return [(kind, spec, out) for (kind, spec, _), out in zip(cs, outs)]


def assert_valid(results) -> int:
    finished = 0
    for kind, spec, out in results:
        reason = out["meta_info"]["finish_reason"]["type"]
        assert reason in ("stop", "length"), out
        if reason != "stop":
            continue
        finished += 1
        if kind == "json_schema":
            jsonschema.validate(json.loads(out["text"]), spec)
        else:
            assert re.fullmatch(spec, out["text"]), (spec, out["text"])
    return finished


@pytest.fixture(scope="module")
def engine():
    with Engine(max_total_tokens=30000) as e:
        yield e


def _stats(engine) -> tuple[int, int, int]:
    return engine.call_in_loop(lambda s: (s.stats.jumped_tokens, s.stats.draft_tokens_accepted,
                                          s.stats.draft_tokens_rejected))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_finished_output_validates_with_jump_forward(engine, tokenizer, temperature):
    before = _stats(engine)
    results = run_all(engine, tokenizer, temperature)
    # not vacuous: a small model at temperature 0 can loop until max_new_tokens, but most finish
    assert assert_valid(results) >= len(results) // 2
    jumped, accepted, rejected = (a - b for a, b in zip(_stats(engine), before))
    assert jumped > 0 and accepted > 0  # forced text jumped, back-off tokens verified
    if temperature > 0:
        assert rejected > 0  # sampled rows also redraw in place of a draft (KV slot given back)
    engine.call_in_loop(lambda s: s.check_invariant())


def test_drafts_change_no_greedy_output(engine, tokenizer):
    """Running jump-forward's back-off token speculatively saves forward passes and, under
    greedy decoding, gives exactly the outputs of sampling it in a pass of its own."""
    cs = cases(tokenizer)[::4]
    prompts = [p for _, _, p in cs]
    params = [{"max_new_tokens": MAX_NEW, "temperature": 0,
               kind: json.dumps(spec) if kind == "json_schema" else spec} for kind, spec, _ in cs]

    def run(drafts: bool) -> tuple[list[str], int]:
        """(texts, sampling passes: tokens neither jumped nor verified as a draft)."""
        engine.call_in_loop(lambda s: setattr(s, "cfg", dataclasses.replace(s.cfg, jump_forward_drafts=drafts)))
        engine.flush_cache()
        jumped, accepted, _ = _stats(engine)
        outs = engine.generate(prompts, params)
        jumped_after, accepted_after, _ = _stats(engine)
        tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
        return [o["text"] for o in outs], tokens - (jumped_after - jumped) - (accepted_after - accepted)

    try:
        (plain, plain_passes), (drafted, drafted_passes) = run(False), run(True)
    finally:
        engine.call_in_loop(lambda s: setattr(s, "cfg", dataclasses.replace(s.cfg, jump_forward_drafts=True)))
    assert drafted == plain
    assert drafted_passes < plain_passes


def test_every_finished_output_validates_without_jump_forward(tokenizer):
    with Engine(max_total_tokens=30000, disable_jump_forward=True) as e:
        results = run_all(e, tokenizer, 0.0)
        assert e.call_in_loop(lambda s: s.stats.jumped_tokens) == 0
    assert assert_valid(results) >= len(results) // 2


def test_jump_forward_keeps_the_forced_text_exact(engine, tokenizer):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
              "city": {"enum": ["Paris", "London"]}}, "required": ["name", "city"]}
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Alice lives in Paris. JSON please."}], tokenize=False,
        add_generation_prompt=True)
    out = engine.generate(prompt, {"max_new_tokens": 40, "temperature": 0, "json_schema": json.dumps(schema)})
    assert out["text"].startswith('{"name":"')
    assert re.search(r'","city":"(Paris|London)"}$', out["text"])
    # the text is exactly the decoded ids: nothing dropped or duplicated around the jumps
    assert tokenizer.decode(out["output_ids"], skip_special_tokens=True) == out["text"]


def test_text_forced_before_the_first_sample_is_jumped_at_admission(engine):
    """`Answer: ` is forced before anything is sampled: it joins the prompt's prefill (its
    tokens carry no logprob: none was sampled) and streams out in the first event."""
    regex = "Answer: (yes|no)"
    params = {"max_new_tokens": 10, "temperature": 0, "regex": regex}
    out = engine.generate("Is the sky blue?", params, return_logprob=True)
    assert re.fullmatch(regex, out["text"]), out["text"]
    logprobs = [lp for lp, *_ in out["meta_info"]["output_token_logprobs"]]
    assert logprobs[0] is None and logprobs[-1] is not None  # jumped first, sampled last
    first = next(iter(engine.generate_stream("Is the sky blue?", params)))
    assert first["text"].startswith("Answer:")


def test_drafts_at_every_chunk_boundary_of_a_chunked_prefill():
    """A prefill split into chunks keeps the draft together with the position before it,
    whatever the prompt length (16 consecutive lengths cover every remainder mod 16)."""
    regex = "Answer: (yes|no)"
    with Engine(max_total_tokens=4000, chunked_prefill_size=16) as e:
        for n in range(30, 46):
            e.flush_cache()  # each prompt computed from scratch, not from the previous one's prefix
            out = e.generate("word " * n, {"max_new_tokens": 8, "temperature": 0, "regex": regex})
            assert re.fullmatch(regex, out["text"]), (n, out["text"])
        assert e.call_in_loop(lambda s: s.stats.draft_tokens_accepted) > 0
        e.call_in_loop(lambda s: s.check_invariant())


def test_unicode_alternatives_sharing_a_first_character(engine):
    regex = "霍格沃茨特快列车|霍比特人比尔博"
    for temperature in (0.0, 1.0):
        out = engine.generate("Name a famous train or hobbit:", {
            "max_new_tokens": 30, "temperature": temperature, "regex": regex, "sampling_seed": 3})
        assert re.fullmatch(regex, out["text"]), out["text"]


def test_non_ascii_enum_values(engine):
    schema = {"type": "object", "properties": {"ville": {"enum": ["東京", "café", "naïve"]}}, "required": ["ville"]}
    out = engine.generate("Pick a word:", {"max_new_tokens": 30, "temperature": 1.0, "sampling_seed": 5,
                                          "json_schema": json.dumps(schema)})
    jsonschema.validate(json.loads(out["text"]), schema)


@pytest.mark.parametrize(("params", "needle"), [
    ({"regex": "(unclosed"}, "regex"),
    ({"json_schema": "{not json"}, "json"),
    ({"regex": "a", "json_schema": "{}"}, "only one of"),
    ({"ebnf": "root ::= 'a'"}, "ebnf"),
])
def test_bad_constraints_raise_and_the_engine_keeps_serving(engine, params, needle):
    with pytest.raises(ValueError, match=needle):
        engine.generate("hello", {"max_new_tokens": 4, **params})
    assert engine.generate("ok", {"max_new_tokens": 1})["meta_info"]["completion_tokens"] == 1
    engine.call_in_loop(lambda s: s.check_invariant())


def test_schema_over_the_compile_cap_fails_only_its_own_request(tokenizer):
    # {"type": "object"} with arbitrary properties takes seconds to compile: over a 0.2 s cap.
    with Engine(max_total_tokens=4000, grammar_compile_timeout=0.2) as e:
        with pytest.raises(ValueError, match="longer than"):
            e.generate("x", {"max_new_tokens": 8, "json_schema": '{"type": "object"}'})
        # the engine keeps serving (the abandoned compile may still hold a worker thread, so
        # the next request is unconstrained: its latency must not depend on that thread)
        out = e.generate("ok", {"max_new_tokens": 2})
        assert out["meta_info"]["completion_tokens"] == 2
        e.call_in_loop(lambda s: s.check_invariant())


def test_outputs_name_the_positions_of_jumped_tokens(engine):
    """`meta_info.jump_forward_positions` lists exactly the output tokens jump-forward
    appended: those whose logprob is null (nothing sampled them). Stream events carry only
    the positions new in each event, like the logprob lists."""
    params = {"max_new_tokens": 12, "temperature": 0, "regex": "Answer: (yes|no)\\. Sure\\."}
    out = engine.generate("Is the sky blue?", params, return_logprob=True)
    meta = out["meta_info"]
    unsampled = [i for i, (lp, *_) in enumerate(meta["output_token_logprobs"]) if lp is None]
    assert meta["jump_forward_positions"] == unsampled and len(unsampled) >= 2
    assert meta["jump_forward_tokens"] == len(unsampled)
    events = list(engine.generate_stream("Is the sky blue?", params, return_logprob=True))
    assert [p for e in events for p in e["meta_info"]["jump_forward_positions"]] == unsampled
    assert events[-1]["meta_info"]["jump_forward_tokens"] == len(unsampled)
