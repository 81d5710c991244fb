"""GrammarManager: compiles constraints off the scheduler loop, on the right backend, and caches them.

Scheduler protocol (all calls on the scheduler thread; the manager is not thread-safe):
  * `handle = manager.submit(kind, spec)` when a constrained request arrives; the request
    waits in the scheduler's grammar queue;
  * each iteration, `manager.poll(handle)` -> a fresh `GrammarMatcher` (ready), `None` (still
    compiling), or raises `RequestError`: 400 when the constraint cannot be compiled (bad
    syntax, or over every backend's limits), 503 when the compile workers stayed busy too
    long (nothing is wrong with the constraint: the client should retry);
  * `manager.cancel(handle)` when a waiting request is aborted.

Backends: regex, JSON schema, choices and dtype go to outlines-core (full guarantees: jump-
forward, budget-aware decoding), `ebnf` to llguidance. A constraint whose outlines index
would be too large (`cost_estimate.py`) or whose build runs out of its time or memory goes
to llguidance instead of failing. Compilation runs in worker processes (`CompilePool`) that
are killed at the time or memory limit. Results are cached by `GrammarKey` (kind, canonical
spec, JSON whitespace, tokenizer), LRU-bounded by bytes; failures are cached too (not a busy
pool), so a repeated bad schema fails at once.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.constrained.base import CompiledGrammar, GrammarMatcher
from radixlm.runtime.constrained.compile_pool import CompileOutcome, CompilePool
from radixlm.runtime.constrained.compile_worker import CompiledParts, CompileJob
from radixlm.runtime.constrained.constraints import (
    COMPACT_WHITESPACE,
    GrammarKey,
    canonical_spec,
    constraint_regex,
)
from radixlm.runtime.constrained.cost_estimate import estimated_index_edges
from radixlm.runtime.constrained.vocabulary import TokenVocab, build_token_vocab
from radixlm.runtime.errors import RequestError

logger = logging.getLogger(__name__)

OUTLINES_KINDS = ("regex", "json_schema", "choices", "dtype", "ebnf")
CFG_KINDS = ("ebnf", "regex", "json_schema", "choices", "dtype")


@dataclass(frozen=True)
class GrammarLimits:
    compile_timeout_s: float = 30.0  # one constraint, every backend tried included
    outlines_timeout_s: float = 10.0  # an outlines build past this is retried on llguidance
    memory_limit_bytes: int = 2 << 30  # what one compile may add to its worker's memory
    queue_timeout_s: float = 30.0  # waiting for a free worker, before a 503
    max_regex_chars: int = 200_000
    max_grammar_bytes: int = 256 << 20  # one outlines automaton
    max_index_edges: int = 8_000_000  # estimated outlines index size; above it: llguidance
    cache_bytes: int = 1 << 30  # all cached automata
    max_cache_entries: int = 4096  # failures included

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0 (got {value})")


@dataclass
class _Entry:
    """One cache slot: a compile in flight, a compiled grammar, or a failure."""

    key: GrammarKey
    backend: str
    submitted_at: float
    job_id: int | None = None  # the compile in flight
    grammar: CompiledGrammar | None = None
    error: RequestError | None = None
    waiters: int = 0  # handles not yet cancelled


@dataclass
class GrammarHandle:
    """What a waiting request holds; pass it back to `poll` / `cancel`."""

    key: GrammarKey | None  # None: the spec was malformed (see error)
    entry: _Entry | None
    cache_hit: bool
    error: RequestError | None = None


@dataclass
class GrammarStats:
    hits: int = 0
    misses: int = 0
    failures: int = 0
    fallbacks: int = 0  # constraints moved from outlines-core to llguidance
    compile_s: list[float] = field(default_factory=list)  # each successful compile


class GrammarManager:
    def __init__(self, vocab: TokenVocab, logits_dim: int,
                 whitespace_pattern: str | None = COMPACT_WHITESPACE,
                 limits: GrammarLimits | None = None, max_workers: int = 2,
                 jump_forward: bool = True, distances: bool = True, tokenizer=None) -> None:
        """`whitespace_pattern`: between JSON tokens ("" = compact, None = outlines' `[ ]?`);
        `jump_forward=False` skips the char DFAs (`--disable-jump-forward`), `distances=False`
        the distance tables (`--disable-budget-completion`); `tokenizer` (the Hugging Face
        one) is needed for the llguidance backend."""
        if logits_dim < vocab.size:
            raise ValueError(f"logits_dim {logits_dim} is smaller than the tokenizer's "
                             f"vocabulary ({vocab.size} ids)")
        self.vocab = vocab
        self.logits_dim = logits_dim
        self.whitespace_pattern = whitespace_pattern
        self.jump_forward = jump_forward
        self.distances = distances
        self.tokenizer = tokenizer
        self.limits = limits or GrammarLimits()
        self.stats = GrammarStats()
        self._cache: OrderedDict[GrammarKey, _Entry] = OrderedDict()
        self._jobs: dict[int, _Entry] = {}
        self._job_ids = itertools.count(1)
        self._llguidance = None
        self._pool = CompilePool(vocab, max_workers, self.limits.memory_limit_bytes,
                                 self.limits.queue_timeout_s)

    @classmethod
    def from_tokenizer(cls, tokenizer, stop_ids: tuple[int, ...], logits_dim: int,
                       **kwargs: Any) -> GrammarManager:
        """Builds the vocabulary first (~1 s for 49k tokens)."""
        return cls(build_token_vocab(tokenizer, stop_ids), logits_dim, tokenizer=tokenizer, **kwargs)

    # --- scheduler API ------------------------------------------------------------------

    def submit(self, kind: str, spec: Any, exact: bool = False) -> GrammarHandle:
        """Start (or join, or reuse) the compile of a constraint. Never raises. `exact`: an
        ebnf grammar as it is (unbounded recursion, no budget completion), not its bounded regex."""
        try:
            key = self._key(kind, spec)._replace(exact=exact and kind == "ebnf")
        except ValueError as e:
            return GrammarHandle(None, None, cache_hit=False, error=RequestError.invalid(str(e)))
        entry = self._cache.get(key)
        hit = entry is not None
        if hit:
            self._cache.move_to_end(key)
            self.stats.hits += 1
        else:
            self.stats.misses += 1
            entry = _Entry(key, self._backend_for(key), time.monotonic())
            self._cache[key] = entry
            self._start(entry)
            self._evict()
        entry.waiters += 1
        return GrammarHandle(key, entry, cache_hit=hit)

    def poll(self, handle: GrammarHandle) -> GrammarMatcher | None:
        """A new matcher once compiled, None while compiling; RequestError on failure."""
        if handle.error is not None:
            raise handle.error
        self._collect()
        entry = handle.entry
        if entry.error is not None:
            raise entry.error
        return None if entry.grammar is None else entry.grammar.new_matcher()

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
        if entry.waiters == 0 and entry.job_id is not None and self._pool.cancel(entry.job_id):
            self._jobs.pop(entry.job_id, None)
            self._cache.pop(entry.key, None)

    def shutdown(self) -> None:
        self._pool.shutdown()

    @property
    def worker_restarts(self) -> int:
        return self._pool.restarts

    # --- internals ----------------------------------------------------------------------

    def _key(self, kind: str, spec: Any) -> GrammarKey:
        whitespace = self.whitespace_pattern if kind == "json_schema" else None
        return GrammarKey(kind, canonical_spec(kind, spec), whitespace, self.vocab.fingerprint)

    def _backend_for(self, key: GrammarKey) -> str:
        if key.kind not in OUTLINES_KINDS or key.exact:
            return "llguidance"
        try:
            edges = estimated_index_edges(constraint_regex(key.kind, key.spec, key.whitespace),
                                          self.logits_dim)
        except ValueError:
            # ebnf: not a bounded regex (Lark syntax, or deep recursion): the grammar itself.
            # Others: the compile reports the error with its reason.
            return "llguidance" if key.kind == "ebnf" else "outlines"
        if edges is not None and edges > self.limits.max_index_edges:
            logger.info("%s estimated at %d index edges: compiled by llguidance", key.kind, edges)
            return "llguidance"
        return "outlines"

    def _start(self, entry: _Entry) -> None:
        elapsed = time.monotonic() - entry.submitted_at
        limit = self.limits.compile_timeout_s
        budget = limit - elapsed
        if entry.backend == "outlines" and self.limits.outlines_timeout_s < budget:
            limit = budget = self.limits.outlines_timeout_s
        entry.job_id = next(self._job_ids)
        self._jobs[entry.job_id] = entry
        self._pool.submit(CompileJob(
            entry.job_id, entry.key, entry.backend, self.jump_forward, self.distances,
            self.limits.max_regex_chars, self.limits.max_grammar_bytes,
            timeout_s=max(budget, 0.001), limit_s=limit))

    def _collect(self) -> None:
        for outcome in self._pool.poll():
            entry = self._jobs.pop(outcome.job_id, None)
            if entry is not None:
                entry.job_id = None
                self._settle(entry, outcome)

    def _settle(self, entry: _Entry, outcome: CompileOutcome) -> None:
        if outcome.parts is not None:
            try:
                entry.grammar = self._assemble(entry.key, outcome.parts)
                self.stats.compile_s.append(entry.grammar.compile_s)
                self._evict()
                return
            except ValueError as e:
                outcome = CompileOutcome(outcome.job_id, None, RequestError.invalid(str(e)))
        if outcome.over_limit and entry.backend == "outlines" and entry.key.kind in CFG_KINDS \
                and time.monotonic() - entry.submitted_at < self.limits.compile_timeout_s:
            logger.info("%s moved to llguidance: %s", entry.key.kind, outcome.error.message)
            self.stats.fallbacks += 1
            entry.backend = "llguidance"
            self._start(entry)
            return
        entry.error = outcome.error
        if outcome.error.status >= 500:  # the pool was busy: later requests try again
            self._cache.pop(entry.key, None)
        else:
            self.stats.failures += 1
            logger.info("grammar %s failed: %s", entry.key.kind, outcome.error.message)

    def _assemble(self, key: GrammarKey, parts: CompiledParts) -> CompiledGrammar:
        if parts.backend == "outlines":
            from radixlm.runtime.constrained.outlines_grammar import OutlinesGrammar

            return OutlinesGrammar(key, parts, self.vocab)
        from radixlm.runtime.constrained.llguidance_grammar import (
            LLGuidanceBackend,
            LLGuidanceGrammar,
        )

        if self._llguidance is None:
            if self.tokenizer is None:
                raise ValueError(f"{key.kind} needs the llguidance backend, which needs the tokenizer")
            self._llguidance = LLGuidanceBackend(self.tokenizer, self.logits_dim, self.vocab.stop_ids)
        return LLGuidanceGrammar(key, parts.grammar, self._llguidance, parts.compile_s, parts.size_bytes)

    def _evict(self) -> None:
        """Drop least recently used finished entries beyond the byte and entry budgets."""
        def size(e: _Entry) -> int:
            return e.grammar.size_bytes if e.grammar is not None else 0

        total = sum(size(e) for e in self._cache.values())
        for key in list(self._cache):
            if total <= self.limits.cache_bytes and len(self._cache) <= self.limits.max_cache_entries:
                break
            entry = self._cache[key]
            if entry.job_id is None:  # in-flight entries have waiters: keep them
                total -= size(entry)
                del self._cache[key]
