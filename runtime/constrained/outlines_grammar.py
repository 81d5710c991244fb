"""OutlinesGrammar: a compiled constraint on outlines-core (token index + char DFA + distances).

The token index is built for `(?:regex)<END_SENTINEL>` (see vocabulary.py for why): a state
may end the output iff the sentinel token leads from it to a final state; outlines-core's eos
entries (only ever after the sentinel) are not used.

The parts are built in a compile worker process (compile_worker.py: the outlines-core
`Index`, Rust; the interegular character DFA for jump-forward, pure Python; the distance
table for budget-aware decoding, numpy) and assembled here with the scheduler process's own
vocabulary. All are immutable; the grammar is shared by every request with the same
`GrammarKey`.
"""

from __future__ import annotations

import numpy as np

from radixlm.runtime.constrained.char_dfa import CharDFA
from radixlm.runtime.constrained.compile_worker import CompiledParts, CompileJob, compile_job
from radixlm.runtime.constrained.constraints import GrammarKey
from radixlm.runtime.constrained.distance import DistanceTable
from radixlm.runtime.constrained.outlines_matcher import OutlinesMatcher
from radixlm.runtime.constrained.vocabulary import TokenVocab


class OutlinesGrammar:
    """Immutable after construction except for the lazily filled per-state cache below,
    whose entries are pure functions of the index (racing writers store equal values)."""

    def __init__(self, key: GrammarKey, parts: CompiledParts, vocab: TokenVocab) -> None:
        self.key = key
        self.regex: str = parts.regex
        self.index = parts.index
        self.vocab = vocab
        self.char_dfa: CharDFA | None = parts.char_dfa  # None: jump-forward unavailable
        self.distances: DistanceTable | None = parts.distances  # None: no budget completion
        self.compile_s = parts.compile_s
        self.size_bytes = parts.size_bytes
        self._dead_end: dict[int, bool] = {}
        # Stop ids as (word, bit) pairs, OR-ed into the rows of states that may end.
        self.stop_words, self.stop_bits = _word_bits(vocab.stop_ids)
        sentinel_word, sentinel_bit = _word_bits((vocab.sentinel_id,))
        self.sentinel_word, self.sentinel_clear = int(sentinel_word[0]), ~sentinel_bit[0]

    def new_matcher(self) -> OutlinesMatcher:
        return OutlinesMatcher(self)

    def may_end(self, state: int) -> bool:
        """The text so far is a complete match: the end sentinel leads to a final state.
        (Where the regex allows any character, the sentinel may also be mere content.)"""
        after = self.index.get_next_state(state, self.vocab.sentinel_id)
        return after is not None and self.index.is_final_state(after)

    def is_dead_end(self, state: int) -> bool:
        """Complete, and nothing but a stop token may follow."""
        cached = self._dead_end.get(state)
        if cached is None:
            cached = self.may_end(state) and (
                self.index.get_allowed_tokens(state) == [self.vocab.sentinel_id]
            )
            self._dead_end[state] = cached
        return cached


def compile_outlines_grammar(key: GrammarKey, vocab: TokenVocab, max_bytes: int = 1 << 30,
                             jump_forward: bool = True, distances: bool = True) -> OutlinesGrammar:
    """Compile in this process (tests, benchmarks); the server compiles in its worker pool.
    ValueError with the reason if outlines-core refuses the constraint."""
    job = CompileJob(0, key, "outlines", jump_forward, distances, max_regex_chars=1 << 30,
                     max_grammar_bytes=max_bytes)
    return OutlinesGrammar(key, compile_job(job, vocab), vocab)


def _word_bits(token_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bitmask (word index, int32 bit value) of each id."""
    ids = np.array(token_ids, dtype=np.int64)
    return ids >> 5, (np.ones_like(ids) << (ids & 31)).astype(np.uint32).view(np.int32)
