"""Hostile constraints cannot hurt the other requests (the grammar items of the reliability
work): compiles run in killable, lower-priority worker processes, outside the scheduler's
step and its memory; stop_regex runs on a linear-time engine.

Each case: the hostile request is answered (or refused) within a stated bound, a 1-token
request sent meanwhile keeps its latency under PROBE_BOUND_S, the scheduler process's
resident memory stays under RSS_GROWTH_BOUND of growth, and a trivial schema compiles
right after (the pool recovered)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

PROBE_BOUND_S = 2.0  # a 1-token request alone takes ~0.1 s here
RSS_GROWTH_BOUND = 512 << 20
TRIVIAL = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def scheduler(server) -> psutil.Process:
    kids = [p for p in psutil.Process(server.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    return max(kids, key=lambda p: p.memory_info().rss)  # it holds the model


class Probe:
    """1-token requests, one after another, while the hostile ones run."""

    def __init__(self, server) -> None:
        self.server = server
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            out = self.server.generate({"text": "Hello", "sampling_params": {"max_new_tokens": 1}})
            assert out["meta_info"]["completion_tokens"] == 1
            self.latencies.append(time.monotonic() - start)
            time.sleep(0.1)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def run_hostile(server, bodies: list[dict], bound_s: float) -> list:
    """Send `bodies` concurrently with a probe running; check every bound; the responses."""
    proc = scheduler(server)
    rss_before = proc.memory_info().rss
    with Probe(server) as probe, ThreadPoolExecutor(len(bodies)) as pool:
        start = time.monotonic()
        responses = list(pool.map(lambda b: server.post("/generate", b), bodies))
        took = time.monotonic() - start
    assert took < bound_s, f"the hostile requests took {took:.1f} s"
    assert probe.latencies and max(probe.latencies) < PROBE_BOUND_S, probe.latencies
    assert proc.memory_info().rss - rss_before < RSS_GROWTH_BOUND
    trivial = server.post("/generate", {"text": "JSON:", "sampling_params": {
        "json_schema": json.dumps(TRIVIAL), "max_new_tokens": 16}})
    assert trivial.status_code == 200, trivial.text
    return responses


def gen(sampling_params: dict) -> dict:
    return {"text": "Write:", "sampling_params": {"max_new_tokens": 8, **sampling_params}}


@pytest.mark.parametrize("constraint", [
    {"regex": ".{8000}"},  # eagerly built: 14 GB and rising before
    {"json_schema": json.dumps({"type": "object", "properties": {"essay": {"type": "string", "maxLength": 2000}},
                                "required": ["essay"]})},  # +2.4 GB in 22 s before
    {"choices": [f"c{i}" for i in range(5000)]},  # held the GIL: 2 s probes before
], ids=["dot-8000", "maxLength-2000", "5000-choices"])
def test_a_huge_constraint_compiles_lazily_without_hurting_others(server, constraint):
    (resp,) = run_hostile(server, [gen(constraint)], bound_s=30)
    assert resp.status_code == 200, resp.text


def test_two_exponential_regexes_do_not_starve_the_pool(server):
    """Each fills a worker until its build is killed and retried on llguidance; a trivial
    schema meanwhile waits its turn and compiles: it is never a 400 (at worst a 503)."""
    hostile = gen({"regex": "(a|b)*a(a|b){20}"})
    trivial = gen({"json_schema": json.dumps(TRIVIAL)})
    responses = run_hostile(server, [hostile, hostile, trivial], bound_s=45)
    assert [r.status_code for r in responses[:2]] == [200, 200], [r.text for r in responses[:2]]
    assert responses[2].status_code in (200, 503), responses[2].text
    if responses[2].status_code == 503:
        assert responses[2].headers["Retry-After"]


def test_a_backtracking_stop_regex_is_linear(server):
    (resp,) = run_hostile(server, [gen({"regex": "a{28}", "stop_regex": ["(a+)+b"], "max_new_tokens": 40})],
                          bound_s=15)  # 11.3 s, and 10 s for the probe, before
    assert resp.status_code == 200 and resp.json()["text"] == "a" * 28


def test_a_stop_regex_that_needs_backtracking_is_a_400(server):
    resp = server.post("/generate", gen({"stop_regex": [r"(a)\1"]}))
    assert resp.status_code == 400 and "RE2" in resp.json()["error"]["message"]
