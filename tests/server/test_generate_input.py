"""Parsing of /generate bodies into per-sample specs (no server needed)."""

from __future__ import annotations

import pytest

from radixlm.runtime.http.generate_input import parse_generate


def test_single_text_is_not_a_batch():
    batch = parse_generate({"text": "hi", "sampling_params": {"max_new_tokens": 3}})
    assert not batch.is_batch and not batch.stream
    assert [s.text for s in batch.specs] == ["hi"] and batch.specs[0].params.max_new_tokens == 3


def test_n_expands_prompt_major_with_suffixed_rids():
    batch = parse_generate({"text": ["a", "b"], "rid": ["x", "y"], "sampling_params": {"n": 2}})
    assert batch.is_batch
    assert [(s.text, s.rid) for s in batch.specs] == [("a", "x_0"), ("a", "x_1"), ("b", "y_0"), ("b", "y_1")]
    assert all(s.params.n == 1 for s in batch.specs)


def test_per_item_fields_may_be_lists():
    batch = parse_generate({"input_ids": [[1, 2], [3]], "return_logprob": [True, False],
                            "sampling_params": [{"max_new_tokens": 1}, {"max_new_tokens": 2}]})
    assert [s.return_logprob for s in batch.specs] == [True, False]
    assert [s.params.max_new_tokens for s in batch.specs] == [1, 2]


def test_sglang_fields_sent_empty_are_accepted():
    """SGLang's frontend sends e.g. `"session_id": null`; empty values of its other fields pass."""
    body = {"text": "hi", "image_data": None, "lora_path": None, "session_id": None, "modalities": [],
            "return_hidden_states": False, "log_metrics": True}
    assert parse_generate(body).specs


def test_unknown_top_level_key_is_an_error_listing_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown field 'sampling_param'.*sampling_params"):
        parse_generate({"text": "hi", "sampling_param": {"max_new_tokens": 1}})


def test_unsupported_sglang_field_with_a_value_is_an_error():
    with pytest.raises(ValueError, match="return_hidden_states is not supported"):
        parse_generate({"text": "hi", "return_hidden_states": True})


@pytest.mark.parametrize("body, names", [
    ({}, "Either text, input_ids"),
    ({"text": "a", "input_ids": [1]}, "Either text, input_ids"),
    ({"input_ids": []}, "input_ids"),
    ({"text": ["a"], "sampling_params": [{}, {}]}, "sampling_params has 2 entries"),
    ({"text": "a", "sampling_params": {"bogus": 1}}, "bogus"),
    ({"text": "a", "stream": "yes"}, "stream"),
])
def test_bad_bodies_name_the_problem(body, names):
    with pytest.raises(ValueError, match=names):
        parse_generate(body)


def test_n_samples_get_seeds_of_their_own_and_the_first_keeps_the_seed():
    """Issue 22: one seed for n samples gave n identical samples. Choice i uses a seed derived
    from (seed, i) by a fixed hash, so it is the same on every run and machine."""
    batch = parse_generate({"text": ["a", "b"], "sampling_params": {"n": 3, "sampling_seed": 7}})
    seeds = [s.params.sampling_seed for s in batch.specs]
    assert seeds == [7, 5553609203046970859, 1207089879192185173] * 2


def test_n_samples_without_a_seed_stay_unseeded():
    batch = parse_generate({"text": "a", "sampling_params": {"n": 2}})
    assert [s.params.sampling_seed for s in batch.specs] == [None, None]


def test_an_integral_float_is_refused_saying_to_send_the_integer():
    with pytest.raises(ValueError, match=r"^max_new_tokens must be an integer literal \(got 5.0\); send 5$"):
        parse_generate({"text": "a", "sampling_params": {"max_new_tokens": 5.0}})
