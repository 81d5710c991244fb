"""The soak's judges judged: each check rejects what it is meant to catch (no server)."""

from __future__ import annotations

import json

from .checks import greedy_mismatches, percentile, problems
from .client import DISCONNECTED, Outcome
from .rss import RssSample, RssTolerance, judge_rss
from .workload import CHAT, JSON_SCHEMA, NATIVE, REGEX, Mix, Plan, Prompt, Workload


def native_outcome(text: str, reason: dict, n_tokens: int = 2, **plan_kw) -> Outcome:
    plan = Plan(NATIVE, False, Prompt("", "q"), plan_kw.pop("max_new_tokens", 8), **plan_kw)
    body = {"text": text, "output_ids": list(range(n_tokens)),
            "meta_info": {"finish_reason": reason, "completion_tokens": n_tokens}}
    return Outcome(plan, body=body)


def test_a_well_formed_answer_has_no_problems():
    assert problems(native_outcome(" cold", {"type": "stop", "matched": "\n"}, greedy=True,
                                   stop=["\n"])) == []


def test_stop_strings_abort_and_length_are_judged():
    stop = {"type": "stop", "matched": "\n"}
    assert problems(native_outcome(" cold\nhot", stop, greedy=True, stop=["\n"]))
    # SGLang order: the last allowed token may complete a stop string, untrimmed.
    assert not problems(native_outcome(" cold\n", {"type": "length"}, 8, greedy=True, stop=["\n"]))
    assert not problems(native_outcome(" a.\n\n", {"type": "length"}, 8, greedy=True, stop=["\n"]))
    early = " a\n" + "b" * 20 + "\n"  # a stop string well before the last token
    assert problems(native_outcome(early, {"type": "length"}, 8, greedy=True, stop=["\n"]))
    assert problems(native_outcome(" cold", {"type": "length"}, 3, greedy=True))  # < max_new_tokens
    assert problems(native_outcome(" cold", {"type": "abort"}, greedy=True))


def test_constrained_answers_are_validated():
    stop = {"type": "stop", "matched": None}
    regex = {"greedy": False, "constraint": ("regex", REGEX), "max_new_tokens": 48}
    assert not problems(native_outcome("yes, because.", stop, **regex))
    assert problems(native_outcome("maybe", stop, **regex))
    schema = {"greedy": False, "constraint": ("json_schema", JSON_SCHEMA), "max_new_tokens": 48}
    good = json.dumps({"name": "Ann", "level": "low", "member": True})
    assert not problems(native_outcome(good, stop, **schema))
    assert problems(native_outcome(good.replace("low", "top"), stop, **schema))
    assert problems(native_outcome(good[:-1], {"type": "length"}, 48, **schema))


def test_streams_must_be_cumulative_and_finish_once():
    plan = Plan(NATIVE, True, Prompt("", "q"), 8, greedy=False)

    def event(text: str, reason: dict | None) -> dict:
        return {"text": text, "output_ids": [0] * len(text),
                "meta_info": {"finish_reason": reason, "completion_tokens": len(text)}}

    assert not problems(Outcome(plan, events=[event("a", None), event("ab", {"type": "stop"})]))
    assert problems(Outcome(plan, events=[event("a", None), event("b", {"type": "stop"})]))
    chat = Plan(CHAT, True, Prompt("", "q"), 8, greedy=False)
    chunk = {"object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
    assert problems(Outcome(chat, events=[chunk]))  # no finish_reason at all


def test_greedy_answers_are_compared_with_the_single_request_answer():
    out = native_outcome(" cold", {"type": "stop"}, greedy=True)
    assert greedy_mismatches([out], {out.plan.greedy_key: " cold"}) == []
    assert greedy_mismatches([out], {out.plan.greedy_key: " warm"})
    out.status = DISCONNECTED  # not a complete answer: not compared
    assert greedy_mismatches([out], {out.plan.greedy_key: " warm"}) == []


def test_rss_growth_after_warm_up_fails_and_a_plateau_passes():
    samples = [RssSample(t, {"p": 100 + min(t, 10) * 10}) for t in range(30)]  # plateau 200
    tol = RssTolerance(rel=0.05, abs_mb=10)
    assert judge_rss(samples, (0, 12), RssSample(30, {"p": 205}), tol)[0].ok
    assert not judge_rss(samples, (0, 12), RssSample(30, {"p": 260}), tol)[0].ok


def test_the_first_plans_cover_the_whole_mix():
    w = Workload(Mix(greedy_pool=5), seed=1)
    first = [w.next() for _ in range(11)]
    assert {(p.api, p.stream) for p in first} >= {(a, s) for a in (NATIVE, CHAT, "completions")
                                                  for s in (False, True)}
    assert {p.constraint[0] for p in first if p.constraint} == {"regex", "json_schema", "choices"}
    assert {p.behaviour for p in first} == {"stay", "leave_stream", "timeout"}
    assert {p.constraint[0] for p in w.greedy_plans() if p.constraint} == {"regex", "json_schema",
                                                                          "choices"}


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([3.0], 50) == 3.0
    assert percentile([], 50) == 0.0
