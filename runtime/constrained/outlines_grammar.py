"""OutlinesGrammar: a compiled constraint on outlines-core (token index + char DFA).

The token index is built for `(?:regex)<END_SENTINEL>` (see vocabulary.py for why): a state
may end the output iff the sentinel token leads from it to a final state; outlines-core's eos
entries (only ever after the sentinel) are not used.

`compile_outlines_grammar` runs in a `GrammarManager` worker thread: the token-level
`outlines_core.Index` (Rust, releases the GIL; cost grows with states x allowed tokens, see
docs/constrained-decoding.md §2) and the interegular character DFA used for
jump-forward (pure Python, about a fifth to half of the Index's time). Both are immutable;
the grammar is shared by every request with the same `GrammarKey`.
"""

from __future__ import annotations

import logging
import pickle
import time

import numpy as np
from outlines_core import Index

from radixlm.runtime.constrained.char_dfa import CharDFA
from radixlm.runtime.constrained.constraints import GrammarKey
from radixlm.runtime.constrained.outlines_matcher import OutlinesMatcher
from radixlm.runtime.constrained.vocabulary import END_SENTINEL, TokenVocab

logger = logging.getLogger(__name__)


class OutlinesGrammar:
    """Immutable after construction except for the lazily filled per-state cache below,
    whose entries are pure functions of the index (racing writers store equal values)."""

    def __init__(self, key: GrammarKey, regex: str, index: Index, vocab: TokenVocab,
                 char_dfa: CharDFA | None, compile_s: float, size_bytes: int) -> None:
        self.key = key
        self.regex = regex
        self.index = index
        self.vocab = vocab
        self.char_dfa = char_dfa  # None: jump-forward unavailable for this regex
        self.compile_s = compile_s
        self.size_bytes = size_bytes
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


def compile_outlines_grammar(key: GrammarKey, regex: str, vocab: TokenVocab, max_bytes: int,
                             jump_forward: bool = True) -> OutlinesGrammar:
    """Build the token index for `regex`, and its char DFA if `jump_forward`. ValueError with
    the reason if outlines-core refuses it (syntax, lookarounds, `\\b`, text the vocabulary
    cannot spell) or the index exceeds `max_bytes`."""
    start = time.perf_counter()
    index_regex = f"(?:{regex}){END_SENTINEL}"
    try:
        index = Index(index_regex, vocab.vocabulary)
    except (ValueError, RuntimeError, TypeError) as e:
        reason = str(e).replace(index_regex, regex)  # the user never wrote the sentinel
        raise ValueError(f"cannot compile {key.kind}: {reason}") from None
    # The serialized index is a fair size estimate (its transition table dominates) and cheap
    # next to the build (~3 ms per MB).
    size_bytes = len(pickle.dumps(index))
    if size_bytes > max_bytes:
        raise ValueError(f"{key.kind} is too complex: its automaton takes {size_bytes >> 20} MiB "
                         f"(limit {max_bytes >> 20} MiB)")
    # The char DFA is pure Python (holds the GIL): ~0.1 s for a small schema, ~2 s for a
    # 1.3k-character one; skipped when jump-forward is off.
    char_dfa = _char_dfa_or_none(regex) if jump_forward else None
    compile_s = time.perf_counter() - start
    logger.info("compiled %s grammar in %.3f s (%d KiB, jump-forward %s)", key.kind, compile_s,
                size_bytes >> 10, "on" if char_dfa else "off")
    return OutlinesGrammar(key, regex, index, vocab, char_dfa, compile_s, size_bytes)


def _word_bits(token_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bitmask (word index, int32 bit value) of each id."""
    ids = np.array(token_ids, dtype=np.int64)
    return ids >> 5, (np.ones_like(ids) << (ids & 31)).astype(np.uint32).view(np.int32)


def _char_dfa_or_none(regex: str) -> CharDFA | None:
    """interegular supports less syntax than outlines-core; without it we only lose jumps."""
    try:
        return CharDFA.from_regex(regex)
    except Exception as e:  # interegular raises several unrelated types on unsupported syntax
        logger.info("no jump-forward for this regex (interegular: %s: %s)", type(e).__name__, e)
        return None
