"""One request cannot hurt the others (issue 22): the event loop stays free while big bodies
are parsed and tokenized, /metrics and /server_info never wait for a step, and a client that
leaves while its prompt is still being prefilled stops it within one chunk.

A server of its own: the session server's 64 KiB body limit would refuse the 15 MB bodies,
and a small prefill chunk makes "within one chunk" a count of steps. Each bound is stated
where it is asserted; the measured values are in docs/reliability.md.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
import requests

from .conftest import start_server

CHUNK = 256  # --chunked-prefill-size: a 4,000-token prompt is 16 chunks, ~2-5 s each here
LONG_PROMPT = 4000  # tokens
# /health (and /metrics, /server_info): 90% of the probes under 100 ms, every one under 500 ms.
# Not 100 ms for the very worst probe: the worker's C calls that hold the GIL (json.loads of a
# 15 MB string: 10-20 ms on an idle machine) stretch several-fold when other processes take
# the cores (up to 250 ms seen at load average 6, with two busy loops beside the suite). The
# code before issue 22 blocked the loop 0.7-15 s in these cases.
PROBE_P90_S, PROBE_MAX_S = 0.1, 0.5
ONE_TOKEN_BOUND_S = 2.0  # a concurrent 1-token request while a big body is refused
REFUSAL_BOUND_S = 10.0  # a 15 MB body is answered (refused) within this
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def url() -> str:
    # One running request at a time: a request sent behind a long prefill stays queued (with
    # more rows it is admitted beside it, within the step's newcomer reserve).
    with start_server("--chunked-prefill-size", str(CHUNK), "--max-running-requests", "1") as server:
        yield server.url


def state(url: str) -> dict:
    return requests.get(url + "/get_server_info", timeout=TIMEOUT_S).json()["internal_states"][0]


def wait_for(url: str, done, timeout: float) -> tuple[dict, float]:
    """Poll the scheduler's state every 20 ms until `done(state)`: (that state, seconds waited)."""
    start = time.monotonic()
    while not done(s := state(url)):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout:.1f} s: {s}")
        time.sleep(0.02)
    return s, time.monotonic() - start


def idle(s: dict) -> bool:
    return s["running"] == 0 and s["waiting"] == 0 and s["kv_held"] == 0


def long_prompt(seed: int) -> list[int]:
    """Token ids no other test sends (a radix-cache hit would skip the prefill)."""
    rng = random.Random(seed)
    return [rng.randrange(1000, 40000) for _ in range(LONG_PROMPT)]


def open_request(url: str, path: str, body: dict) -> socket.socket:
    """Send a POST and return its socket unread: closing it is the client leaving."""
    u = urlparse(url)
    data = json.dumps(body).encode()
    sock = socket.create_connection((u.hostname, u.port), timeout=TIMEOUT_S)
    head = (f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    sock.sendall(head.encode() + data)
    return sock


class Prober:
    """GETs `paths` in turn every 20 ms on one keep-alive connection while in the `with`."""

    def __init__(self, url: str, *paths: str) -> None:
        self.url, self.paths = url, paths or ("/health",)
        self.latencies: dict[str, list[float]] = {p: [] for p in self.paths}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                for path in self.paths:
                    start = time.monotonic()
                    assert session.get(self.url + path, timeout=TIMEOUT_S).status_code == 200
                    self.latencies[path].append(time.monotonic() - start)
                time.sleep(0.02)

    def worst(self, path: str = "/health") -> float:
        assert self.latencies[path], f"no probe of {path} finished"
        return max(self.latencies[path])

    def p90(self, path: str = "/health") -> float:
        ordered = sorted(self.latencies[path])
        return ordered[int(0.9 * (len(ordered) - 1))]

    def assert_fast(self) -> None:
        for path in self.paths:
            assert self.p90(path) < PROBE_P90_S and self.worst(path) < PROBE_MAX_S, (
                f"{path}: p90 {self.p90(path):.3f} s, worst {self.worst(path):.3f} s")

    def __enter__(self) -> Prober:
        self._thread.start()
        time.sleep(0.1)  # a few probes before the load
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)


def one_token(url: str) -> float:
    start = time.monotonic()
    resp = requests.post(url + "/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 1}},
                         timeout=TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    return time.monotonic() - start


def big_text(chars: int) -> str:
    rng = random.Random(chars)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    text = []
    while sum(map(len, text)) < chars:
        text.append(" ".join(rng.choices(words, k=1000)))
    return " ".join(text)[:chars]


BIG_BODIES = {
    # 15 MB of text: longer than any prompt can be, refused before tokenizing.
    "15MB-text": lambda: {"text": "hello world " * 1_250_000},
    # 14 MB of token ids: decoded (a 5M-number JSON body) and checked in the worker.
    "14MB-input_ids": lambda: {"input_ids": [1000 + i % 9000 for i in range(2_400_000)]},
    # 600k characters, under the length bound: tokenized in the worker, then over the context.
    "600k-char-text": lambda: {"text": big_text(600_000)},
}


@pytest.mark.parametrize("kind", BIG_BODIES)
def test_health_answers_within_100ms_while_a_big_body_is_refused(url, kind):
    """And a 1-token request sent while the body is being read and tokenized stays fast."""
    body = {**BIG_BODIES[kind](), "sampling_params": {"max_new_tokens": 1}}
    with Prober(url) as health, ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        big = pool.submit(requests.post, url + "/generate", json=body, timeout=TIMEOUT_S)
        time.sleep(0.2)  # the upload is under way
        one_token_s = one_token(url)
        resp = big.result()
        refused_in = time.monotonic() - start
    assert resp.status_code == 400 and "context length" in resp.json()["error"]["message"], resp.text[:300]
    assert refused_in < REFUSAL_BOUND_S, f"refused after {refused_in:.2f} s"
    health.assert_fast()
    assert one_token_s < ONE_TOKEN_BOUND_S, f"a 1-token request took {one_token_s:.2f} s"
    print(f"{kind}: refused in {refused_in:.2f} s, /health at most {health.worst() * 1000:.0f} ms "
          f"({len(health.latencies['/health'])} probes), 1-token request {one_token_s:.2f} s")


def test_encode_refuses_a_text_longer_than_any_prompt_at_once(url):
    """/encode tokenized anything on the event loop; now its texts have the prompts' bound."""
    with Prober(url) as health:
        start = time.monotonic()
        resp = requests.post(url + "/encode", json={"text": "hello world " * 1_250_000}, timeout=TIMEOUT_S)
        seconds = time.monotonic() - start
    assert resp.status_code == 400 and "context length" in resp.json()["error"]["message"], resp.text[:300]
    assert seconds < REFUSAL_BOUND_S
    health.assert_fast()
    ok = requests.post(url + "/encode", json={"text": ["hello world", "hi"]}, timeout=TIMEOUT_S)
    assert ok.headers["content-type"] == "application/json" and len(ok.json()["input_ids"]) == 2


def test_health_metrics_and_server_info_answer_at_once_during_a_long_prefill(url):
    sock = open_request(url, "/generate", {"input_ids": long_prompt(1), "sampling_params": {"max_new_tokens": 1}})
    try:
        wait_for(url, lambda s: s["running"] == 1, TIMEOUT_S)  # the first chunk is done
        with Prober(url, "/health", "/metrics", "/get_server_info") as probes:
            time.sleep(3.0)  # probes while the next chunk's forward runs (2-5 s each)
    finally:
        sock.close()  # leaves: the rest of the prefill is aborted
    wait_for(url, idle, TIMEOUT_S)
    probes.assert_fast()
    print("during a prefill: " + ", ".join(f"{p} at most {probes.worst(p) * 1000:.0f} ms" for p in probes.paths))


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "non-streaming"])
def test_a_client_that_leaves_during_prefill_stops_it_within_one_chunk(url, stream):
    """Today's bug (streaming): nothing listened for the disconnect before the first token,
    so all 16 chunks of a 4,000-token prefill ran for nobody."""
    body = {"input_ids": long_prompt(2 if stream else 3), "sampling_params": {"max_new_tokens": 8}, "stream": stream}
    start = time.monotonic()
    sock = open_request(url, "/generate", body)
    before, _ = wait_for(url, lambda s: s["running"] == 1, TIMEOUT_S)  # its first chunk is done
    first_chunk_s = time.monotonic() - start
    sock.close()
    # Bound: the chunk in flight when the client left, plus at most one that began before the
    # abort arrived; in time, two chunks (the second is a little longer: more context) + 1 s.
    after, seconds = wait_for(url, idle, 2 * first_chunk_s + 1.0)
    assert after["steps"] - before["steps"] <= 2, (before["steps"], after["steps"])
    assert after["kv_pool_invariant_ok"] and after["kv_held"] == 0
    print(f"first chunk {first_chunk_s:.2f} s; idle {seconds:.2f} s after the disconnect, "
          f"{after['steps'] - before['steps']} step(s)")


def test_a_streaming_client_that_leaves_while_queued_is_dropped_at_once(url):
    """Behind a long prefill holding the only running slot, a queued stream's client leaves:
    its request leaves the queue within one step, while the long prefill still runs."""
    long = open_request(url, "/generate", {"input_ids": long_prompt(4), "sampling_params": {"max_new_tokens": 1}})
    try:
        wait_for(url, lambda s: s["running"] == 1, TIMEOUT_S)
        queued = open_request(url, "/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 4},
                                                  "stream": True})
        before, _ = wait_for(url, lambda s: s["waiting"] == 1, TIMEOUT_S)
        queued.close()
        after, seconds = wait_for(url, lambda s: s["waiting"] == 0, TIMEOUT_S)
        assert after["running"] == 1, "the long prefill finished first: nothing was measured"
        assert after["steps"] - before["steps"] <= 2, (before["steps"], after["steps"])
        print(f"left the queue {seconds:.2f} s after the disconnect")
    finally:
        long.close()
    wait_for(url, idle, TIMEOUT_S)
