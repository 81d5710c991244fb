"""Grammar compilation as a pure function, and the worker process that runs it.

`compile_job(job, vocab)` turns one constraint into the parts of a compiled grammar:
  * outlines backend: the whole-output regex, the outlines-core token index of
    `(?:regex)<END_SENTINEL>`, the interegular character DFA (jump-forward) and the
    `DistanceTable` (budget-aware decoding);
  * llguidance backend: the grammar in llguidance's format, validated (the matchers are
    built in the scheduler process, which owns the tokenizer).
It imports neither torch nor the scheduler: a worker process starts in well under a second
and holds only the vocabulary. `CompilePool` (compile_pool.py) runs it in processes it can
kill, so a grammar that runs out of time or memory takes only its worker down.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from radixlm.runtime.constrained.char_dfa import CharDFA
from radixlm.runtime.constrained.constraints import GrammarKey, constraint_regex
from radixlm.runtime.constrained.distance import DistanceTable
from radixlm.runtime.constrained.vocabulary import END_SENTINEL, TokenVocab

logger = logging.getLogger(__name__)


class GrammarTooLarge(ValueError):
    """Over a size cap: the grammar is valid, but too big for this backend to build."""


@dataclass(frozen=True)
class CompileJob:
    job_id: int
    key: GrammarKey
    backend: str  # "outlines" | "llguidance"
    jump_forward: bool  # build the char DFA
    distances: bool  # build the distance table
    max_regex_chars: int
    max_grammar_bytes: int
    timeout_s: float = 30.0  # the pool kills the worker past it: what is left of the limit
    limit_s: float | None = None  # the limit the client is told of (None: timeout_s)


@dataclass
class CompiledParts:
    """What a worker sends back; the scheduler process attaches its own vocabulary."""

    backend: str
    regex: str | None = None  # outlines: the regex every finished output matches in full
    index: Any = None  # outlines_core.Index
    char_dfa: CharDFA | None = None
    distances: DistanceTable | None = None
    grammar: str | None = None  # llguidance: the grammar, serialized
    compile_s: float = 0.0
    size_bytes: int = 0


def compile_job(job: CompileJob, vocab: TokenVocab) -> CompiledParts:
    """ValueError with the reason if the constraint cannot be compiled or is over a cap."""
    start = time.perf_counter()
    if job.backend == "llguidance":
        from radixlm.runtime.constrained.llguidance_grammar import llguidance_grammar

        parts = CompiledParts("llguidance", grammar=llguidance_grammar(job.key))
        parts.size_bytes = len(parts.grammar)
    else:
        parts = _compile_outlines(job, vocab)
    parts.compile_s = time.perf_counter() - start
    return parts


def _compile_outlines(job: CompileJob, vocab: TokenVocab) -> CompiledParts:
    from outlines_core import Index

    key = job.key
    regex = constraint_regex(key.kind, key.spec, key.whitespace)
    if len(regex) > job.max_regex_chars:
        raise GrammarTooLarge(f"{key.kind} is too large: its regex has {len(regex)} characters "
                         f"(limit {job.max_regex_chars})")
    index_regex = f"(?:{regex}){END_SENTINEL}"
    try:
        index = Index(index_regex, vocab.vocabulary)
    except (ValueError, RuntimeError, TypeError) as e:
        reason = str(e).replace(index_regex, regex)  # the user never wrote the sentinel
        raise ValueError(f"cannot compile {key.kind}: {reason}") from None
    size_bytes = len(pickle.dumps(index))  # its transition table dominates; ~3 ms per MB
    if size_bytes > job.max_grammar_bytes:
        raise GrammarTooLarge(f"{key.kind} is too complex: its automaton takes {size_bytes >> 20} MiB "
                         f"(limit {job.max_grammar_bytes >> 20} MiB)")
    parts = CompiledParts("outlines", regex=regex, index=index, size_bytes=size_bytes)
    if job.jump_forward:
        parts.char_dfa = _char_dfa_or_none(regex)
    if job.distances:
        parts.distances = build_distances(index, vocab)
        parts.size_bytes += parts.distances.size_bytes()
    return parts


def build_distances(index, vocab: TokenVocab) -> DistanceTable:
    """The distance table of an outlines index: a state may end the output iff the end
    sentinel leads from it to a final state."""
    transitions = index.get_transitions()
    finals = set(index.get_final_states())
    accepting = {s for s, edges in transitions.items() if edges.get(vocab.sentinel_id) in finals}
    return DistanceTable.build(transitions, accepting, {vocab.sentinel_id, *vocab.stop_ids})


def _char_dfa_or_none(regex: str) -> CharDFA | None:
    """interegular supports less syntax than outlines-core; without it we only lose jumps."""
    try:
        return CharDFA.from_regex(regex)
    except Exception as e:  # interegular raises several unrelated types on unsupported syntax
        logger.info("no jump-forward for this regex (interegular: %s: %s)", type(e).__name__, e)
        return None


READY = "ready"


def worker_main(conn: Connection, vocab: TokenVocab) -> None:
    """A compile worker: one job at a time from `conn`; back (job_id, parts | None, error,
    over_limit): over_limit says the grammar was refused for its size, not its syntax."""
    import signal

    import llguidance  # noqa: F401 - loaded before the first job, so it counts as idle memory
    from outlines_core.json_schema import build_regex_from_schema  # noqa: F401 - likewise

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the scheduler process owns shutdown
    conn.send(READY)  # started: what it holds now is its idle memory
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the scheduler process is gone
            return
        try:
            conn.send((job.job_id, compile_job(job, vocab), None, False))
        except ValueError as exc:
            conn.send((job.job_id, None, str(exc), isinstance(exc, GrammarTooLarge)))
        except MemoryError:
            conn.send((job.job_id, None, f"the {job.key.kind} ran out of memory while compiling", True))
        except Exception as exc:  # a library failing on this input: still this input's answer
            logger.exception("compiling a %s failed", job.key.kind)
            conn.send((job.job_id, None, f"cannot compile {job.key.kind}: {exc}", False))
