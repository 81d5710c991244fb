"""Start, query and stop the one real server a soak drives (loopback only).

The soak needs its own server (not tests/server's session one): a small KV pool so the load
causes eviction and retraction, and the process ids of the scheduler and detokenizer to
sample their memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
import requests

from radixlm.runtime.server.server_process import ServerProcess


@dataclass
class SoakServer:
    server: ServerProcess

    @property
    def url(self) -> str:
        return self.server.url

    def processes(self) -> dict[str, psutil.Process]:
        """main, scheduler, detokenizer. The two children are spawned in that order (runtime/
        server/launch.py), so the lower pid is the scheduler; multiprocessing's resource tracker is
        a third child, skipped."""
        main = psutil.Process(self.server.pid)
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


def start(*args: str) -> SoakServer:
    return SoakServer(ServerProcess.launch(["--log-level", "warning", *args]))


def stop(server: SoakServer) -> None:
    """SIGTERM, then SIGKILL to the whole process group (children too) if it lingers."""
    server.server.stop()
