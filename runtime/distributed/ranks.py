"""The processes of a tensor-parallel group: who starts ranks 1..N-1, and where each rank runs.

    procs = follower_processes(args, store_path(folder), os.getpid(), mp.get_context("spawn"))
    ranks = SpawnedRanks(args)        # the Engine's: started now, stopped by ranks.stop()

- The server (runtime/server/launch.py) starts the followers itself, beside the scheduler
  process (rank 0), so its child watchdog names a rank that dies; the store file lives in
  the server's private IPC folder.
- An in-process `Engine` is rank 0 itself and starts the followers (`SpawnedRanks`), which
  also explains a failure by their exit codes.
- Placement on the CPU: the cores this process may use are split into `size` consecutive
  runs (like the replicas of --dp), rank i runs on run i with one torch thread per core of it
  (at most --scheduler-threads); with fewer cores than ranks, they share all of them.

Standard library only at import: the server's main process imports this.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from multiprocessing.process import BaseProcess

from radixlm.runtime.server.replicas import split_evenly

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
EXPLAIN_WAIT_S = 1.0  # a killed rank's sockets close moments before it can be reaped


def store_path(folder: str) -> str:
    """The rendezvous file of a group whose ranks share `folder` (private, fresh per group)."""
    return os.path.join(folder, "tp-store")


def rank_name(rank: int) -> str:
    return f"tp-rank-{rank}"


def follower_processes(args, store: str, parent_pid: int, ctx) -> dict[str, BaseProcess]:
    """Ranks 1..args.tp-1, not started. Daemons: they start no children, and must not
    outlive the process that started them."""
    return {rank_name(r): ctx.Process(target=_rank_main, args=(args, r, store, parent_pid),
                                      name=rank_name(r), daemon=True)
            for r in range(1, args.tp)}


def _rank_main(args, rank: int, store: str, parent_pid: int) -> None:
    from radixlm.runtime.distributed.worker import run_tp_rank  # torch: only in the child

    run_tp_rank(args, rank, store, parent_pid)


def rank_cpus(rank: int, size: int, cpus: list[int]) -> tuple[tuple[int, ...], bool]:
    """(the cores rank `rank` of `size` runs on, whether it has them to itself)."""
    if len(cpus) >= size:
        return split_evenly(cpus, size)[rank], True
    return tuple(cpus), False


class SpawnedRanks:
    """Ranks 1..N-1 started by this process (the in-process Engine is rank 0)."""

    def __init__(self, args) -> None:
        import multiprocessing as mp

        self.folder = tempfile.mkdtemp(prefix="radixlm-tp-")
        self.store = store_path(self.folder)
        self.procs = list(follower_processes(args, self.store, os.getpid(), mp.get_context("spawn")).values())
        for p in self.procs:
            p.start()

    def explain_failure(self) -> str | None:
        """'tp rank 1 (pid 123) exited with code -9' for the followers that died, or None."""
        deadline = time.monotonic() + EXPLAIN_WAIT_S
        while True:
            dead = [f"tp rank {r} (pid {p.pid}) exited with code {p.exitcode}"
                    for r, p in enumerate(self.procs, 1) if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                return "; ".join(dead) or None
            time.sleep(0.05)

    def stop(self) -> None:
        """Wait for the followers to leave (they were told to stop), else end them."""
        for p in self.procs:
            p.join(STOP_TIMEOUT_S)
            if p.is_alive():
                logger.warning("%s did not stop; killing it", p.name)
                p.kill()
                p.join(STOP_TIMEOUT_S)
        shutil.rmtree(self.folder, ignore_errors=True)
