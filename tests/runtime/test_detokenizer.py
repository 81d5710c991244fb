"""RequestDetokenizer on the real tokenizer: whole characters only, stop strings held back."""

from __future__ import annotations

from radixlm.runtime.output.detokenizer import RequestDetokenizer


def test_multibyte_characters_are_never_split(tokenizer):
    text = "日本語のテキスト 🚀 naïve café"
    ids = tokenizer(text).input_ids
    detok = RequestDetokenizer(tokenizer)
    for t in ids:
        detok.update([t], finished=False)
        assert "\ufffd" not in detok.text
        assert text.startswith(detok.text)
    detok.update([], finished=True)
    assert detok.text == text


def test_partial_stop_string_is_held_back_then_trimmed(tokenizer):
    ids = tokenizer("Hello world. END of text").input_ids
    detok = RequestDetokenizer(tokenizer, stop=["END"])
    shown = []
    for t in ids[:-3]:
        detok.update([t], finished=False)
        shown.append(detok.visible_text(finished=False))
    assert all("E" not in s.split(".")[-1] for s in shown)
    detok.update(ids[-3:], finished=True, matched_stop="END")
    assert detok.visible_text(finished=True) == "Hello world. "


def test_no_stop_trim_keeps_the_stop_string(tokenizer):
    ids = tokenizer("abc STOP").input_ids
    detok = RequestDetokenizer(tokenizer, stop=["STOP"], no_stop_trim=True)
    detok.update(ids, finished=True, matched_stop="STOP")
    assert detok.visible_text(finished=True) == "abc STOP"


def test_stop_token_text_is_dropped(tokenizer):
    ids = tokenizer("one, two").input_ids
    comma = tokenizer(",").input_ids[-1]
    detok = RequestDetokenizer(tokenizer)
    detok.update(ids[:1] + [comma], finished=True, matched_stop=comma)
    assert detok.text == "one"


def test_take_delta_streams_exactly_the_final_text(tokenizer):
    text = "Streaming text, piece by piece: ok."
    ids = tokenizer(text).input_ids
    detok = RequestDetokenizer(tokenizer, stop=["piece:"])
    out = ""
    for t in ids:
        detok.update([t], finished=False)
        out += detok.take_delta(finished=False)
    detok.update([], finished=True, matched_stop=None)
    out += detok.take_delta(finished=True)
    assert out == text
