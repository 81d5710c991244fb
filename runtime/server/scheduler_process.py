"""The scheduler process: the zmq loop around `Scheduler.step()`.

    recv (all pending; block only when idle) -> step() -> push SchedulerState -> send BatchTokenOut

In:  TokenizedRequest, AbortRequest, FlushCacheRequest, CacheTreeRequest, LiveStatsRequest
                                                                         (from the main process)
Out: DetokenizeParams + BatchTokenOut  -> detokenizer
     ProcessReady/ProcessFailed, FlushCacheReply, SchedulerState, CacheTreeReply, LiveStats
                                       -> main process (in order)
The web view's two requests are answered between steps with bounded work (a tree snapshot
of at most a few hundred nodes, at most 256 request rows): about a millisecond of stall.

The state is pushed, not asked for: a request would wait for the step in progress, and one
prefill chunk takes seconds on a CPU (/metrics took 4-7 s during a long prefill).

A request the scheduler rejects comes back as its one (failed) output, 400 or 500
(`Scheduler.try_add_request`); an exception inside step() fails every in-flight request with
a 500 instead of killing the process silently.

With --tp N this process is rank 0 (runtime/distributed/). A broken group (a rank died) is
fatal: after FAILURE_GRACE_S, in which the launcher's watcher names the dead rank to the
clients, the requests in flight fail and the process exits with code 1.
"""

from __future__ import annotations

import logging
import os
import time
import traceback

import torch
import zmq

from radixlm.runtime.distributed.group import FAILURE_GRACE_S, TensorParallelError
from radixlm.runtime.distributed.ranks import store_path
from radixlm.runtime.errors import RequestError
from radixlm.runtime.mem_cache.tree_snapshot import take_snapshot
from radixlm.runtime.scheduler.io import ReqTokenOutput, TokenizedRequest
from radixlm.runtime.scheduler.live_stats import live_stats
from radixlm.runtime.scheduler.scheduler import Scheduler
from radixlm.runtime.server import ipc
from radixlm.runtime.server.child_process import exit_now, parent_is_gone, setup_child
from radixlm.runtime.server.messages import (
    AbortRequest,
    BatchTokenOut,
    CacheTreeReply,
    CacheTreeRequest,
    DetokenizeParams,
    FlushCacheReply,
    FlushCacheRequest,
    LiveStatsRequest,
    ProcessFailed,
    ProcessReady,
    SchedulerState,
)
from radixlm.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

IDLE_POLL_MS = 500  # how often an idle loop checks that the parent is still alive
STATE_PUSH_INTERVAL_S = 0.1  # while busy: fresh enough for /metrics, ~10 small messages a second


def run_scheduler_process(args: ServerArgs, endpoints: ipc.IpcEndpoints, parent_pid: int) -> None:
    """Entry point of the spawned scheduler process."""
    setup_child(args.log_level)
    ctx = zmq.Context()
    to_main = ipc.push_socket(ctx, endpoints.tokenizer)
    threads = None
    try:
        if args.tp == 1:  # else each rank takes its share of the cores (distributed/worker.py)
            threads = ThreadSplit.for_process(args.scheduler_threads, args.prefill_threads)
        from radixlm.runtime.bootstrap import build_runtime

        rt = build_runtime(args, tp_store=store_path(endpoints.folder))
    except Exception as exc:
        logger.exception("scheduler start-up failed")
        ipc.send(to_main, ProcessFailed("scheduler", f"{type(exc).__name__}: {exc}"))
        to_main.close(linger=2000)  # deliver the reason before exiting
        exit_now(1)
    loop = SchedulerLoop(rt.scheduler, ctx, endpoints, to_main, parent_pid, threads)
    ipc.send(to_main, ProcessReady("scheduler", _ready_info(rt)))
    loop.run_forever()


class ThreadSplit:
    """The scheduler's torch threads, per step. Default: physical cores - 1 while requests
    stream, leaving a core to the HTTP and detokenizer processes. Measured on a shared 2-core
    CPU: one thread decodes a 32-request batch in 0.44 s/step, two threads in 2.0 s/step,
    because the OpenMP team stalls whenever another process holds the second core. A step in
    which no request streams output and no grammar compiles (prompts only: the first request
    after a quiet spell, a burst of arrivals) leaves the other processes nothing to do, so
    it runs on every core (`prefill`, default all of them): time to first token at
    concurrency 1 232-238 -> 168-216 ms on 2 cores (docs/benchmarks.md, "Prefill on every
    core when nothing streams")."""

    def __init__(self, streaming: int, prefill: int) -> None:
        self.streaming, self.prefill = streaming, prefill
        self.current = 0

    @classmethod
    def for_process(cls, scheduler_threads: int | None, prefill_threads: int | None) -> ThreadSplit:
        cores = torch.get_num_threads()  # torch's default: the physical cores this process may use
        split = cls(scheduler_threads or max(1, cores - 1), prefill_threads or cores)
        split.use(split.streaming)
        logger.info("scheduler uses %d torch thread(s), %d for steps no request streams from",
                    split.streaming, split.prefill)
        return split

    def before_step(self, others_busy: bool) -> None:
        """`others_busy`: tokens will stream out, or grammar workers compile, during the step."""
        self.use(self.streaming if others_busy else self.prefill)

    def use(self, n: int) -> None:
        if n != self.current:
            torch.set_num_threads(n)
            self.current = n


def _ready_info(rt) -> dict:
    sched = rt.scheduler
    return {
        "model_folder": str(rt.folder),
        "architecture": rt.model_config.architecture,
        "model_type": rt.model_config.model_type,
        "vocab_size": rt.model_config.vocab_size,
        "context_len": sched.cfg.context_len,
        "kv_pool_size": sched.kv_pool.size,
        "max_running_requests": sched.cfg.max_running_requests,
        "device": str(sched.device),
        "scheduler_threads": torch.get_num_threads(),  # while streaming (ThreadSplit)
        "pid": os.getpid(),
        "tp_size": len(sched.runner.tp_ranks) or 1,
        "tp_ranks": sched.runner.tp_ranks,  # pid, device, param_bytes of every rank (tp > 1)
    }


class SchedulerLoop:
    def __init__(self, scheduler: Scheduler, ctx: zmq.Context, endpoints: ipc.IpcEndpoints,
                 to_main: zmq.Socket, parent_pid: int, threads: ThreadSplit | None = None) -> None:
        self.scheduler = scheduler
        self.threads = threads  # None under tensor parallelism: each rank keeps its own count
        self.inbox = ipc.pull_socket(ctx, endpoints.scheduler)
        self.to_detokenizer = ipc.push_socket(ctx, endpoints.detokenizer)
        self.to_main = to_main
        self.parent_pid = parent_pid
        self.rejected: list[ReqTokenOutput] = []  # outputs for requests add_request refused
        self.state_pusher = StatePusher(to_main)

    def run_forever(self) -> None:
        self.state_pusher.after_iteration(self.scheduler)  # the first snapshot, before any request
        while True:
            for msg in self._receive(block=self.scheduler.is_idle):
                self._handle(msg)
            outputs = self.rejected + self._step()
            self.rejected = []
            # Before the outputs: they reach the main process through the detokenizer, so a
            # client that has its answer already finds the state after it in /server_info.
            self.state_pusher.after_iteration(self.scheduler)
            if outputs:
                ipc.send(self.to_detokenizer, BatchTokenOut(outputs))

    def _receive(self, block: bool) -> list[object]:
        while block and not self.inbox.poll(IDLE_POLL_MS, zmq.POLLIN):
            self._exit_if_orphaned()
        self._exit_if_orphaned()
        return ipc.recv_all_nowait(self.inbox)

    def _exit_if_orphaned(self) -> None:
        if parent_is_gone(self.parent_pid):
            logger.warning("the server process is gone; scheduler exiting")
            exit_now(0)

    def _handle(self, msg: object) -> None:
        if isinstance(msg, TokenizedRequest):
            self._add(msg)
        elif isinstance(msg, AbortRequest):
            self.scheduler.abort(msg.rid, msg.message)
        elif isinstance(msg, FlushCacheRequest):
            ipc.send(self.to_main, FlushCacheReply(self.scheduler.flush_cache()))
        elif isinstance(msg, CacheTreeRequest):
            ipc.send(self.to_main, CacheTreeReply(take_snapshot(self.scheduler.cache, msg.query)))
        elif isinstance(msg, LiveStatsRequest):
            ipc.send(self.to_main, live_stats(self.scheduler))
        else:
            logger.error("scheduler got an unknown message %r", type(msg).__name__)

    def _add(self, tr: TokenizedRequest) -> None:
        # Sent on the same socket as the outputs, so the detokenizer has it before them.
        ipc.send(self.to_detokenizer, DetokenizeParams(tr.rid, tr.sampling_params))
        if (rejection := self.scheduler.try_add_request(tr)) is not None:
            self.rejected.append(rejection)

    def _step(self) -> list[ReqTokenOutput]:
        if self.threads is not None:
            self.threads.before_step(self.scheduler.is_streaming or bool(self.scheduler.grammars.pending))
        try:
            return self.scheduler.step()
        except TensorParallelError as exc:
            self._stop_on_broken_group(exc)
        except Exception as exc:
            logger.exception("scheduler step failed; failing the requests in flight")
            return self.scheduler.fail_in_flight(RequestError.internal(f"internal error in the scheduler: {exc!r}"))

    def _stop_on_broken_group(self, exc: TensorParallelError) -> None:
        logger.error("%s; stopping the scheduler", exc)
        time.sleep(FAILURE_GRACE_S)  # the launcher, watching every rank, names the dead one first
        outputs = self.scheduler.fail_in_flight(RequestError.unavailable(str(exc)))
        ipc.send(self.to_detokenizer, BatchTokenOut(outputs))
        self.to_detokenizer.close(linger=2000)  # deliver them before exiting
        exit_now(1)


class StatePusher:
    """Sends `scheduler_state` to the main process after loop iterations: at most every
    STATE_PUSH_INTERVAL_S while the scheduler is busy, and after every iteration that leaves
    it idle (an idle loop iterates only when messages arrive, and the idle snapshot carries
    the structural KV checks, which the soak reads after its drain)."""

    def __init__(self, to_main: zmq.Socket, interval_s: float = STATE_PUSH_INTERVAL_S) -> None:
        self.to_main = to_main
        self.interval_s = interval_s
        self.last_push = float("-inf")

    def after_iteration(self, sched: Scheduler) -> None:
        now = time.monotonic()
        if sched.is_idle or now - self.last_push >= self.interval_s:
            ipc.send(self.to_main, scheduler_state(sched))
            self.last_push = now


def check_kv_pool(sched: Scheduler) -> tuple[bool, bool]:
    """(ok, structure_checked): the accounting sum always; when idle also the O(pool + tree)
    structural checks, since a double free or a leaked lock can keep the sum right."""
    structure = sched.is_idle
    try:
        sched.check_invariant()
        if structure:
            sched.cache.check_invariants()
            sched.kv_pool.check_invariants()
        return True, structure
    except AssertionError:
        logger.error("KV invariant check failed:\n%s", traceback.format_exc())
        return False, structure


def scheduler_state(sched: Scheduler) -> SchedulerState:
    """Counters and the KV pool accounting (free + evictable + protected + held == size)."""
    invariant_ok, structure_checked = check_kv_pool(sched)
    return SchedulerState(
        running=len(sched.running),
        waiting=len(sched.waiting),
        kv_pool_size=sched.kv_pool.size,
        kv_free=sched.kv_pool.available_size(),
        kv_evictable=sched.cache.evictable_size(),
        kv_protected=sched.cache.protected_size(),
        kv_held=sched.held_by_requests(),
        kv_pool_invariant_ok=invariant_ok,
        kv_structure_checked=structure_checked,
        steps=sched.stats.steps,
        forward_tokens=sched.stats.forward_tokens,
        prompt_tokens=sched.stats.prompt_tokens,
        cached_tokens=sched.stats.cached_tokens,
        cache_hit_rate=sched.stats.cache_hit_rate,
        retractions=sched.stats.retractions,
        taken_at=time.time(),
    )
