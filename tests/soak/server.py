"""Start, query and stop the one real server a soak drives (loopback only).

The soak needs its own server (not tests/server's session one): a small KV pool so the load
causes eviction and retraction, and the process ids of the scheduler and detokenizer to
sample their memory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil
import requests

START_TIMEOUT_S = 300


@dataclass
class SoakServer:
    url: str
    proc: subprocess.Popen

    def processes(self) -> dict[str, psutil.Process]:
        """main, scheduler, detokenizer. The two children are spawned in that order (runtime/
        launch.py), so the lower pid is the scheduler; multiprocessing's resource tracker is
        a third child, skipped."""
        main = psutil.Process(self.proc.pid)
        spawned = sorted((c for c in main.children() if "spawn_main" in " ".join(c.cmdline())),
                         key=lambda c: c.pid)
        if len(spawned) != 2:
            raise RuntimeError(f"expected scheduler + detokenizer children, found {spawned}")
        return {"main": main, "scheduler": spawned[0], "detokenizer": spawned[1]}

    def state(self) -> dict:
        """The scheduler's state (running, waiting, KV pool accounting) from /get_server_info."""
        info = requests.get(self.url + "/get_server_info", timeout=30).json()
        return info["internal_states"][0]

    def metric(self, name: str) -> float:
        """Sum of a Prometheus counter or gauge over its labels."""
        text = requests.get(self.url + "/metrics", timeout=30).text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name)] in " {")

    def wait_idle(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            if state["running"] == 0 and state["waiting"] == 0:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"the server is not idle {timeout_s} s after the load: {state}")
            time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> SoakServer:
    port = _free_port()
    cmd = [sys.executable, "-m", "radixlm.runtime", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *args]
    server = SoakServer(f"http://127.0.0.1:{port}", subprocess.Popen(cmd, start_new_session=True))
    try:
        _wait_healthy(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_healthy(server: SoakServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.proc.returncode} while starting")
        try:
            if requests.get(server.url + "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not become healthy within {START_TIMEOUT_S} s")


def stop(server: SoakServer) -> None:
    """SIGTERM, then SIGKILL to the whole process group (children too) if it lingers."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
