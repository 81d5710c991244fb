"""Overload and requests that cannot fit, on a real server with `--max-queued-requests 2`.

Beyond the limit the server answers 503 at once (no queueing, no tokenization) with a
`Retry-After` header and a JSON error naming the limit; the accepted requests complete and
the server serves again afterwards. A request whose prompt plus max_new_tokens cannot fit
the context or the KV pool is a 400 naming the numbers, decided before it queues.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import start_server

LIMIT = 2
POOL = 1024
SLOW = {"max_new_tokens": 24, "ignore_eos": True, "temperature": 0}
FAST_REJECT_S = 1.0  # a rejection must not wait for the model (accepted requests take seconds)


@pytest.fixture(scope="module")
def url() -> str:
    with start_server("--max-queued-requests", str(LIMIT), "--max-total-tokens", str(POOL)) as server:
        yield server.url


class Stream:
    """A streaming /generate whose first event has arrived: it is in flight on the server."""

    def __init__(self, url: str, prompt: str) -> None:
        self.resp = requests.post(url + "/generate", json={"text": prompt, "sampling_params": SLOW,
                                                           "stream": True}, stream=True, timeout=60)
        assert self.resp.status_code == 200, self.resp.text
        self.lines = (line for line in self.resp.iter_lines() if line)
        self.first = next(self.lines)

    def finish(self) -> dict:
        """Read to `[DONE]`; the last event."""
        data = [line.removeprefix(b"data: ") for line in [self.first, *self.lines]]
        assert data[-1] == b"[DONE]"
        return json.loads(data[-2])


def timed_post(url: str, path: str, body: dict) -> tuple[requests.Response, float]:
    start = time.monotonic()
    resp = requests.post(url + path, json=body, timeout=60)
    return resp, time.monotonic() - start


def assert_overloaded(resp: requests.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) >= 1
    err = resp.json()["error"]
    assert err["type"] == "service_unavailable"
    assert "--max-queued-requests 2" in err["message"] and "retry" in err["message"]


def assert_idle_and_consistent(url: str) -> None:
    state = requests.get(url + "/get_server_info", timeout=30).json()["internal_states"][0]
    assert state["running"] == 0 and state["waiting"] == 0 and state["kv_pool_invariant_ok"]


def test_beyond_the_limit_every_endpoint_is_503_at_once(url):
    streams = [Stream(url, f"Story {i}: once upon a time") for i in range(LIMIT)]
    burst = [
        ("/generate", {"text": "hello", "sampling_params": SLOW}),
        ("/generate", {"text": "hello", "sampling_params": SLOW, "stream": True}),
        ("/v1/completions", {"model": "m", "prompt": "hello", "max_tokens": 24}),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ]
    with ThreadPoolExecutor(len(burst)) as pool:
        answers = list(pool.map(lambda pb: timed_post(url, *pb), burst))
    for resp, _ in answers:
        assert_overloaded(resp)
    slowest = max(seconds for _, seconds in answers)
    assert slowest < FAST_REJECT_S, f"rejections took up to {slowest:.3f} s"
    for s in streams:  # the accepted requests were not disturbed
        last = s.finish()
        assert last["meta_info"]["finish_reason"]["type"] == "length"
        assert last["meta_info"]["completion_tokens"] == SLOW["max_new_tokens"]
    resp, _ = timed_post(url, "/generate", {"text": "again", "sampling_params": {"max_new_tokens": 2}})
    assert resp.status_code == 200, resp.text
    assert_idle_and_consistent(url)


def test_a_burst_gets_limit_answers_and_fast_rejections(url):
    # The limit is checked synchronously on the server's event loop and an accepted request
    # takes seconds, so exactly LIMIT of a simultaneous burst are accepted.
    body = {"text": "Count slowly:", "sampling_params": SLOW}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: timed_post(url, "/generate", body), range(6)))
    accepted = [r for r, _ in answers if r.status_code == 200]
    rejected = [(r, s) for r, s in answers if r.status_code != 200]
    assert len(accepted) == LIMIT
    for resp, seconds in rejected:
        assert_overloaded(resp)
        assert seconds < FAST_REJECT_S
    assert all(r.json()["meta_info"]["completion_tokens"] == SLOW["max_new_tokens"] for r in accepted)
    assert_idle_and_consistent(url)


def test_503_while_starting_also_says_when_to_retry():
    from starlette.testclient import TestClient

    from radixlm.runtime.http.native_api import build_app
    from radixlm.runtime.model.loader import resolve_model
    from radixlm.runtime.server.ipc import IpcEndpoints
    from radixlm.runtime.server.tokenizer_manager import TokenizerManager
    from radixlm.runtime.server_args import ServerArgs

    endpoints = IpcEndpoints.in_new_dir()  # no children: the manager never becomes ready
    try:
        app = build_app(TokenizerManager(ServerArgs(), resolve_model(None), endpoints), ServerArgs())
        resp = TestClient(app).post("/generate", json={"text": "hi"})
    finally:
        endpoints.remove()
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"]["type"] == "service_unavailable"


def error_message(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]["message"]


def test_a_request_over_the_kv_pool_is_400_naming_the_sizes(url):
    ids = list(range(100, 110))
    body = {"input_ids": ids, "sampling_params": {"max_new_tokens": POOL}}
    msg = error_message(requests.post(url + "/generate", json=body, timeout=30), 400)
    assert f"({len(ids) + POOL} tokens)" in msg and f"KV pool ({POOL} tokens)" in msg
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000}
    assert f"KV pool ({POOL} tokens)" in error_message(
        requests.post(url + "/v1/chat/completions", json=chat, timeout=30), 400)


def test_a_request_over_the_context_is_400_naming_the_lengths(url):
    info = requests.get(url + "/get_model_info", timeout=30).json()
    context = info["context_length"]
    body = {"input_ids": [100] * 10, "sampling_params": {"max_new_tokens": context}, "stream": True}
    msg = error_message(requests.post(url + "/generate", json=body, timeout=30), 400)
    assert "(10 tokens)" in msg and f"({context})" in msg and f"{context} tokens" in msg
    assert_idle_and_consistent(url)
