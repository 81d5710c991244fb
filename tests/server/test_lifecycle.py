"""Process lifecycle: SIGTERM stops all three processes; a dead child stops the server with
a clear log line and a non-zero exit, leaving no orphans. Each test starts its own server."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest

from radixlm.runtime.server.server_process import ServerProcess

pytestmark = pytest.mark.slow


def launch() -> tuple[subprocess.Popen, str]:
    server = ServerProcess.launch(["--max-total-tokens", "2048", "--log-level", "warning"],
                                  stderr=subprocess.PIPE, text=True)
    return server.proc, server.url


def workers(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    """The scheduler and detokenizer (spawned children running spawn_main)."""
    kids = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(kids) == 2
    # the scheduler holds the model: the larger resident set
    kids.sort(key=lambda p: p.memory_info().rss, reverse=True)
    return {"scheduler": kids[0], "detokenizer": kids[1]}


def gone(procs, timeout: float = 15) -> bool:
    _, alive = psutil.wait_procs(list(procs), timeout=timeout)
    return not alive


def test_sigterm_stops_every_process():
    proc, _ = launch()
    kids = workers(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert gone(kids.values())


def test_a_dead_scheduler_stops_the_server_with_a_clear_message():
    proc, _ = launch()
    kids = workers(proc)
    kids["scheduler"].kill()
    start = time.monotonic()
    assert proc.wait(30) == 1
    assert time.monotonic() - start < 30
    assert "scheduler process exited unexpectedly" in proc.stderr.read()
    assert gone(kids.values())


def test_children_exit_when_the_main_process_is_killed():
    proc, _ = launch()
    kids = workers(proc)
    proc.kill()  # no cleanup can run: the children must notice on their own
    proc.wait(10)
    assert gone(kids.values(), timeout=10)
