"""The replicas of `radixlm serve --dp N`: where each runs, and one supervised replica.

    placements = plan_placements(2, cpus=sorted(os.sched_getaffinity(0)), gpus=0)
    # [Placement("replica-0", cpus=(0,), gpu=None), Placement("replica-1", cpus=(1,), gpu=None)]
    replica = Replica(placements[0], server_flags, port=31001, api_key=None)
    replica.start(); replica.wait_ready(300)

Each replica is a whole `radixlm serve` (its own process group, via ServerProcess) on a
loopback port that stays the same across restarts, so the router's URL for it stays valid.
On a GPU machine replica i sees only CUDA device i (with --tp K, devices iK..iK+K-1); on the
CPU the cores this process may use are split evenly into disjoint sets, one per replica (its
scheduler runs one torch thread per core of its set, less one for its HTTP and detokenizer
processes; with --tp K the replica splits its set again, one run per rank:
runtime/distributed/ranks.py). The caller (dp_launch.py) watches the replicas and restarts
the ones that die.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from radixlm.runtime.server.server_process import START_TIMEOUT_S, ServerProcess
from radixlm.runtime.server_args import API_KEY_ENV

MAX_RESTARTS = 3  # a replica that dies more often than this within RESTART_WINDOW_S stops all
RESTART_WINDOW_S = 600.0


class Placement(NamedTuple):
    name: str
    cpus: tuple[int, ...] | None  # None: not pinned
    gpu: int | None  # the (first) CUDA device it sees, or None on the CPU
    gpu_count: int = 1  # CUDA devices it sees from `gpu` on: its --tp

    @property
    def visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES of the replica."""
        assert self.gpu is not None
        return ",".join(str(self.gpu + i) for i in range(self.gpu_count))


def plan_placements(n: int, cpus: Sequence[int], gpus: int, gpus_per_replica: int = 1) -> list[Placement]:
    """`n` replicas over `gpus` CUDA devices (`gpus_per_replica` each: its tensor-parallel
    ranks) or, with none, over `cpus` (disjoint sets of near-equal size). ValueError when
    there are fewer devices than replicas need."""
    if gpus:
        need = n * gpus_per_replica
        if need > gpus:
            tp = f" --tp {gpus_per_replica}" if gpus_per_replica > 1 else ""
            raise ValueError(f"--dp {n}{tp} needs {need} CUDA devices; this machine has {gpus}")
        cpu_sets = split_evenly(cpus, n) if len(cpus) >= n else [None] * n
        return [Placement(f"replica-{i}", cpu_sets[i], i * gpus_per_replica, gpus_per_replica) for i in range(n)]
    if n > len(cpus):
        raise ValueError(f"--dp {n} needs at least {n} CPU cores (one per replica); "
                         f"this process may use {len(cpus)}: {list(cpus)}")
    return [Placement(f"replica-{i}", cpu_set, None) for i, cpu_set in enumerate(split_evenly(cpus, n))]


def split_evenly(items: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """`items` in `n` consecutive runs whose lengths differ by at most one."""
    size, extra = divmod(len(items), n)
    runs, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        runs.append(tuple(items[start:end]))
        start = end
    return runs


def describe(p: Placement) -> str:
    if p.gpu is None:
        where = "the CPU"
    else:
        where = f"CUDA device {p.gpu}" if p.gpu_count == 1 else f"CUDA devices {p.visible_devices}"
    return where + (f", cores {list(p.cpus)}" if p.cpus else "")


class Replica:
    """One replica: start, readiness, death, restart budget, stop."""

    def __init__(self, placement: Placement, server_flags: Sequence[str], port: int,
                 api_key: str | None) -> None:
        self.placement = placement
        self.name = placement.name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.flags = [*server_flags, "--replica-name", self.name]
        if placement.cpus and "--scheduler-threads" not in server_flags:
            self.flags += ["--scheduler-threads", str(max(1, len(placement.cpus) - 1))]
        self.api_key = api_key
        self.server: ServerProcess | None = None
        self.ready = False
        self.started_at = 0.0
        self.deaths: deque[float] = deque()

    def start(self) -> None:
        """Start (not waiting). The CPU set is applied right after exec, before the server
        spawns its scheduler and detokenizer (they inherit it): its imports take seconds."""
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        if self.api_key:
            env[API_KEY_ENV] = self.api_key  # not on the command line, where `ps` shows it
        if self.placement.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.placement.visible_devices
        self.server = ServerProcess(self.flags, port=self.port, env=env)
        if self.placement.cpus:
            os.sched_setaffinity(self.server.pid, self.placement.cpus)
        self.ready = False
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def exit_code(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self.server.proc.poll() if self.server else None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        assert self.server is not None, "start() first"
        self.server.wait_ready(timeout)
        self.ready = True

    def check_ready(self) -> bool:
        """Non-blocking: True once /health answers 200 (remembered)."""
        if not self.ready and self.server is not None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    self.ready = resp.status == 200
            except (urllib.error.URLError, OSError):
                pass
        return self.ready

    def start_timed_out(self) -> bool:
        return not self.ready and time.monotonic() - self.started_at > START_TIMEOUT_S

    def record_death(self) -> bool:
        """Count a death; False when the restart budget of the window is spent."""
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > RESTART_WINDOW_S:
            self.deaths.popleft()
        return len(self.deaths) <= MAX_RESTARTS

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
