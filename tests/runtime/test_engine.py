"""runtime.Engine on the real bundled model: caching, sampling knobs, logprobs, streaming,
threads, bad input. One engine for the module (the model loads once)."""

from __future__ import annotations

import threading

import pytest

from radixlm.runtime import Engine

from_greedy = {"temperature": 0}


@pytest.fixture(scope="module")
def engine():
    with Engine(max_total_tokens=20000) as e:
        yield e


def check_pool(engine):
    engine.call_in_loop(lambda s: s.check_invariant())


def test_shared_400_token_prefix_is_served_from_cache(engine, tokenizer):
    prefix = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(40))
    assert len(tokenizer(prefix).input_ids) >= 400
    first = engine.generate(prefix + " Question one?", {"max_new_tokens": 2, **from_greedy})
    second = engine.generate(prefix + " Question two?", {"max_new_tokens": 2, **from_greedy})
    assert first["meta_info"]["prompt_tokens"] > 400
    assert second["meta_info"]["cached_tokens"] >= 400
    check_pool(engine)


def test_max_new_tokens_zero_prefills_into_the_cache(engine):
    prompt = "A prefill-only request puts its prompt in the radix cache. " * 8
    out = engine.generate(prompt, {"max_new_tokens": 0})
    assert out["text"] == "" and out["output_ids"] == []
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}
    again = engine.generate(prompt + "More", {"max_new_tokens": 1, **from_greedy})
    assert again["meta_info"]["cached_tokens"] >= out["meta_info"]["prompt_tokens"] - 1


def test_stop_string_is_trimmed_and_reported(engine):
    out = engine.generate("1, 2, 3, 4, 5,", {"max_new_tokens": 30, "stop": ["8"], **from_greedy})
    assert out["text"] == " 6, 7, "
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": "8"}


def test_stop_token_id_ends_output_without_its_text(engine, tokenizer):
    comma = tokenizer(",").input_ids[-1]
    out = engine.generate("1, 2, 3, 4, 5,", {"max_new_tokens": 30, "stop_token_ids": [comma], **from_greedy})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": comma}
    assert out["text"] == " 6"


def test_min_new_tokens_holds_back_eos(engine, tokenizer):
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say just: yes"}], tokenize=False, add_generation_prompt=True
    )
    short = engine.generate(chat, {"max_new_tokens": 40, **from_greedy})
    assert short["meta_info"]["finish_reason"]["type"] == "stop"
    n = short["meta_info"]["completion_tokens"] + 5
    longer = engine.generate(chat, {"max_new_tokens": 40, "min_new_tokens": n, **from_greedy})
    assert longer["meta_info"]["completion_tokens"] >= n


def test_same_seed_same_sample_different_seed_differs(engine):
    params = {"max_new_tokens": 16, "temperature": 1.0, "sampling_seed": 1234}
    a = engine.generate("Once upon a time", params)
    b = engine.generate("Once upon a time", params)
    c = engine.generate("Once upon a time", {**params, "sampling_seed": 99})
    assert a["output_ids"] == b["output_ids"]
    assert a["output_ids"] != c["output_ids"]


def test_top_k_one_is_greedy(engine):
    greedy = engine.generate("The sky is", {"max_new_tokens": 8, **from_greedy})
    topk = engine.generate("The sky is", {"max_new_tokens": 8, "temperature": 0.9, "top_k": 1})
    assert greedy["output_ids"] == topk["output_ids"]


def test_logprobs_from_logprob_start_len_with_top_k(engine):
    out = engine.generate(
        "The capital of France is", {"max_new_tokens": 4, **from_greedy},
        return_logprob=True, logprob_start_len=2, top_logprobs_num=3, return_text_in_logprobs=True,
    )
    meta = out["meta_info"]
    prompt_len = meta["prompt_tokens"]
    inp = meta["input_token_logprobs"]
    assert len(inp) == prompt_len - 2
    assert inp[0][0] is None and all(e[0] < 0 for e in inp[1:])
    assert all(isinstance(e[2], str) for e in inp)
    outp = meta["output_token_logprobs"]
    assert [e[1] for e in outp] == out["output_ids"]
    for entry, top in zip(outp, meta["output_top_logprobs"]):
        assert len(top) == 3
        assert top[0][1] == entry[1]  # greedy: the chosen token is the most likely one
        assert top[0][0] >= top[1][0] >= top[2][0]


def test_streaming_gives_cumulative_text_and_incremental_logprobs(engine):
    events = list(engine.generate_stream(
        "Count: one, two,", {"max_new_tokens": 12, **from_greedy}, return_logprob=True
    ))
    final = engine.generate("Count: one, two,", {"max_new_tokens": 12, **from_greedy})
    assert events[-1]["text"] == final["text"]
    texts = [e["text"] for e in events]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    total = sum(len(e["meta_info"]["output_token_logprobs"]) for e in events)
    assert total == events[-1]["meta_info"]["completion_tokens"] == 12


def test_many_threads_submit_concurrently(engine):
    prompts = [f"Item {i}: the color of the sky is" for i in range(12)]
    expected = engine.generate(prompts, {"max_new_tokens": 6, **from_greedy})
    results: dict[int, dict] = {}

    def worker(i):
        results[i] = engine.generate(prompts[i], {"max_new_tokens": 6, **from_greedy})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i]["text"] for i in range(len(prompts))] == [e["text"] for e in expected]
    check_pool(engine)


def test_abandoned_stream_is_aborted_and_frees_memory(engine):
    stream = engine.generate_stream("Write a long story about a cat.", {"max_new_tokens": 200})
    next(stream)
    stream.close()  # the caller walks away mid-generation
    engine.generate("ping", {"max_new_tokens": 1})
    check_pool(engine)
    assert engine.call_in_loop(lambda s: not s.running and not s.waiting)


def test_flush_cache_empties_the_tree(engine):
    engine.generate("Something to cache " * 10, {"max_new_tokens": 1})
    assert engine.flush_cache() is True
    assert engine.call_in_loop(lambda s: s.cache.total_size()) == 0
    check_pool(engine)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -5}, "top_k"),
        ({"max_new_tokens": -3}, "max_new_tokens"),
        ({"min_new_tokens": 5, "max_new_tokens": 2}, "min_new_tokens"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"bogus_key": 1}, "bogus_key"),
        ({"regex": "a", "json_schema": "{}"}, "only one of"),
        ({"stop_token_ids": [10**9]}, "stop_token_ids"),
    ],
)
def test_invalid_sampling_params_raise_naming_the_field(engine, params, needle):
    with pytest.raises(ValueError, match=needle):
        engine.generate("hello", params)


def test_empty_and_overlong_prompts_raise(engine):
    with pytest.raises(ValueError, match="empty"):
        engine.generate("", {"max_new_tokens": 1})
    with pytest.raises(ValueError, match="empty"):
        engine.generate(input_ids=[], sampling_params={"max_new_tokens": 1})
    with pytest.raises(ValueError, match="context length"):
        engine.generate(input_ids=[1] * 9000, sampling_params={"max_new_tokens": 1})
    with pytest.raises(ValueError, match="vocabulary|token ids"):
        engine.generate(input_ids=[10**7], sampling_params={"max_new_tokens": 1})
    # the engine still serves afterwards
    assert engine.generate("ok", {"max_new_tokens": 1})["meta_info"]["completion_tokens"] == 1


def test_unknown_model_path_raises():
    from radixlm.runtime.model.loader import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Engine(model_path="/nonexistent/model")
