"""TPGroup: this process's rank in a tensor-parallel group, and the collectives it runs.

    tp = init_tp_group(rank, size, store_path, device)   # every rank, same store file
    tp.all_reduce(x)                       # model: sum partial results in place
    tp.gather_logits(local_logits, vocab)  # model: full logits on rank 0, None elsewhere
    tp.broadcast(t)                        # control: rank 0's batch to everyone
    tp.close()

Two process groups, because waiting for work and waiting inside a forward need different
limits:
- `control` (gloo, CPU tensors, on every device): the batches rank 0 broadcasts and the
  start-up exchange. A follower waits here for as long as the server is idle, so its timeout
  is practically infinite; a dead peer still ends the wait at once (gloo sees the closed
  connection: "Connection closed by peer").
- `compute` (NCCL on CUDA, gloo on CPU): the all-reduces and the logits gather inside a
  forward, where every rank arrives within moments of the others; COLLECTIVE_TIMEOUT_S is
  the backstop for a rank that stops without closing its connections.
Every collective that fails raises `TensorParallelError` (naming a dead follower when this
rank started them, `ranks.py`), which the scheduler loop and the Engine treat as fatal.

Uses the process-global default group of torch.distributed, so one group per process: a
second tp > 1 Engine in the same process is refused until the first is shut down.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

RENDEZVOUS_TIMEOUT_S = 120.0  # every rank joins within this of the first (spawn + imports)
COLLECTIVE_TIMEOUT_S = 120.0  # inside a forward ranks are seconds apart at worst
IDLE_TIMEOUT = datetime.timedelta(days=3650)  # a follower waiting for the next batch
# A rank that sees the group break waits this long before exiting, so that a supervisor
# watching every rank (the server's launcher polls every 0.5 s) finds the rank that really
# died and names it, not one of the survivors.
FAILURE_GRACE_S = 3.0

T = TypeVar("T")


class TensorParallelError(RuntimeError):
    """A collective failed: a rank died or stopped answering. The group cannot recover."""


@dataclass
class TPGroup:
    rank: int
    size: int
    device: torch.device  # this rank's device
    control: Any  # gloo ProcessGroup: batches, start-up facts (CPU tensors)
    compute: Any  # NCCL / gloo ProcessGroup: the model's all-reduce and gather
    # Explains a failure: "tp rank 1 (pid 123) exited with code -9" (set by the rank that
    # started the others; None elsewhere).
    explain_failure: Callable[[], str | None] | None = None

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum `x` over the ranks, in place; returns it."""
        self._run("all_reduce", lambda: dist.all_reduce(x, group=self.compute))
        return x

    def gather_logits(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor | None:
        """Rank 0: [rows, vocab_size] from every rank's [rows, vocab_shard]; others: None.
        A gather rather than an all-gather: only rank 0 samples."""
        parts = [torch.empty_like(local) for _ in range(self.size)] if self.is_first else None
        self._run("gather", lambda: dist.gather(local, parts, dst=0, group=self.compute))
        return torch.cat(parts, dim=-1)[:, :vocab_size] if parts is not None else None

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's `t` (a CPU tensor) to every rank, in place, over the control group."""
        self._run("broadcast", lambda: dist.broadcast(t, src=0, group=self.control))
        return t

    def all_gather_object(self, obj: object) -> list[object]:
        """Every rank's `obj`, in rank order (start-up facts; pickled, control group)."""
        out: list[object] = [None] * self.size
        self._run("all_gather_object", lambda: dist.all_gather_object(out, obj, group=self.control))
        return out

    def close(self) -> None:
        """Leave the group (idempotent; safe after a failure)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    def _run(self, what: str, op: Callable[[], T]) -> T:
        try:
            return op()
        except RuntimeError as exc:  # DistBackendError and gloo's IoException arrive as this
            reason = self.explain_failure() if self.explain_failure is not None else None
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TensorParallelError(
                f"tensor-parallel {what} failed on rank {self.rank} of {self.size}: "
                f"{reason or 'a rank died or stopped answering'} ({first_line})") from exc


def init_tp_group(rank: int, size: int, store_path: str, device: torch.device,
                  explain_failure: Callable[[], str | None] | None = None) -> TPGroup:
    """Join the group whose ranks meet at the file `store_path` (absent before rank 0 starts;
    one file per group). RuntimeError when this process already has a group."""
    if dist.is_initialized():
        raise RuntimeError("this process already belongs to a tensor-parallel group (one tp > 1 Engine "
                           "per process): shut the other one down first")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    group = TPGroup(rank, size, device, None, None, explain_failure)

    def join() -> None:
        dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
        group.control = dist.new_group(backend="gloo", timeout=IDLE_TIMEOUT)
        group.compute = dist.new_group(backend=backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))

    group._run("rendezvous", join)
    logger.info("tp rank %d of %d joined (%s on %s)", rank, size, backend, device)
    return group
