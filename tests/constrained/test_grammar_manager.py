"""GrammarManager: compiles in killable worker processes, cache hits, cached failures, the
llguidance fallback for what outlines-core cannot build, time / memory / queue limits."""

from __future__ import annotations

import time

import pytest

from radixlm.runtime.constrained.grammar_manager import GrammarLimits, GrammarManager
from radixlm.runtime.constrained.llguidance_grammar import LLGuidanceMatcher
from radixlm.runtime.constrained.outlines_matcher import OutlinesMatcher
from radixlm.runtime.errors import RequestError

from .conftest import LOGITS_DIM  # noqa: TID252 (pytest importlib mode)

# Its outlines-core DFA has 2^19 states: tens of seconds to build here. llguidance builds
# the same language lazily, in milliseconds.
EXPONENTIAL = "(a|b)*a(a|b){18}"
ESSAY = {"type": "object", "properties": {"essay": {"type": "string", "maxLength": 2000}},
         "required": ["essay"]}


@pytest.fixture
def fresh_manager(vocab, tokenizer):
    """A one-worker manager with its own (empty) cache; shut down after the test."""
    managers = []

    def make(**limits) -> GrammarManager:
        manager = GrammarManager(vocab, LOGITS_DIM, limits=GrammarLimits(**limits), max_workers=1,
                                 tokenizer=tokenizer)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.shutdown()


def _poll_error(manager: GrammarManager, handle) -> RequestError:
    with pytest.raises(RequestError) as info:
        manager.wait(handle)
    return info.value


def test_repeated_spec_hits_the_cache(fresh_manager):
    manager = fresh_manager()
    first = manager.submit("regex", "[0-9]{3}")
    manager.wait(first)
    again = manager.submit("regex", "[0-9]{3}")
    assert not first.cache_hit and again.cache_hit
    assert manager.poll(again) is not None  # ready in the same iteration
    assert (manager.stats.hits, manager.stats.misses) == (1, 1)


def test_each_poll_gives_an_independent_matcher(fresh_manager, tokenizer):
    manager = fresh_manager()
    handle = manager.submit("choices", ["yes", "no"])
    one, two = manager.wait(handle), manager.wait(handle)
    assert one.accept_token(tokenizer.encode("yes", add_special_tokens=False)[0])
    assert two.accepted_ids == []
    assert one.grammar is two.grammar


def test_schema_dict_and_string_share_one_compile(fresh_manager):
    manager = fresh_manager()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    manager.wait(manager.submit("json_schema", schema))
    assert manager.submit("json_schema", '{"type": "object", "properties": {"a": '
                          '{"type": "integer"}}, "required": ["a"]}').cache_hit


def test_whitespace_setting_is_part_of_the_key(vocab):
    compact = GrammarManager(vocab, LOGITS_DIM, max_workers=1)
    spaced = GrammarManager(vocab, LOGITS_DIM, whitespace_pattern=r"[ ]?", max_workers=1)
    try:
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        assert compact._key("json_schema", schema) != spaced._key("json_schema", schema)
        assert compact._key("regex", "a") == spaced._key("regex", "a")
    finally:
        compact.shutdown()
        spaced.shutdown()


@pytest.mark.parametrize("regex, reason", [
    ("(a", "cannot compile regex"),
    ("(?=a)a", "cannot compile regex"),
    (r"\bword", "cannot compile regex"),
])
def test_bad_regex_is_a_400_with_the_reason(regex, reason, fresh_manager):
    manager = fresh_manager()
    error = _poll_error(manager, manager.submit("regex", regex))
    assert error.status == 400 and reason in error.message


def test_anchored_regex_compiles(fresh_manager, tokenizer):
    manager = fresh_manager()
    matcher = manager.wait(manager.submit("regex", "^[0-9]+$"))
    assert matcher.accept_token(tokenizer.encode("7", add_special_tokens=False)[0])
    assert matcher.is_accepting()


def test_failures_are_cached(fresh_manager):
    manager = fresh_manager()
    first = _poll_error(manager, manager.submit("regex", "(a"))
    again = manager.submit("regex", "(a")
    assert again.cache_hit
    with pytest.raises(RequestError) as info:
        manager.poll(again)
    assert info.value.message == first.message
    assert manager.stats.failures == 1


def test_unsupported_schema_is_a_400(fresh_manager):
    manager = fresh_manager()
    error = _poll_error(manager, manager.submit("json_schema", {"type": "frobnicate"}))
    assert error.message.startswith("unsupported json_schema")


@pytest.mark.parametrize(("exact", "matcher_type"), [(False, OutlinesMatcher), (True, LLGuidanceMatcher)])
def test_ebnf_compiles_bounded_on_outlines_or_exactly_on_llguidance(fresh_manager, tokenizer, exact,
                                                                    matcher_type):
    manager = fresh_manager()
    matcher = manager.wait(manager.submit("ebnf", 'root ::= "(" [0-9]+ ")"', exact=exact))
    assert isinstance(matcher, matcher_type)
    for t in tokenizer.encode("(42)", add_special_tokens=False):
        assert matcher.accept_token(t)
    assert matcher.is_accepting()


def test_recursion_past_the_bound_needs_the_exact_grammar(fresh_manager):
    manager = fresh_manager()
    lark = 'start: "a" start | "b"'  # Lark syntax: always compiled as it is
    assert isinstance(manager.wait(manager.submit("ebnf", lark)), LLGuidanceMatcher)


def test_bad_ebnf_is_a_400_with_the_library_message(fresh_manager):
    manager = fresh_manager()
    error = _poll_error(manager, manager.submit("ebnf", "root ::= undefined_rule"))
    assert error.status == 400 and "undefined_rule" in error.message


def test_a_schema_estimated_too_large_for_outlines_goes_to_llguidance(fresh_manager):
    manager = fresh_manager()
    matcher = manager.wait(manager.submit("json_schema", ESSAY))
    assert isinstance(matcher, LLGuidanceMatcher) and manager.stats.fallbacks == 0


def test_an_outlines_build_past_its_time_is_killed_and_retried_on_llguidance(fresh_manager):
    manager = fresh_manager(outlines_timeout_s=0.5)
    started = time.monotonic()
    matcher = manager.wait(manager.submit("regex", EXPONENTIAL))
    assert isinstance(matcher, LLGuidanceMatcher)
    assert manager.stats.fallbacks == 1 and manager.worker_restarts == 1
    assert time.monotonic() - started < 10
    assert isinstance(manager.wait(manager.submit("regex", "[0-9]+")), OutlinesMatcher)  # a fresh worker


def test_an_outlines_build_past_its_memory_is_killed_and_retried_on_llguidance(fresh_manager):
    manager = fresh_manager(memory_limit_bytes=20 << 20)  # the index of this regex alone is 26 MiB
    matcher = manager.wait(manager.submit("regex", '"[^"]{0,100}"'))
    assert isinstance(matcher, LLGuidanceMatcher)
    assert manager.stats.fallbacks == 1 and manager.worker_restarts == 1


def test_a_compile_past_the_whole_timeout_is_a_400(fresh_manager):
    manager = fresh_manager(compile_timeout_s=0.3, outlines_timeout_s=0.3)
    error = _poll_error(manager, manager.submit("regex", EXPONENTIAL))
    assert error.status == 400 and "took longer than" in error.message


def test_oversized_automaton_goes_to_llguidance(fresh_manager):
    manager = fresh_manager(max_grammar_bytes=1024)
    assert isinstance(manager.wait(manager.submit("regex", "[a-z]{1,8}")), LLGuidanceMatcher)
    assert manager.stats.fallbacks == 1


def test_a_compile_queued_past_its_deadline_is_a_503_and_not_cached(fresh_manager):
    manager = fresh_manager(queue_timeout_s=0.3, outlines_timeout_s=5)  # one worker, kept busy
    manager.submit("regex", EXPONENTIAL)
    queued = manager.submit("regex", "queued")
    error = _poll_error(manager, queued)
    assert error.status == 503 and "busy" in error.message
    assert not manager.submit("regex", "queued").cache_hit


def test_cancel_drops_a_compile_nobody_waits_for(fresh_manager):
    manager = fresh_manager(outlines_timeout_s=5)
    manager.submit("regex", EXPONENTIAL)
    queued = manager.submit("regex", "queued")
    manager.cancel(queued)
    assert not manager.submit("regex", "queued").cache_hit


def test_compile_runs_off_the_calling_thread(fresh_manager):
    manager = fresh_manager()
    handle = manager.submit("json_schema", {"type": "object", "properties": {"x": {"type": "string"}}})
    assert manager.poll(handle) is None  # submitted, not compiled inline
    assert manager.wait(handle) is not None


def test_cache_evicts_least_recently_used_beyond_its_byte_budget(fresh_manager):
    manager = fresh_manager(cache_bytes=1)
    first = manager.submit("regex", "[0-9]")
    manager.wait(first)
    manager.wait(manager.submit("regex", "[a-f]"))
    assert not manager.submit("regex", "[0-9]").cache_hit


def test_jump_forward_off_skips_the_char_dfa(vocab):
    manager = GrammarManager(vocab, LOGITS_DIM, jump_forward=False, max_workers=1)
    try:
        matcher = manager.wait(manager.submit("regex", "abc[0-9]"))
        assert matcher.grammar.char_dfa is None and matcher.forced_string() == ""
    finally:
        manager.shutdown()


def test_budget_completion_off_skips_the_distance_table(vocab):
    manager = GrammarManager(vocab, LOGITS_DIM, distances=False, max_workers=1)
    try:
        matcher = manager.wait(manager.submit("regex", "abc[0-9]"))
        assert matcher.grammar.distances is None and matcher.min_tokens_to_end() is None
    finally:
        manager.shutdown()


def test_logits_dim_must_cover_the_vocabulary(vocab):
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        GrammarManager(vocab, 1000)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="compile_timeout_s must be > 0"):
        GrammarLimits(compile_timeout_s=0)
