"""CompilePool: grammar compiles in worker processes that can be killed.

A grammar is client input, and compiling one can take unbounded time and memory (`.{8000}`,
`(a|b)*a(a|b){20}`, a 2000-character `maxLength`). In a thread the compile could be neither
stopped nor measured; in a process it is both:

  * a compile past its job's `timeout_s` kills its worker (a fresh one takes its place);
  * a worker whose resident memory grows `memory_limit_bytes` past what it held idle is
    killed (checked every `WATCH_INTERVAL_S` by a watchdog thread), and an address-space
    rlimit in the worker is the backstop if memory grows faster than that;
  * a job that waits longer than `queue_timeout_s` for a free worker fails with a 503
    (the server is busy: not the client's fault, so not cached), never a 400.
Outcomes (`CompileOutcome`) are collected by `poll()` on the scheduler thread; a reader thread
per worker receives the results, so a large automaton is read off the pipe without holding
the scheduler's step. Thread-safe: the watchdog, the readers and the scheduler thread share
one lock.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from radixlm.runtime.constrained.compile_worker import READY, CompiledParts, CompileJob, worker_main
from radixlm.runtime.constrained.vocabulary import TokenVocab
from radixlm.runtime.errors import RequestError

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE")


class CompileOutcome(NamedTuple):
    job_id: int
    parts: CompiledParts | None
    error: RequestError | None  # 400: the grammar's fault (cache it); 503: the server's (retry)
    over_limit: bool = False  # refused for its size, time or memory (another backend may take it)


@dataclass
class _Worker:
    proc: mp.process.BaseProcess
    conn: object
    idle_rss: int = 0  # bytes resident once started, before any job (0: still starting)
    job: CompileJob | None = None
    started_at: float = 0.0


class CompilePool:
    def __init__(self, vocab: TokenVocab, workers: int, memory_limit_bytes: int,
                 queue_timeout_s: float) -> None:
        self.vocab = vocab
        self.memory_limit_bytes = memory_limit_bytes
        self.queue_timeout_s = queue_timeout_s
        self._ctx = mp.get_context("spawn")  # the scheduler holds torch threads: never fork it
        self._lock = threading.Lock()
        self._queue: deque[tuple[CompileJob, float]] = deque()
        self._outcomes: queue.SimpleQueue[CompileOutcome] = queue.SimpleQueue()
        self._closed = False
        self._workers: list[_Worker] = []
        self.restarts = 0
        with self._lock:  # a reader may see its worker ready before the others exist
            self._workers.extend(self._spawn() for _ in range(workers))
        threading.Thread(target=self._watch, name="grammar-watchdog", daemon=True).start()

    # ---- the scheduler's side ---------------------------------------------------------------
    def submit(self, job: CompileJob) -> None:
        with self._lock:
            self._queue.append((job, time.monotonic()))
            self._dispatch()

    def cancel(self, job_id: int) -> bool:
        """Drop a job that has not started; False if it runs (its result still comes back)."""
        with self._lock:
            for item in self._queue:
                if item[0].job_id == job_id:
                    self._queue.remove(item)
                    return True
        return False

    def poll(self) -> list[CompileOutcome]:
        """Every outcome since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._outcomes.get_nowait())
            except queue.Empty:
                return out

    def busy(self) -> int:
        with self._lock:
            return sum(w.job is not None for w in self._workers) + len(self._queue)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            for w in self._workers:
                _kill(w)

    # ---- workers ---------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_entry, args=(child, self.vocab, self.memory_limit_bytes),
                                 name="grammar-compiler", daemon=True)
        proc.start()
        child.close()
        worker = _Worker(proc, parent)
        threading.Thread(target=self._read, args=(worker,), name="grammar-reader", daemon=True).start()
        return worker

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                msg = worker.conn.recv()
            except (EOFError, OSError):  # killed, or the pool shut down
                return
            if msg == READY:
                with self._lock:
                    worker.idle_rss = max(_rss(worker.proc.pid), 1)
                    self._dispatch()
                continue
            job_id, parts, error, over_limit = msg
            with self._lock:
                if worker.job is None or worker.job.job_id != job_id:
                    continue  # a job already failed by the watchdog
                worker.job = None
                self._post(job_id, parts, RequestError.invalid(error) if error else None, over_limit)
                self._dispatch()

    def _dispatch(self) -> None:
        """(Lock held.) Start queued jobs on idle workers."""
        for w in self._workers:
            if not self._queue:
                return
            if w.job is None and w.idle_rss and w.proc.is_alive():
                job, _ = self._queue.popleft()
                w.job, w.started_at = job, time.monotonic()
                w.conn.send(job)

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(WATCH_INTERVAL_S)
            with self._lock:
                if self._closed:
                    return
                for i, w in enumerate(self._workers):
                    if (reason := self._fault(w)) is not None:
                        self._replace(i, reason)
                self._expire_queued()
                self._dispatch()

    def _fault(self, w: _Worker) -> str | None:
        """Why the busy worker `w` must be stopped, if it must."""
        if w.job is None:
            return "" if not w.proc.is_alive() else None  # "" = restart quietly
        if not w.proc.is_alive():
            return (f"compiling this {w.job.key.kind} crashed its worker process "
                    f"(exit code {w.proc.exitcode}); simplify it")
        if time.monotonic() - w.started_at > w.job.timeout_s:
            limit = w.job.limit_s if w.job.limit_s is not None else w.job.timeout_s
            return f"the {w.job.key.kind} took longer than {limit:g} s to compile; simplify it"
        grown = _rss(w.proc.pid) - w.idle_rss
        if grown > self.memory_limit_bytes:
            return (f"the {w.job.key.kind} needs more than {self.memory_limit_bytes >> 20} MiB to compile "
                    f"(stopped at {grown >> 20} MiB); simplify it")
        return None

    def _replace(self, i: int, reason: str) -> None:
        w = self._workers[i]
        _kill(w)
        if w.job is not None:
            logger.warning("grammar worker stopped: %s", reason)
            self._post(w.job.job_id, None, RequestError.invalid(reason), over_limit=True)
        self._workers[i] = self._spawn()
        self.restarts += 1

    def _expire_queued(self) -> None:
        now = time.monotonic()
        while self._queue and now - self._queue[0][1] > self.queue_timeout_s:
            job, _ = self._queue.popleft()
            self._post(job.job_id, None, RequestError.unavailable(
                f"the grammar compiler is busy: this {job.key.kind} waited {self.queue_timeout_s:g} s "
                "for a free worker; retry later"))

    def _post(self, job_id: int, parts: CompiledParts | None, error: RequestError | None,
              over_limit: bool = False) -> None:
        self._outcomes.put(CompileOutcome(job_id, parts, error, over_limit))


def _worker_entry(conn, vocab: TokenVocab, memory_limit_bytes: int) -> None:
    _limit_address_space(memory_limit_bytes)
    os.nice(10)  # a compile yields the cores to the scheduler's forward passes
    worker_main(conn, vocab)


def _limit_address_space(memory_limit_bytes: int) -> None:
    """The backstop for memory that grows faster than the watchdog looks: address space now,
    plus twice the limit and a gigabyte (virtual reservations of threads and allocators)."""
    import resource

    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * _PAGE
    cap = vm + 2 * memory_limit_bytes + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _kill(w: _Worker) -> None:
    if w.proc.is_alive():
        w.proc.kill()
    w.proc.join(timeout=5)
    w.conn.close()
