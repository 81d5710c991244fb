"""Sample the resident memory of the server's three processes while the soak runs, and
judge whether it stopped growing after warm-up.

The check compares the warm-up plateau (the highest sample in the warm-up window) with
the end (after the load drained): end <= plateau * (1 + rel_tol) + abs_tol_mb. The
tolerance absorbs allocator noise (arena growth, torch's per-shape caches); a leak of
per-request state keeps growing with the request count and fails it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class RssSample:
    t: float  # seconds since the sampler started
    mb: dict[str, float]  # process name -> RSS in MiB


@dataclass
class RssTolerance:
    rel: float = 0.05
    abs_mb: float = 48.0


@dataclass
class RssSampler:
    procs: dict[str, psutil.Process]
    interval_s: float = 1.0
    samples: list[RssSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sample_now(self) -> RssSample:
        s = RssSample(time.monotonic() - self._start,
                      {name: p.memory_info().rss / MB for name, p in self.procs.items()})
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_now()
            except psutil.Error:  # a process died: the soak reports it elsewhere
                return

    def elapsed(self) -> float:
        return time.monotonic() - self._start


@dataclass
class RssVerdict:
    name: str
    start_mb: float  # first sample (server idle, before the soak)
    plateau_mb: float  # highest sample in the warm-up window
    end_mb: float  # after the load drained
    peak_mb: float  # highest sample overall
    limit_mb: float

    @property
    def ok(self) -> bool:
        return self.end_mb <= self.limit_mb


def judge_rss(samples: list[RssSample], warmup: tuple[float, float], end: RssSample,
              tol: RssTolerance) -> list[RssVerdict]:
    """One verdict per process: warm-up samples are those with t in [warmup[0], warmup[1]]."""
    window = [s for s in samples if warmup[0] <= s.t <= warmup[1]] or samples[:1]
    verdicts = []
    for name in end.mb:
        plateau = max(s.mb[name] for s in window)
        verdicts.append(RssVerdict(
            name, samples[0].mb[name], plateau, end.mb[name], max(s.mb[name] for s in samples),
            plateau * (1 + tol.rel) + tol.abs_mb,
        ))
    return verdicts
