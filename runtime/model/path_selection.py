"""Which CPU forward paths to run, chosen by timing them on this CPU (issue 21).

Two choices of the CPU float32 runtime are speed trade-offs whose winner depends on the CPU:
the one-token forward compiled by TorchInductor (llama_compiled_decode.py) or eager, and the
linear weights prepacked for oneDNN (kernels/cpu_ops.py), in C column panels for up to 64
rows (kernels/cpu_gemm.py; the oneDNN copy above), or plain. On the AVX2 EPYC they
were tuned on, compiled + prepacked was fastest; on an AVX-512 / AMX Xeon both cost speed
(issue 21). So each is a request: `auto` (time the candidates on the loaded model at start-up,
keep the fastest) or a forced value (`--cpu-decode compiled|eager`, `--cpu-weights
prepacked|panels|plain`; `--disable-torch-compile` / `--disable-weight-prepack` force the plain one).

Here: the request and the choice, the pure rule that picks from measured step times
(`choose`, tested with injected timings), and the on-disk cache of past choices, one entry per
(CPU model, cores, threads, model, dtype, torch, request), so the timing runs once per
machine and model. The timing itself is path_timing.py. `RADIXLM_PATH_SELECTION=off` makes
`auto` mean the fixed default without timing (the test suite sets it: its tests check the
default configuration, and timing on a shared machine would make it vary).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DECODE_PATHS = ("compiled", "eager")
WEIGHT_LAYOUTS = ("prepacked", "panels", "plain")
SELECTION_ENV = "RADIXLM_PATH_SELECTION"
CACHE_FILE = "paths.json"
# A candidate replaces the default only if it is this much cheaper: two equal paths differ by
# several percent from one start to the next (quiet 2-core EPYC, two starts a minute apart:
# compiled 29.8 / 24.6 ms, eager+prepacked 28.0 / 25.6 ms), and caching the noise helps no
# one. The gaps issue 21 measured on the Xeon (15-28%) clear it.
MARGIN = 0.10
# Timed while other processes compete for the cores, OpenMP's threads wait on each other and
# every path runs several times slower, unevenly: on the shared 2-core EPYC beside another
# test run a 19 ms compiled step took 0.8-1.7 s, the eager one 50-400 ms, and the process got
# 50% of its two threads' time (one thread alone: 99%), and the ranking changed from run to
# run. Below this share the process keeps the default path, caches nothing, and times again
# at its next start.
BUSY_SHARE = 0.75


@dataclass(frozen=True)
class PathChoice:
    decode: str  # "compiled" | "eager"
    weights: str  # "prepacked" | "panels" | "plain"

    def __str__(self) -> str:
        return f"{self.decode} one-token forward, {self.weights} weights"


DEFAULT = PathChoice("compiled", "prepacked")  # what the runtime did before measuring


@dataclass(frozen=True)
class PathRequest:
    decode: str = "auto"  # "auto" | one of DECODE_PATHS
    weights: str = "auto"  # "auto" | one of WEIGHT_LAYOUTS

    def __post_init__(self) -> None:
        if self.decode not in ("auto", *DECODE_PATHS):
            raise ValueError(f"cpu_decode must be auto, compiled or eager (got {self.decode!r})")
        if self.weights not in ("auto", *WEIGHT_LAYOUTS):
            raise ValueError(f"cpu_weights must be auto, prepacked, panels or plain (got {self.weights!r})")

    @property
    def is_auto(self) -> bool:
        return "auto" in (self.decode, self.weights)

    def fixed(self) -> PathChoice:
        """The choice without timing: the forced values, DEFAULT for the `auto` ones."""
        return PathChoice(DEFAULT.decode if self.decode == "auto" else self.decode,
                          DEFAULT.weights if self.weights == "auto" else self.weights)

    def candidates(self) -> list[PathChoice]:
        """Every choice this request allows, the fixed one first."""
        decodes = DECODE_PATHS if self.decode == "auto" else (self.decode,)
        weights = WEIGHT_LAYOUTS if self.weights == "auto" else (self.weights,)
        allowed = [PathChoice(d, w) for d in decodes for w in weights]
        return sorted(allowed, key=lambda c: c != self.fixed())


def request_from_flags(cpu_decode: str, cpu_weights: str, disable_torch_compile: bool,
                       disable_weight_prepack: bool) -> PathRequest:
    """ServerArgs' four fields as one request; a disable flag forces the plain path."""
    if disable_torch_compile and cpu_decode == "compiled":
        raise ValueError("--disable-torch-compile contradicts --cpu-decode compiled")
    if disable_weight_prepack and cpu_weights in ("prepacked", "panels"):
        raise ValueError(f"--disable-weight-prepack contradicts --cpu-weights {cpu_weights}")
    return PathRequest("eager" if disable_torch_compile else cpu_decode,
                       "plain" if disable_weight_prepack else cpu_weights)


@dataclass(frozen=True)
class Timings:
    """Median seconds per forward, measured side by side (path_timing.py).

    one_token: a one-token decode step (a single stream) per decode path: "compiled" (it
    reads the plain weights whatever the layout), "eager+prepacked", "eager+panels",
    "eager+plain". batch: a decode step of path_timing.BATCH_ROWS requests per layout,
    "prepacked" / "panels" / "plain": what the layout is for (batches and prefill run eagerly
    on either decode path). A key is absent where that path could not run (no C compiler, no
    oneDNN).
    cpu_share: CPU seconds the process got / (wall seconds x its threads) while timing."""

    one_token: dict[str, float]
    batch: dict[str, float]
    cpu_share: float | None = None

    @property
    def contended(self) -> bool:
        """Other processes took the cores while timing (see BUSY_SHARE)."""
        return self.cpu_share is not None and self.cpu_share < BUSY_SHARE


def one_token_key(choice: PathChoice) -> str:
    return "compiled" if choice.decode == "compiled" else f"eager+{choice.weights}"


def cost(choice: PathChoice, timings: Timings) -> float | None:
    """One-token step time x batch step time (None if either was not measured): minimising
    the product weighs a single stream and a batch equally (a geometric mean of the two)."""
    one, batch = timings.one_token.get(one_token_key(choice)), timings.batch.get(choice.weights)
    return None if one is None or batch is None else one * batch


def choose(timings: Timings, candidates: list[PathChoice], margin: float = MARGIN) -> PathChoice:
    """The cheapest candidate by `cost`; the first (the default) unless another beats it by
    more than `margin`. Candidates that were not measured are skipped."""
    costs = {c: x for c in candidates if (x := cost(c, timings)) is not None}
    if not costs:
        raise ValueError(f"no candidate path was measured: {timings}")
    best = min(costs, key=costs.__getitem__)
    first = next(iter(costs))
    return best if costs[best] < costs[first] * (1 - margin) else first


def selection_enabled() -> bool:
    return os.environ.get(SELECTION_ENV, "on").lower() not in ("off", "0", "false", "no")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (elsewhere: platform's best guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(folder: Path, dtype: str, threads: int, request: PathRequest) -> str:
    """What a choice depends on: the CPU, its cores and the threads the forward runs on, the
    model (folder name + config hash: a folder's contents may change), dtype, torch, the C
    kernels' sources (a faster kernel may change the ranking), the request and the candidates
    it leaves (a forced half leaves fewer; a release may add one)."""
    import torch

    from radixlm.kernels.native_build import sources_digest

    config = (folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b""
    model = f"{folder.name}@{hashlib.sha256(config).hexdigest()[:12]}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # The candidates themselves too: a choice cached before a new path existed never timed it.
    candidates = ",".join(f"{c.decode}+{c.weights}" for c in request.candidates())
    return (f"{cpu_model()} | {cores} cores | {threads} threads | {model} | {dtype} | torch {torch.__version__}"
            f" | kernels {sources_digest()} | decode={request.decode} weights={request.weights} | {candidates}")


class PathCache:
    """Past choices in one JSON file ({key: {decode, weights, timings, date}}), shared by every
    process on the machine; written whole to a temporary file and renamed, so a reader never
    sees half a file (two writers at once: the last one's entries win, both valid)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_FILE

    @classmethod
    def default(cls) -> PathCache:
        from radixlm.runtime.model.loader import default_cache_dir

        return cls(default_cache_dir())  # RADIXLM_CACHE_DIR, else ~/.cache/radixlm

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> PathChoice | None:
        entry = self._read().get(key)
        try:
            choice = PathChoice(entry["decode"], entry["weights"])
        except (TypeError, KeyError):
            return None
        ok = choice.decode in DECODE_PATHS and choice.weights in WEIGHT_LAYOUTS
        return choice if ok else None

    def put(self, key: str, choice: PathChoice, timings: Timings) -> None:
        data = self._read()
        data[key] = {**asdict(choice), "timings": asdict(timings),
                     "date": datetime.datetime.now().isoformat(timespec="seconds")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError as exc:  # a read-only home: measure again next start, but start
            logger.warning("could not cache the CPU path choice in %s: %s", self.path, exc)
