"""OutlinesMatcher: the per-request cursor over an `OutlinesGrammar`.

Two cursors move together on every accepted token:
  * the outlines-core `Guide` (token-level state; writes the bitmask);
  * the char-DFA state, advanced over the token's text, which gives `forced_string()`.
A byte-level token may end inside a UTF-8 character: its trailing bytes wait in `_pending`
until the next token completes the character, and nothing is forced meanwhile (so a jump
never starts or ends inside a character). If the text leaves the char DFA (the two regex
engines disagree, e.g. on Unicode classes) the char state becomes DEAD and this request
simply stops jumping; masking is unaffected.

Owned by one request; used only on the scheduler thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from outlines_core import Guide

from radixlm.runtime.constrained.char_dfa import DEAD

if TYPE_CHECKING:  # the grammar creates matchers, so it imports this module
    from radixlm.runtime.constrained.outlines_grammar import OutlinesGrammar

# Tokens that can be undone (jump-forward re-sync rolls back at most a few; speculative
# decoding would need its draft length).
MAX_ROLLBACK = 64


class _Step(NamedTuple):
    """One accepted token and the cursor state before it (what rollback restores)."""

    token_id: int
    is_stop: bool  # a stop token does not move the Guide
    char_state: int
    pending: bytes


class OutlinesMatcher:
    def __init__(self, grammar: OutlinesGrammar) -> None:
        self.grammar = grammar
        self._guide = Guide(grammar.index, max_rollback=MAX_ROLLBACK)
        self._history: list[_Step] = []
        self._char_state = grammar.char_dfa.initial if grammar.char_dfa else DEAD
        self._pending = b""  # bytes of a UTF-8 character not finished yet
        self._stopped = False  # a stop token was accepted

    # --- token stream -------------------------------------------------------------------

    def accept_token(self, token_id: int) -> bool:
        if self._stopped:
            return False
        step = _Step(token_id, token_id in self.grammar.vocab.stop_ids, self._char_state,
                     self._pending)
        if step.is_stop:
            if not self.grammar.may_end(self._guide.get_state()):
                return False
            self._stopped = True
        elif token_id == self.grammar.vocab.sentinel_id:
            return False
        else:
            try:
                self._guide.advance(token_id, return_tokens=False)
            except ValueError:  # outlines-core's answer to a token the state refuses
                return False
            self._advance_text(self.grammar.vocab.token_bytes[token_id])
        self._history.append(step)
        return True

    def rollback(self, num_tokens: int) -> None:
        if num_tokens <= 0:
            return
        if num_tokens > len(self._history):
            raise ValueError(f"cannot roll back {num_tokens} tokens: only "
                             f"{len(self._history)} were accepted")
        undone = self._history[-num_tokens:]
        guide_steps = sum(not s.is_stop for s in undone)
        if guide_steps > self._guide.get_allowed_rollback():
            raise ValueError(f"cannot roll back {num_tokens} tokens (limit {MAX_ROLLBACK})")
        if guide_steps:
            self._guide.rollback_state(guide_steps)
        del self._history[-num_tokens:]
        self._char_state, self._pending = undone[0].char_state, undone[0].pending
        self._stopped = False  # a stop token is always the last one accepted

    @property
    def num_accepted(self) -> int:
        return len(self._history)

    @property
    def accepted_ids(self) -> list[int]:
        """Every token accepted so far (== the request's output ids). Do not mutate."""
        return [s.token_id for s in self._history]

    # --- queries ------------------------------------------------------------------------

    def fill_bitmask(self, bitmask: torch.Tensor, row: int, remaining: int | None = None) -> None:
        """`remaining`: output tokens left to this request; with it (and a distance table),
        only tokens after which a complete match is still reachable in time are allowed."""
        g = self.grammar
        state = self._guide.get_state()
        if self.is_terminated():  # only a stop token may follow: never extend a finished output
            bitmask[row].zero_()
        elif remaining is not None and g.distances is not None and g.distances.needs_filter(state, remaining):
            self._fill_within(bitmask, row, state, remaining)
        else:  # straight into the row's memory: a narrow state costs ~3 us
            ptr = bitmask.data_ptr() + row * bitmask.stride(0) * bitmask.element_size()
            self._guide.write_mask_into(ptr, bitmask.shape[1], bitmask.element_size())
        if not self._stopped and g.index.get_next_state(state, g.vocab.sentinel_id) is None:
            return  # the common case: no sentinel bit to clear, no stop bits to add
        words = bitmask.numpy()[row]
        words[g.sentinel_word] &= g.sentinel_clear  # the sentinel is bookkeeping, not a token
        if self.is_accepting():  # ufunc.at: several stop ids may share a word
            np.bitwise_or.at(words, g.stop_words, g.stop_bits)

    def _fill_within(self, bitmask: torch.Tensor, row: int, state: int, remaining: int) -> None:
        tokens = self.grammar.distances.tokens_within(state, remaining).astype(np.int64)
        words = bitmask.numpy()[row]
        words[:] = 0
        bits = (np.ones_like(tokens) << (tokens & 31)).astype(np.uint32).view(np.int32)
        np.bitwise_or.at(words, tokens >> 5, bits)

    def min_tokens_to_end(self) -> int | None:
        """The fewest tokens to a complete match from here (0 once complete); None without a
        distance table."""
        if self.is_accepting():
            return 0
        d = self.grammar.distances
        return None if d is None else d.distance(self._guide.get_state())

    def is_terminated(self) -> bool:
        return self._stopped or self.grammar.is_dead_end(self._guide.get_state())

    def is_accepting(self) -> bool:
        """The output so far is a complete match (a stop token would be accepted)."""
        return self._stopped or self.grammar.may_end(self._guide.get_state())

    def forced_string(self) -> str:
        if self._stopped or self._pending or self._char_state == DEAD:
            return ""
        return self.grammar.char_dfa.forced(self._char_state).text

    def copy(self) -> OutlinesMatcher:
        twin = OutlinesMatcher(self.grammar)
        for step in self._history:  # a few us per token; a Guide has no cheap clone
            twin.accept_token(step.token_id)
        return twin

    # --- internals ----------------------------------------------------------------------

    def _advance_text(self, data: bytes) -> None:
        if self._char_state == DEAD:
            return
        text, self._pending = split_utf8(self._pending + data)
        if text is None:  # not UTF-8 at all: stop tracking text
            self._char_state, self._pending = DEAD, b""
            return
        self._char_state = self.grammar.char_dfa.walk(self._char_state, text)


def split_utf8(data: bytes) -> tuple[str | None, bytes]:
    """(complete characters, unfinished trailing bytes); text None if `data` is invalid."""
    try:
        return data.decode("utf-8"), b""
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data":  # only the tail is incomplete
            return data[: e.start].decode("utf-8"), data[e.start:]
        return None, b""
