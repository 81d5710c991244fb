"""`radixlm serve --dp 2` for real: two replicas of the bundled model behind sglang-router's
cache-aware policy, on loopback, over HTTP (runtime/server/dp_launch.py).

One launcher for the module (its start-up is most of the time). The tests run in file order:
routing, flush, the listening sockets, then a replica is killed (requests keep being
answered; the launcher restarts it), and last SIGTERM stops everything it started. Only
processes of this launcher's tree are ever signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from radixlm.runtime.server.server_process import free_port

pytest.importorskip("sglang_router", reason='needs the router extra: pip install "radixlm[router]"')

READY_LINE = "radixlm ready: 2 replicas"
START_TIMEOUT_S = 240.0
HEADER = "X-Radixlm-Replica"
# ~500 tokens shared by every request of the prefix test.
SHARED_PREFIX = "You answer questions about a list of facts. " + " ".join(
    f"Fact {i}: the box numbered {i} holds {i * 7 % 13} red stones." for i in range(40))


@dataclass
class DpServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def generate(self, text: str, max_new_tokens: int = 4) -> requests.Response:
        return requests.post(self.url + "/generate", timeout=120, json={
            "text": text, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0}})

    def replica_urls(self) -> dict[str, str]:
        """Replica name -> URL, asked of each worker the router lists."""
        workers = requests.get(self.url + "/workers", timeout=10).json()["workers"]
        return {requests.get(w["url"] + "/health", timeout=10).headers[HEADER]: w["url"] for w in workers}

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_line(server: DpServer, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in server.log_text():
            return
        assert server.proc.poll() is None, f"the launcher exited:\n{server.log_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {line!r} in the launcher's log within {timeout:.0f} s:\n{server.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def dp(tmp_path_factory) -> DpServer:
    log = tmp_path_factory.mktemp("dp") / "launcher.log"
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radixlm.runtime", "--dp", "2", "--port", str(port),
             "--max-total-tokens", "4096", "--disable-torch-compile"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = DpServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_for_line(server, READY_LINE, START_TIMEOUT_S)
        yield server
    finally:
        stop_launcher(server)


def stop_launcher(server: DpServer) -> list[psutil.Process]:
    """SIGTERM to the launcher (it stops its router and replicas); the processes it had."""
    tree = server.tree() if server.proc.poll() is None else []
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(60)
        except subprocess.TimeoutExpired:
            for p in tree:  # our own tree only
                p.kill()
    return tree


def test_requests_sharing_a_prefix_are_cached_on_one_replica(dp):
    assert requests.post(dp.url + "/flush_cache", timeout=30).status_code == 200
    responses = [dp.generate(f"{SHARED_PREFIX} Question {i}: what is in box {i}?") for i in range(8)]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    metas = [r.json()["meta_info"] for r in responses]
    assert [m["cached_tokens"] > 0.8 * m["prompt_tokens"] for m in metas] == [False] + [True] * 7
    assert len({r.headers[HEADER] for r in responses}) == 1
    assert [m["replica"] for m in metas] == [r.headers[HEADER] for r in responses]


def test_stream_events_name_the_replica_that_sent_them(dp):
    resp = requests.post(dp.url + "/generate", stream=True, timeout=120, json={
        "text": "Hello", "stream": True, "sampling_params": {"max_new_tokens": 3, "temperature": 0}})
    events = [json.loads(line[len(b"data: "):]) for line in resp.iter_lines() if line.startswith(b"data: {")]
    assert len(events) == 3 and {e["meta_info"]["replica"] for e in events} == {resp.headers[HEADER]}


def test_concurrent_requests_with_distinct_prefixes_reach_both_replicas(dp):
    prompts = [f"Story {i}: " + f"a traveller number {i} walks to town {i} and back. " * 30 for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda p: dp.generate(p, max_new_tokens=8), prompts))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert {r.headers[HEADER] for r in responses} == {"replica-0", "replica-1"}


def test_each_replica_labels_its_metrics(dp):
    for name, url in dp.replica_urls().items():
        text = requests.get(url + "/metrics", timeout=30).text
        assert f'radixlm_prompt_tokens_total{{replica="{name}"}}' in text


def test_flush_cache_on_the_router_flushes_both_replicas(dp):
    resp = requests.post(dp.url + "/flush_cache", timeout=30)
    assert resp.status_code == 200 and resp.json()["workers_flushed"] == 2
    for url in dp.replica_urls().values():
        state = requests.get(url + "/get_server_info", timeout=30).json()["internal_states"][0]
        assert state["kv_evictable"] == state["kv_protected"] == 0


def test_nothing_listens_beyond_loopback(dp):
    listening = [(p.pid, c.laddr) for p in dp.tree() for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 4  # the router, its metrics, two replicas
    assert all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening


def test_a_killed_replica_leaves_requests_answered_and_is_restarted(dp):
    prompt = f"{SHARED_PREFIX} Question 99: what is in box 3?"
    served_by = dp.generate(prompt).headers[HEADER]  # the replica that holds the prefix
    url = dp.replica_urls()[served_by]
    port = url.rsplit(":", 1)[1]
    (victim,) = [p for p in psutil.Process(dp.proc.pid).children() if "--port" in p.cmdline()
                 and p.cmdline()[p.cmdline().index("--port") + 1] == port]
    os.killpg(victim.pid, signal.SIGKILL)  # its own process group: the replica and its children
    victim.wait(10)
    responses = [dp.generate(prompt) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert {r.headers[HEADER] for r in responses} == {"replica-0", "replica-1"} - {served_by}
    wait_for_line(dp, f"{served_by} is serving again", START_TIMEOUT_S)
    assert f"{served_by} (pid {victim.pid}) exited with code -9; restarting it" in dp.log_text()


def test_sigterm_stops_the_router_and_every_replica(dp):
    tree = stop_launcher(dp)
    assert len(tree) >= 7  # launcher, router, 2 x (replica, scheduler, detokenizer)
    assert dp.proc.returncode == 0
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, [p.pid for p in alive]
