"""OutlinesMatcher on the real tokenizer: masks allow exactly the valid continuations, and
accept / rollback / copy / termination keep the token and text cursors consistent."""

from __future__ import annotations

import numpy as np
import pytest

from radixlm.runtime.constrained.bitmask import allocate_token_bitmask, unpack_bitmask
from radixlm.runtime.constrained.char_dfa import DEAD, CharDFA
from radixlm.runtime.constrained.constraints import GrammarKey
from radixlm.runtime.constrained.outlines_grammar import compile_outlines_grammar

from .conftest import EOS_ID, LOGITS_DIM  # noqa: TID252 (pytest importlib mode)


def _accept_text(matcher, tokenizer, text: str) -> None:
    for token_id in tokenizer.encode(text, add_special_tokens=False):
        assert matcher.accept_token(token_id), text


def _finite_language_oracle(vocab, language: list[str], prefix: str) -> set[int]:
    """Tokens that keep `prefix` a prefix of some string of a finite language."""
    done = prefix.encode()
    words = [w.encode() for w in language]
    valid = {t for t, data in enumerate(vocab.token_bytes)
             if data is not None and any(w.startswith(done + data) for w in words)}
    return valid | ({EOS_ID} if prefix in language else set())


@pytest.mark.parametrize("choices, prefix", [
    (["yes", "no", "maybe"], ""),
    (["yes", "no", "maybe"], "ma"),
    (["Paris", "Par", "Parma"], "Par"),
    (["霍格沃茨特快列车", "霍比特人比尔博"], ""),
    (["霍格沃茨特快列车", "霍比特人比尔博"], "霍"),
    (["café", "naïve", "東京"], "caf"),
])
def test_choices_mask_is_exactly_the_valid_continuations(choices, prefix, new_matcher, tokenizer,
                                                         vocab, allowed):
    matcher = new_matcher("choices", choices)
    _accept_text(matcher, tokenizer, prefix)
    assert set(allowed(matcher).tolist()) == _finite_language_oracle(vocab, choices, prefix)


def test_finite_regex_mask_is_exactly_the_valid_continuations(new_matcher, tokenizer, vocab,
                                                              allowed):
    language = [f"{a}{n}" for a in ("cat", "dog") for n in ("", "s", "1", "22")]
    matcher = new_matcher("regex", "(cat|dog)(s|1|22)?")
    for prefix in ["", "do", "dog", "dog2"]:
        if prefix:
            matcher = new_matcher("regex", "(cat|dog)(s|1|22)?")
            _accept_text(matcher, tokenizer, prefix)
        assert set(allowed(matcher).tolist()) == _finite_language_oracle(vocab, language, prefix)


def test_a_complete_match_can_continue_one_byte_at_a_time(new_matcher, tokenizer, allowed):
    """outlines-core alone drops such transitions (its DFA reports matches one byte late);
    the end sentinel keeps them."""
    matcher = new_matcher("regex", "dog(s|22)?")
    _accept_text(matcher, tokenizer, "dog")
    two = tokenizer.encode("2", add_special_tokens=False)[0]
    assert two in allowed(matcher)
    assert matcher.accept_token(two) and matcher.accept_token(two)
    assert matcher.is_terminated()


@pytest.mark.parametrize("prefix", ['{"name":"', '{"name":"Al', '{"name":"Al","age":',
                                    '{"name":"Al","age":12'])
def test_json_mask_matches_the_character_dfa(prefix, new_matcher, tokenizer, vocab, allowed):
    """Independent oracle: interegular's DFA of the same regex, over every token whose bytes
    are whole characters (the partial UTF-8 tokens have no text of their own)."""
    schema = {"type": "object", "properties": {"name": {"type": "string"},
              "age": {"type": "integer"}}, "required": ["name", "age"]}
    matcher = new_matcher("json_schema", schema)
    _accept_text(matcher, tokenizer, prefix)
    dfa = CharDFA.from_regex(matcher.grammar.regex)
    state = dfa.walk(dfa.initial, prefix)
    expected, whole_char_tokens = set(), set()
    for token_id, data in enumerate(vocab.token_bytes):
        try:
            text = data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            continue
        if text is not None:
            whole_char_tokens.add(token_id)
            if dfa.walk(state, text) != DEAD:
                expected.add(token_id)
    assert set(allowed(matcher).tolist()) & whole_char_tokens == expected


def test_stop_token_only_where_the_output_may_end(new_matcher, tokenizer, allowed):
    matcher = new_matcher("regex", "[0-9]+")
    assert EOS_ID not in allowed(matcher)
    assert not matcher.accept_token(EOS_ID)
    _accept_text(matcher, tokenizer, "42")
    assert EOS_ID in allowed(matcher)
    assert matcher.accept_token(EOS_ID)
    assert matcher.is_terminated()
    assert not matcher.accept_token(tokenizer.encode("1", add_special_tokens=False)[0])


def test_complete_output_with_no_continuation_terminates_without_eos(new_matcher, tokenizer,
                                                                     allowed):
    matcher = new_matcher("choices", ["yes", "no"])
    _accept_text(matcher, tokenizer, "ye")
    assert not matcher.is_terminated()
    _accept_text(matcher, tokenizer, "s")
    assert matcher.is_terminated()
    assert allowed(matcher).tolist() == [EOS_ID]


def test_refused_token_leaves_the_state_unchanged(new_matcher, tokenizer, allowed):
    matcher = new_matcher("regex", "[0-9]+")
    before = allowed(matcher)
    assert not matcher.accept_token(tokenizer.encode("a", add_special_tokens=False)[0])
    assert np.array_equal(allowed(matcher), before)
    assert matcher.accepted_ids == []


def test_rollback_restores_mask_forced_text_and_termination(new_matcher, tokenizer, allowed):
    matcher = new_matcher("regex", "ab(cd|ef)gh")
    start_mask, start_forced = allowed(matcher), matcher.forced_string()
    _accept_text(matcher, tokenizer, "abcdgh")
    assert matcher.is_terminated()
    matcher.rollback(len(matcher.accepted_ids))
    assert not matcher.is_terminated()
    assert np.array_equal(allowed(matcher), start_mask)
    assert matcher.forced_string() == start_forced == "ab"


def test_rollback_of_a_stop_token_reopens_the_output(new_matcher, tokenizer):
    matcher = new_matcher("regex", "[0-9]+")
    _accept_text(matcher, tokenizer, "7")
    matcher.accept_token(EOS_ID)
    matcher.rollback(1)
    assert not matcher.is_terminated()
    assert matcher.accept_token(tokenizer.encode("8", add_special_tokens=False)[0])


def test_rollback_past_the_start_is_an_error(new_matcher):
    with pytest.raises(ValueError, match="only 0 were accepted"):
        new_matcher("regex", "[0-9]+").rollback(1)


def test_copy_is_independent(new_matcher, tokenizer, allowed):
    matcher = new_matcher("choices", ["alpha", "beta"])
    _accept_text(matcher, tokenizer, "al")
    twin = matcher.copy()
    assert np.array_equal(allowed(twin), allowed(matcher))
    _accept_text(twin, tokenizer, "pha")
    assert twin.is_terminated() and not matcher.is_terminated()
    assert matcher.forced_string() == "pha"


def test_forced_string_waits_for_a_whole_character(new_matcher, tokenizer, vocab):
    """Inside a multi-byte character nothing is forced; once it is complete the rest is."""
    matcher = new_matcher("regex", "霍格沃茨特快列车|霍比特人比尔博")
    ids = tokenizer.encode("霍比", add_special_tokens=False)
    partial = [t for t in ids if _is_partial(vocab.token_bytes[t])]
    assert partial, "the tokenizer splits these characters into byte tokens"
    for token_id in ids:
        assert matcher.accept_token(token_id)
        if matcher._pending:
            assert matcher.forced_string() == ""
    assert matcher.forced_string() == "特人比尔博"


def _is_partial(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_bitmask_wider_than_the_vocabulary_keeps_high_ids_clear(new_matcher, tokenizer):
    """Sized from a padded logits dim (Qwen2-style): words past the vocabulary stay zero and
    the eos bit survives."""
    matcher = new_matcher("regex", "[0-9]+")
    _accept_text(matcher, tokenizer, "1")
    buf = allocate_token_bitmask(2, LOGITS_DIM + 4096)
    matcher.fill_bitmask(buf, 1)
    allowed_row = unpack_bitmask(buf, LOGITS_DIM + 4096)[1]
    assert allowed_row[EOS_ID] and not allowed_row[LOGITS_DIM:].any()
    assert unpack_bitmask(buf, LOGITS_DIM)[0].all()  # the other row is untouched


def test_extra_stop_ids_end_the_output_like_eos(two_stop_vocab, tokenizer):
    key = GrammarKey("regex", "[0-9]+", None, two_stop_vocab.fingerprint)
    grammar = compile_outlines_grammar(key, two_stop_vocab)
    matcher = grammar.new_matcher()
    buf = allocate_token_bitmask(1, LOGITS_DIM)
    matcher.fill_bitmask(buf, 0)
    assert not unpack_bitmask(buf, LOGITS_DIM)[0, 0]
    assert not matcher.accept_token(0)
    _accept_text(matcher, tokenizer, "5")
    matcher.fill_bitmask(buf, 0)
    assert unpack_bitmask(buf, LOGITS_DIM)[0, [0, EOS_ID]].all()
    assert matcher.accept_token(0) and matcher.is_terminated()


def test_text_outside_the_char_dfa_only_stops_jumping(new_matcher, tokenizer):
    """Rust's `\\d` takes an Arabic-Indic digit that interegular's ASCII `\\d` refuses: the
    char DFA gives up (no forced text), the token mask keeps working."""
    matcher = new_matcher("regex", r"\d{2}abc")
    _accept_text(matcher, tokenizer, "٣")
    _accept_text(matcher, tokenizer, "4")
    assert matcher.forced_string() == ""
    _accept_text(matcher, tokenizer, "abc")
    assert matcher.is_terminated()


def test_forced_text_after_ascii_digits(new_matcher, tokenizer):
    matcher = new_matcher("regex", r"\d{2}abc")
    _accept_text(matcher, tokenizer, "3")
    _accept_text(matcher, tokenizer, "4")
    assert matcher.forced_string() == "abc"
