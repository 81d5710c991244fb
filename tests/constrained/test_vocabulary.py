"""TokenVocab: token bytes equal the tokenizer's own decoding; stops and specials excluded."""

from __future__ import annotations

import random

import pytest

from radixlm.runtime.constrained.vocabulary import (
    END_SENTINEL,
    _sentencepiece_bytes,
    build_token_vocab,
    token_byte_table,
)


def test_token_bytes_match_tokenizer_decode(tokenizer, vocab):
    for token_id in random.Random(0).sample(range(17, len(tokenizer)), 2000):
        data = vocab.token_bytes[token_id]
        if data is None:  # a byte only private-use plane 16 needs (the sentinel's lead byte)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # part of a multi-byte character: decode() shows U+FFFD
            continue
        assert text == tokenizer.decode([token_id]), token_id


def test_partial_utf8_tokens_concatenate_to_the_character(tokenizer, vocab):
    ids = tokenizer.encode("霍格沃茨", add_special_tokens=False)
    assert b"".join(vocab.token_bytes[t] for t in ids).decode() == "霍格沃茨"


def test_space_prefixed_token_is_a_space_byte(tokenizer, vocab):
    (token_id,) = tokenizer.encode(" the", add_special_tokens=False)
    assert vocab.token_bytes[token_id] == b" the"


def test_special_and_stop_tokens_are_never_text(tokenizer, vocab):
    assert all(vocab.token_bytes[i] is None for i in tokenizer.all_special_ids)
    assert vocab.eos_id == 2
    assert vocab.vocabulary.get(b"<|im_end|>") is None


def test_vocab_size_covers_every_token(tokenizer, vocab):
    assert vocab.size == len(tokenizer) == 49152


def test_extra_stop_ids_are_never_text(two_stop_vocab):
    assert two_stop_vocab.stop_ids == (2, 0)
    assert two_stop_vocab.token_bytes[0] is None
    assert two_stop_vocab.sentinel_id not in two_stop_vocab.stop_ids


def test_fingerprint_depends_on_stop_ids(vocab, two_stop_vocab):
    assert two_stop_vocab.fingerprint != vocab.fingerprint


def test_empty_stop_ids_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="stop token"):
        build_token_vocab(tokenizer, ())


@pytest.mark.parametrize("piece, expected", [
    ("<0x0A>", b"\n"), ("<0xE6>", b"\xe6"), ("\u2581hello", b" hello"), ("abc", b"abc"),
])
def test_sentencepiece_byte_fallback_pieces(piece, expected):
    assert _sentencepiece_bytes(piece) == expected


class _FakeSentencePiece:
    """The parts of a Llama-2-style tokenizer the vocabulary reads."""

    all_special_ids = [0, 1, 2]
    added_tokens_decoder: dict = {}

    def get_vocab(self) -> dict[str, int]:
        return {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x20>": 3, "<0xE6>": 4, "\u2581a": 5, "b": 6}


def test_sentencepiece_tokenizer_table():
    table = token_byte_table(_FakeSentencePiece())
    assert table == [None, None, None, b" ", b"\xe6", b" a", b"b"]


def test_no_token_sequence_can_spell_the_end_sentinel(vocab):
    lead = END_SENTINEL.encode()[:1]
    assert all(lead not in data for data in vocab.token_bytes if data is not None)
    assert vocab.vocabulary.get(END_SENTINEL.encode()) == [vocab.sentinel_id]


def test_sentinel_id_is_an_unused_special_id(tokenizer, vocab):
    assert vocab.sentinel_id in tokenizer.all_special_ids
    assert vocab.sentinel_id not in vocab.stop_ids
