"""SGLang-native endpoints (docs/wire-protocol.md Part B) against the real server."""

from __future__ import annotations

import json

import requests

GREEDY = {"max_new_tokens": 4, "temperature": 0}
LONG_PREFIX = "You are a careful assistant. " * 10


def read_sse(resp: requests.Response) -> list:
    events = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            data = line[len(b"data: "):]
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


def test_generate_returns_the_completion_only(server):
    out = server.generate({"text": "The capital of France is", "sampling_params": GREEDY})
    assert out["text"].strip().startswith("Paris")
    meta = out["meta_info"]
    assert meta["prompt_tokens"] == 5 and meta["completion_tokens"] == 4
    assert meta["finish_reason"] == {"type": "length", "length": 4}
    assert len(out["output_ids"]) == 4 and isinstance(meta["id"], str)


def test_generate_batch_returns_a_list_in_input_order(server):
    prompts = ["The capital of France is", "1, 2, 3,"]
    singles = [server.generate({"text": p, "sampling_params": GREEDY})["text"] for p in prompts]
    batch = server.generate({"text": prompts, "sampling_params": GREEDY})
    assert [b["text"] for b in batch] == singles


def test_generate_accepts_2d_input_ids(server):
    ids = server.post("/encode", {"text": ["Hello there", "1, 2, 3,"]}).json()["input_ids"]
    batch = server.generate({"input_ids": ids, "sampling_params": GREEDY})
    assert [b["meta_info"]["prompt_tokens"] for b in batch] == [len(x) for x in ids]


def test_n_expands_each_prompt_into_samples(server):
    out = server.generate({"text": "Once upon a time", "sampling_params": {"max_new_tokens": 2, "n": 3}})
    assert isinstance(out, list) and len(out) == 3
    assert len({o["meta_info"]["id"] for o in out}) == 3


def test_stream_has_cumulative_text_incremental_logprobs_and_done(server):
    body = {"text": "Count: 1, 2,", "stream": True, "return_logprob": True, "sampling_params": GREEDY}
    with server.post("/generate", body, stream=True) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = read_sse(resp)
    assert events[-1] == "[DONE]"
    events = events[:-1]
    final = server.generate({"text": "Count: 1, 2,", "sampling_params": GREEDY})
    assert events[-1]["text"] == final["text"]
    grown = 0
    for prev, ev in zip([{"text": ""}] + events, events, strict=False):
        assert ev["text"].startswith(prev["text"])  # cumulative
        meta = ev["meta_info"]
        assert len(meta["output_token_logprobs"]) == meta["completion_tokens"] - grown  # incremental
        assert meta["output_token_logprobs_length"] == meta["completion_tokens"]  # cumulative
        grown = meta["completion_tokens"]
    assert [e["meta_info"]["finish_reason"] for e in events[:-1]] == [None] * (len(events) - 1)


def test_max_new_tokens_zero_is_prefill_only(server):
    out = server.generate({"text": "Prefill me please", "sampling_params": {"max_new_tokens": 0}})
    assert out["text"] == "" and out["output_ids"] == []
    assert out["meta_info"]["completion_tokens"] == 0
    assert out["meta_info"]["prompt_tokens"] == len(server.post("/encode", {"text": "Prefill me please"}).json()["input_ids"])


def test_prompt_logprobs_start_at_logprob_start_len_with_a_null_first_entry(server):
    text = "The quick brown fox jumps"
    n = len(server.post("/encode", {"text": text}).json()["input_ids"])
    out = server.generate({"text": text, "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                           "return_logprob": True, "logprob_start_len": 1, "return_text_in_logprobs": True})
    entries = out["meta_info"]["input_token_logprobs"]
    assert len(entries) == n - 1
    assert entries[0][0] is None and all(e[0] < 0 for e in entries[1:])
    assert all(isinstance(e[2], str) for e in entries)
    assert out["meta_info"]["output_token_logprobs"] == []


def test_repeated_long_prefix_reports_cached_tokens(server):
    first = server.generate({"text": LONG_PREFIX + "Question one?", "sampling_params": {"max_new_tokens": 1}})
    second = server.generate({"text": LONG_PREFIX + "Question two?", "sampling_params": {"max_new_tokens": 1}})
    assert second["meta_info"]["cached_tokens"] >= first["meta_info"]["prompt_tokens"] - 8
    assert second["meta_info"]["cached_tokens"] > 50


def test_stop_string_is_trimmed_from_the_text(server):
    out = server.generate({"text": "1, 2, 3, 4,", "sampling_params": {"max_new_tokens": 8, "temperature": 0,
                                                                      "stop": " 6"}})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": " 6"}
    assert out["text"] == " 5,"


def test_model_info_path_selects_the_chatml_frontend_template(server):
    for path in ("/model_info", "/get_model_info"):
        info = server.get(path).json()
        assert "tinyllama" in info["model_path"].lower()  # SGLang's chatml matcher
        assert info["served_model_name"] == "SmolLM2-135M-Instruct"


def test_server_info_reports_the_kv_pool_accounting(server):
    for path in ("/server_info", "/get_server_info"):
        info = server.get(path).json()
        state = info["internal_states"][0]
        assert state["kv_pool_invariant_ok"] is True
        assert state["kv_pool_size"] == info["kv_pool_size"] == 8192
        assert info["api_key"] == "<redacted>"


def test_flush_cache_accepts_get_and_post(server):
    assert server.post("/flush_cache").status_code == 200
    assert server.get("/flush_cache").status_code == 200


def test_health_routes(server):
    assert server.get("/health").status_code == 200
    assert server.get("/health_generate").status_code == 200


def test_concate_and_append_request_is_a_no_op(server):
    resp = server.post("/concate_and_append_request", {"src_rids": ["a" * 32], "dst_rid": "b" * 32})
    assert resp.status_code == 200


def test_abort_request_of_an_unknown_rid_is_a_harmless_404(server):
    assert server.post("/abort_request", {"rid": "no-such-request"}).status_code == 404
    assert server.generate({"text": "hi", "sampling_params": {"max_new_tokens": 1}})["text"] is not None


def test_regex_constraint_is_enforced(server):
    out = server.generate({"text": "Is the sky green? Answer: ", "sampling_params": {
        "max_new_tokens": 8, "temperature": 0, "regex": "(yes|no)", "json_schema": None}})
    assert out["text"] in ("yes", "no")


def test_a_regex_that_does_not_compile_is_400(server):
    resp = server.post("/generate", {"text": "x", "sampling_params": {"regex": "(yes|no"}})
    assert resp.status_code == 400 and "regex" in resp.json()["error"]["message"]


def test_two_constraints_at_once_are_400_and_the_server_keeps_serving(server):
    resp = server.post("/generate", {"text": "x", "sampling_params": {
        "regex": "(yes|no)", "json_schema": '{"type": "string"}'}})
    assert resp.status_code == 400 and "only one of" in resp.json()["error"]["message"]
    out = server.generate({"text": "ok", "sampling_params": {"max_new_tokens": 1}})
    assert out["meta_info"]["completion_tokens"] == 1


def test_every_response_names_the_server_in_a_header(server):
    """Outside --dp the header is host:port and /generate results carry no replica name."""
    expected = server.url.removeprefix("http://")
    out = server.post("/generate", {"text": "Hi", "sampling_params": GREEDY})
    assert out.headers["X-Radixlm-Replica"] == expected and "replica" not in out.json()["meta_info"]
    for resp in (server.get("/no_such_route"), requests.post(server.url + "/generate"),  # 404, 401
                 server.get("/metrics"), server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 1})):
        assert resp.headers["X-Radixlm-Replica"] == expected, resp.status_code
