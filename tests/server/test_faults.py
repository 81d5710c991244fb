"""Faults on a real server under load.

* A SIGKILLed scheduler or detokenizer process: every request in flight ends with a 5xx —
  a 503 JSON body (non-streaming) or an `{"error": ...}` SSE event followed by `[DONE]`
  (streaming) — never a hang; the server stops accepting, exits with code 1 within seconds
  naming the dead process, leaves no orphan, and a restart on the same port serves again.
* A grammar slower to compile than `--grammar-compile-timeout` fails only its own request
  (400); a plain request running beside it completes.

Economy: one server at a time on one port (`Slot`), started twice for the module: the
scheduler test restarts it on the same port, checks it serves, and leaves it running for
the detokenizer test.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import psutil
import pytest
import requests

from radixlm.runtime.server.server_process import ServerProcess, free_port

FLAGS = ("--max-total-tokens", "2048", "--grammar-compile-timeout", "0.2", "--log-level", "warning")
LONG = {"max_new_tokens": 200, "ignore_eos": True}  # still running when the child is killed
CHAT = [{"role": "user", "content": "Tell me a long story."}]
EXIT_WITHIN_S = 10.0
CLIENT_TIMEOUT_S = 60  # a client that waits this long has hit a hang


class Slot:
    """The module's server: one process at a time on a fixed port, stderr kept in a file."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServerProcess | None = None
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()

    def start(self) -> subprocess.Popen:
        self.log.seek(0)
        self.log.truncate()
        self.server = ServerProcess.launch(FLAGS, port=self.port, stderr=self.log)
        return self.server.proc

    def running(self) -> subprocess.Popen:
        if self.server is None or self.server.proc.poll() is not None:
            return self.start()
        return self.server.proc

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.log.close()


@pytest.fixture(scope="module")
def slot() -> Slot:
    s = Slot()
    try:
        yield s
    finally:
        s.stop()


def workers(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    """The scheduler and detokenizer: spawned children; the scheduler holds the model (more RSS)."""
    kids = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(kids) == 2, kids
    kids.sort(key=lambda p: p.memory_info().rss, reverse=True)
    return {"scheduler": kids[0], "detokenizer": kids[1]}


def post(url: str, path: str, body: dict) -> requests.Response:
    return requests.post(url + path, json=body, timeout=CLIENT_TIMEOUT_S)


def stream_events(url: str, path: str, body: dict, started: threading.Event) -> list:
    """Every `data:` payload of a stream, `[DONE]` as a string; `started` is set at the first."""
    data = []
    with requests.post(url + path, json={**body, "stream": True}, stream=True, timeout=CLIENT_TIMEOUT_S) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if line:
                data.append(line.removeprefix(b"data: "))
                started.set()
    return [d.decode() if d == b"[DONE]" else json.loads(d) for d in data]


def wait_in_flight(url: str, n: int, timeout: float = 60) -> None:
    """Until the scheduler holds n requests (running or waiting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(url + "/get_server_info", timeout=30).json()["internal_states"][0]
        if state["running"] + state["waiting"] >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{n} requests never were in flight")


def assert_failed_json(resp: requests.Response, victim: str) -> None:
    assert 500 <= resp.status_code < 600, resp.text
    assert f"{victim} process exited unexpectedly" in resp.json()["error"]["message"]


def assert_failed_stream(events: list, victim: str) -> None:
    assert events[-1] == "[DONE]", events[-3:]
    err = events[-2]["error"]
    assert 500 <= err["code"] < 600 and f"{victim} process exited unexpectedly" in err["message"]


def test_a_grammar_over_the_compile_timeout_fails_only_its_request(slot):
    slot.running()
    with ThreadPoolExecutor(1) as pool:
        plain = pool.submit(post, slot.url, "/generate",
                            {"text": "Count to ten:", "sampling_params": {"max_new_tokens": 8, "ignore_eos": True}})
        # {"type": "object"} with arbitrary properties compiles for seconds: over the 0.2 s cap
        hard = post(slot.url, "/generate", {"text": "x", "sampling_params": {
            "max_new_tokens": 8, "json_schema": '{"type": "object"}'}})
        assert hard.status_code == 400, hard.text
        assert "longer than 0.2 s" in hard.json()["error"]["message"]
        done = plain.result(CLIENT_TIMEOUT_S)
    assert done.status_code == 200 and done.json()["meta_info"]["completion_tokens"] == 8


def test_a_killed_scheduler_fails_requests_in_flight_and_a_restart_serves(slot):
    kill_under_load(slot, "scheduler")
    slot.start()  # on the same port
    # ignore_eos: the default sampling (temperature 1) may end early on eos; the point is a full answer
    resp = post(slot.url, "/generate", {"text": "Hello again",
                                        "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}})
    assert resp.status_code == 200 and resp.json()["meta_info"]["completion_tokens"] == 4


def test_a_killed_detokenizer_fails_requests_in_flight(slot):
    kill_under_load(slot, "detokenizer")  # (the restart is the same as above: not repeated)


def kill_under_load(slot: Slot, victim: str) -> None:
    """Four requests in flight (native and OpenAI, streaming and not), then SIGKILL `victim`."""
    proc = slot.running()
    kids = workers(proc)
    started = [threading.Event(), threading.Event()]
    with ThreadPoolExecutor(4) as pool:
        jobs: dict[str, Future] = {
            "native": pool.submit(post, slot.url, "/generate", {"text": "Once upon a time", "sampling_params": LONG}),
            "chat": pool.submit(post, slot.url, "/v1/chat/completions", {"model": "m", "messages": CHAT,
                                                                          "max_tokens": 200}),
            "native_stream": pool.submit(stream_events, slot.url, "/generate",
                                         {"text": "A long poem:", "sampling_params": LONG}, started[0]),
            "chat_stream": pool.submit(stream_events, slot.url, "/v1/chat/completions",
                                       {"model": "m", "messages": CHAT, "max_tokens": 200}, started[1]),
        }
        wait_in_flight(slot.url, len(jobs))
        assert all(e.wait(CLIENT_TIMEOUT_S) for e in started)  # both streams have begun
        kids[victim].kill()
        killed_at = time.monotonic()
        assert_failed_json(jobs["native"].result(CLIENT_TIMEOUT_S), victim)
        assert_failed_json(jobs["chat"].result(CLIENT_TIMEOUT_S), victim)
        assert_failed_stream(jobs["native_stream"].result(CLIENT_TIMEOUT_S), victim)
        assert_failed_stream(jobs["chat_stream"].result(CLIENT_TIMEOUT_S), victim)
    with contextlib.suppress(requests.ConnectionError):  # refused, or 503 while uvicorn drains
        assert post(slot.url, "/generate", {"text": "hi"}).status_code == 503
    assert proc.wait(EXIT_WITHIN_S) == 1
    assert time.monotonic() - killed_at < EXIT_WITHIN_S
    assert f"the {victim} process exited unexpectedly" in slot.stderr()
    _, alive = psutil.wait_procs(list(kids.values()), timeout=10)
    assert not alive, f"orphans left: {alive}"
