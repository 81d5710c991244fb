"""GrammarManager: compiles constraints off the scheduler loop and caches them.

Scheduler protocol (all calls on the scheduler thread; the manager is not thread-safe):
  * `handle = manager.submit(kind, spec)` when a constrained request arrives; the request
    waits in the scheduler's grammar queue;
  * each iteration, `manager.poll(handle)` -> a fresh `GrammarMatcher` (ready: move the
    request to the waiting queue with `req.grammar = matcher`), `None` (still compiling), or
    raises `ValueError(reason)` (abort the request, HTTP 400);
  * `manager.cancel(handle)` when a waiting request is aborted.

Compilation runs in a thread pool (outlines-core's Index build releases the GIL). Results
are cached in memory by `GrammarKey` (kind, canonical spec, JSON whitespace, tokenizer),
LRU-bounded by bytes; failures are cached too, so a repeated bad schema fails at once.
Caps: a compile that takes longer than `compile_timeout_s` fails (the worker cannot be
interrupted, its late result is discarded), and regexes longer than `max_regex_chars` or
automata larger than `max_grammar_bytes` are refused.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.constrained.base import CompiledGrammar, GrammarMatcher
from radixlm.runtime.constrained.constraints import (
    COMPACT_WHITESPACE,
    GrammarKey,
    canonical_spec,
    constraint_regex,
)
from radixlm.runtime.constrained.outlines_grammar import compile_outlines_grammar
from radixlm.runtime.constrained.vocabulary import TokenVocab, build_token_vocab

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrammarLimits:
    compile_timeout_s: float = 30.0
    max_regex_chars: int = 200_000
    max_grammar_bytes: int = 256 << 20  # one automaton
    cache_bytes: int = 1 << 30  # all cached automata
    max_cache_entries: int = 4096  # failures included

    def __post_init__(self) -> None:
        for name in ("compile_timeout_s", "max_regex_chars", "max_grammar_bytes", "cache_bytes",
                     "max_cache_entries"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")


@dataclass
class _Entry:
    """One cache slot: a compile in flight, a compiled grammar, or a failure."""

    key: GrammarKey
    future: Future
    submitted_at: float
    started_at: float | None = None  # written by the worker thread when it picks the job up
    finished_at: float | None = None  # written by the worker thread when it is done
    error: str | None = None  # set once the compile failed or ran out of time
    waiters: int = 0  # handles not yet cancelled
    recorded: bool = False  # compile time added to the stats


@dataclass
class GrammarHandle:
    """What a waiting request holds; pass it back to `poll` / `cancel`."""

    key: GrammarKey | None  # None: the spec was malformed (see error)
    entry: _Entry | None
    cache_hit: bool
    error: str | None = None


@dataclass
class GrammarStats:
    hits: int = 0
    misses: int = 0
    failures: int = 0
    compile_s: list[float] = field(default_factory=list)  # each successful compile


class GrammarManager:
    def __init__(self, vocab: TokenVocab, logits_dim: int,
                 whitespace_pattern: str | None = COMPACT_WHITESPACE,
                 limits: GrammarLimits | None = None, max_workers: int = 2,
                 jump_forward: bool = True) -> None:
        """`whitespace_pattern`: between JSON tokens ("" = compact, None = outlines' `[ ]?`);
        `jump_forward=False` skips building the char DFAs (`--disable-jump-forward`)."""
        if logits_dim < vocab.size:
            raise ValueError(f"logits_dim {logits_dim} is smaller than the tokenizer's "
                             f"vocabulary ({vocab.size} ids)")
        self.vocab = vocab
        self.logits_dim = logits_dim
        self.whitespace_pattern = whitespace_pattern
        self.jump_forward = jump_forward
        self.limits = limits or GrammarLimits()
        self.stats = GrammarStats()
        self._cache: OrderedDict[GrammarKey, _Entry] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar")

    @classmethod
    def from_tokenizer(cls, tokenizer, stop_ids: tuple[int, ...], logits_dim: int,
                       **kwargs: Any) -> GrammarManager:
        """Builds the vocabulary first (~1 s for 49k tokens)."""
        return cls(build_token_vocab(tokenizer, stop_ids), logits_dim, **kwargs)

    # --- scheduler API ------------------------------------------------------------------

    def submit(self, kind: str, spec: Any) -> GrammarHandle:
        """Start (or join, or reuse) the compile of a constraint. Never raises."""
        try:
            key = self._key(kind, spec)
        except ValueError as e:
            return GrammarHandle(None, None, cache_hit=False, error=str(e))
        entry = self._cache.get(key)
        hit = entry is not None
        if hit:
            self._cache.move_to_end(key)
            self.stats.hits += 1
        else:
            self.stats.misses += 1
            entry = _Entry(key, Future(), time.monotonic())  # the worker needs the entry
            entry.future = self._pool.submit(self._compile, entry)
            self._cache[key] = entry
            self._evict()
        entry.waiters += 1
        return GrammarHandle(key, entry, cache_hit=hit)

    def poll(self, handle: GrammarHandle) -> GrammarMatcher | None:
        """A new matcher once compiled, None while compiling; ValueError with the reason on
        failure or timeout (the failure stays cached for its key)."""
        if handle.error is not None:
            raise ValueError(handle.error)
        entry = handle.entry
        if entry.error is not None:
            raise ValueError(entry.error)
        if entry.future.cancelled():
            raise ValueError("the grammar compile was cancelled")
        if entry.future.done():
            return self._finished(entry).new_matcher()
        self._check_deadline(entry)
        return None

    def wait(self, handle: GrammarHandle, poll_interval_s: float = 0.002) -> GrammarMatcher:
        """Blocking `poll` (tests, benchmarks, offline use)."""
        while (matcher := self.poll(handle)) is None:
            time.sleep(poll_interval_s)
        return matcher

    def cancel(self, handle: GrammarHandle) -> None:
        """The request left the grammar queue. A compile not started yet is dropped when no
        one else waits for it; a running one finishes and stays cached."""
        entry = handle.entry
        if entry is None:
            return
        entry.waiters -= 1
        if entry.waiters == 0 and entry.future.cancel():
            self._cache.pop(entry.key, None)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- internals ----------------------------------------------------------------------

    def _key(self, kind: str, spec: Any) -> GrammarKey:
        whitespace = self.whitespace_pattern if kind == "json_schema" else None
        return GrammarKey(kind, canonical_spec(kind, spec), whitespace, self.vocab.fingerprint)

    def _compile(self, entry: _Entry) -> CompiledGrammar:
        """Worker thread: writes only `entry.started_at` / `finished_at`."""
        entry.started_at = time.monotonic()
        try:
            key = entry.key
            regex = constraint_regex(key.kind, key.spec, key.whitespace)
            if len(regex) > self.limits.max_regex_chars:
                raise ValueError(f"{key.kind} is too large: its regex has {len(regex)} "
                                 f"characters (limit {self.limits.max_regex_chars})")
            return compile_outlines_grammar(key, regex, self.vocab, self.limits.max_grammar_bytes,
                                            self.jump_forward)
        finally:
            entry.finished_at = time.monotonic()

    def _finished(self, entry: _Entry) -> CompiledGrammar:
        """The grammar of a done future, or the failure recorded (and raised) for it."""
        error = entry.future.exception()
        took = entry.finished_at - entry.started_at
        if error is None and took > self.limits.compile_timeout_s:
            error = self._timeout_error()  # finished late but before a poll noticed: same rule
        if error is not None:
            self._fail(entry, str(error))
        if not entry.recorded:
            entry.recorded = True
            self.stats.compile_s.append(took)
            self._evict()
        return entry.future.result()

    def _check_deadline(self, entry: _Entry) -> None:
        now, limit = time.monotonic(), self.limits.compile_timeout_s
        if entry.started_at is not None and now - entry.started_at > limit:
            self._fail(entry, self._timeout_error())
        if entry.started_at is None and now - entry.submitted_at > limit and entry.future.cancel():
            # Queued behind other compiles: not this grammar's fault, so not kept in the cache
            # (a later request retries); the handles already waiting share the error.
            self._cache.pop(entry.key, None)
            entry.error = f"grammar compiler is busy: waited {limit:g} s without starting"
            raise ValueError(entry.error)

    def _timeout_error(self) -> str:
        return f"grammar took longer than {self.limits.compile_timeout_s:g} s to compile"

    def _fail(self, entry: _Entry, message: str) -> None:
        if entry.error is None:
            entry.error = message
            self.stats.failures += 1
            logger.info("grammar %s failed: %s", entry.key.kind, message)
        raise ValueError(message)

    def _evict(self) -> None:
        """Drop least recently used finished entries beyond the byte and entry budgets."""
        def size(e: _Entry) -> int:
            done = e.future.done() and not e.future.cancelled() and e.future.exception() is None
            return e.future.result().size_bytes if done else 0

        total = sum(size(e) for e in self._cache.values())
        for key in list(self._cache):
            if (total <= self.limits.cache_bytes
                    and len(self._cache) <= self.limits.max_cache_entries):
                break
            entry = self._cache[key]
            if entry.future.done():  # in-flight entries have waiters: keep them
                total -= size(entry)
                del self._cache[key]
