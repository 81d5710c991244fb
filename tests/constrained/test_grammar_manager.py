"""GrammarManager: background compiles, cache hits, cached failures, time and size caps."""

from __future__ import annotations

import time

import pytest

from radixlm.runtime.constrained import grammar_manager as gm
from radixlm.runtime.constrained.grammar_manager import GrammarLimits, GrammarManager

from .conftest import LOGITS_DIM  # noqa: TID252 (pytest importlib mode)


@pytest.fixture
def fresh_manager(vocab):
    """A one-worker manager with its own (empty) cache; shut down after the test."""
    managers = []

    def make(**limits) -> GrammarManager:
        manager = GrammarManager(vocab, LOGITS_DIM, limits=GrammarLimits(**limits), max_workers=1)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.shutdown()


def _poll_error(manager: GrammarManager, handle) -> str:
    with pytest.raises(ValueError) as info:
        manager.wait(handle)
    return str(info.value)


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
    compact = GrammarManager(vocab, LOGITS_DIM)
    spaced = GrammarManager(vocab, LOGITS_DIM, whitespace_pattern=r"[ ]?")
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
def test_bad_regex_is_a_value_error_with_the_reason(regex, reason, fresh_manager):
    manager = fresh_manager()
    assert reason in _poll_error(manager, manager.submit("regex", regex))


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
    with pytest.raises(ValueError) as info:
        manager.poll(again)
    assert str(info.value) == first
    assert manager.stats.failures == 1


def test_unsupported_schema_is_a_value_error(fresh_manager):
    manager = fresh_manager()
    error = _poll_error(manager, manager.submit("json_schema", {"type": "frobnicate"}))
    assert error.startswith("unsupported json_schema")


def test_malformed_spec_fails_at_poll(fresh_manager):
    manager = fresh_manager()
    handle = manager.submit("ebnf", "root ::= 'a'")
    with pytest.raises(ValueError, match="unknown constraint kind"):
        manager.poll(handle)


def test_slow_compile_is_a_timeout_error(fresh_manager):
    manager = fresh_manager(compile_timeout_s=0.001)
    error = _poll_error(manager, manager.submit("regex", "[a-z]+@[a-z]+"))
    assert error == "grammar took longer than 0.001 s to compile"
    assert manager.submit("regex", "[a-z]+@[a-z]+").cache_hit  # cached as a failure


def test_running_compile_times_out_while_polled(fresh_manager, monkeypatch):
    """A compile still running past the limit fails at once; its late result is ignored."""
    monkeypatch.setattr(gm, "compile_outlines_grammar", _sleeping_compile(0.5))
    manager = fresh_manager(compile_timeout_s=0.1)
    handle = manager.submit("regex", "x")
    started = time.monotonic()
    error = _poll_error(manager, handle)
    assert "took longer than 0.1 s" in error and time.monotonic() - started < 0.4


def test_queued_compile_reports_a_busy_compiler_and_is_not_cached(fresh_manager, monkeypatch):
    monkeypatch.setattr(gm, "compile_outlines_grammar", _sleeping_compile(0.5))
    manager = fresh_manager(compile_timeout_s=0.2)  # one worker
    manager.submit("regex", "slow")
    queued = manager.submit("regex", "queued")
    assert "busy" in _poll_error(manager, queued)
    assert not manager.submit("regex", "queued").cache_hit


def test_cancel_drops_a_compile_nobody_waits_for(fresh_manager, monkeypatch):
    monkeypatch.setattr(gm, "compile_outlines_grammar", _sleeping_compile(0.3))
    manager = fresh_manager()
    manager.submit("regex", "busy")
    queued = manager.submit("regex", "queued")
    manager.cancel(queued)
    assert not manager.submit("regex", "queued").cache_hit


def test_compile_runs_off_the_calling_thread(fresh_manager, monkeypatch):
    monkeypatch.setattr(gm, "compile_outlines_grammar", _sleeping_compile(0.2))
    manager = fresh_manager()
    handle = manager.submit("regex", "x")
    assert manager.poll(handle) is None
    assert manager.wait(handle) is not None


def test_oversized_automaton_is_refused(fresh_manager):
    manager = fresh_manager(max_grammar_bytes=1024)
    assert "too complex" in _poll_error(manager, manager.submit("regex", "[a-z]{1,8}"))


def test_overlong_regex_is_refused(fresh_manager):
    manager = fresh_manager(max_regex_chars=10)
    assert "too large" in _poll_error(manager, manager.submit("choices", ["alpha", "beta"]))


def test_cache_evicts_least_recently_used_beyond_its_byte_budget(fresh_manager):
    manager = fresh_manager(cache_bytes=1)
    first = manager.submit("regex", "[0-9]")
    manager.wait(first)
    manager.wait(manager.submit("regex", "[a-f]"))
    assert not manager.submit("regex", "[0-9]").cache_hit


def test_jump_forward_off_skips_the_char_dfa(vocab):
    manager = GrammarManager(vocab, LOGITS_DIM, jump_forward=False)
    try:
        matcher = manager.wait(manager.submit("regex", "abc[0-9]"))
        assert matcher.grammar.char_dfa is None and matcher.forced_string() == ""
    finally:
        manager.shutdown()


def test_logits_dim_must_cover_the_vocabulary(vocab):
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        GrammarManager(vocab, 1000)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="compile_timeout_s must be > 0"):
        GrammarLimits(compile_timeout_s=0)


def _sleeping_compile(seconds: float):
    """A stand-in for compile_outlines_grammar that takes `seconds`."""
    real = gm.compile_outlines_grammar

    def compile_slowly(key, regex, vocab, max_bytes, jump_forward):
        time.sleep(seconds)
        return real(key, "a", vocab, max_bytes, jump_forward)

    return compile_slowly
