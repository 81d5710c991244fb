"""CharDFA: a character-level DFA of a regex with its forced (singular) chains precomputed.

Jump-forward needs the text a grammar forces at a given point ("compressed FSM"): from a
state with exactly one live outgoing character that is not final, the next character is
fixed, and so on along the chain. The token-level outlines-core index cannot answer that
cheaply (a token is many characters and a state allows thousands of tokens), so we build an
interegular DFA of the same regex once per grammar and precompute, for every state, the
forced string and the state it ends in.

The two automata come from different regex engines. interegular's classes are narrower in
places (`\\d`, `\\w` are ASCII); when a matcher's text leaves this DFA it simply stops
jumping (see `GrammarMatcher`), it never forces text the token index would refuse.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import interegular
from interegular.fsm import anything_else

logger = logging.getLogger(__name__)

DEAD = -1  # the state after a character the DFA refuses


class ForcedChain(NamedTuple):
    text: str  # the characters every valid continuation starts with ("" if none)
    end_state: int  # the DFA state after `text`


class CharDFA:
    """Immutable; states are ints, `DEAD` is absorbing."""

    def __init__(self, fsm) -> None:
        self.initial: int = fsm.initial
        # Plain dicts, not interegular's Alphabet: it keys "any other character" by a module
        # singleton that does not survive pickling (grammars come back from compile workers).
        mapping = fsm.alphabet._symbol_mapping
        self._keys: dict[str, int] = {c: k for c, k in mapping.items() if c is not anything_else}
        self._other_key: int | None = mapping.get(anything_else)
        self._chars_of: dict[int, list] = {}
        for c, k in mapping.items():
            self._chars_of.setdefault(k, []).append(c)
        self._finals = frozenset(fsm.finals)
        live = _live_states(fsm)
        # state -> {transition key -> next}, restricted to states that can still accept
        self._map = {
            s: {k: t for k, t in edges.items() if t in live}
            for s, edges in fsm.map.items() if s in live
        }
        self._forced = self._forced_chains()

    @classmethod
    def from_regex(cls, regex: str) -> CharDFA:
        """Raises whatever interegular raises for syntax it does not support."""
        return cls(interegular.parse_pattern(regex).to_fsm())

    @property
    def num_states(self) -> int:
        return len(self._map)

    def step(self, state: int, char: str) -> int:
        """The state after `char`, or DEAD."""
        edges = self._map.get(state)
        if edges is None:
            return DEAD
        key = self._keys.get(char, self._other_key)
        return edges.get(key, DEAD) if key is not None else DEAD

    def walk(self, state: int, text: str) -> int:
        for char in text:
            state = self.step(state, char)
            if state == DEAD:
                break
        return state

    def forced(self, state: int) -> ForcedChain:
        """The forced chain from `state` (empty at final, branching and dead states)."""
        return self._forced.get(state, ForcedChain("", state))

    def _singular_edge(self, state: int) -> tuple[str, int] | None:
        """(char, next) if exactly one character may follow `state` and it may not end here."""
        if state in self._finals:
            return None
        edges = self._map[state]
        if len(edges) != 1:
            return None
        ((key, target),) = edges.items()
        chars = self._chars_of[key]
        if len(chars) != 1 or chars[0] is anything_else:
            return None
        return chars[0], target

    def _forced_chains(self) -> dict[int, ForcedChain]:
        edges = {s: e for s in self._map if (e := self._singular_edge(s)) is not None}
        chains: dict[int, ForcedChain] = {}
        for start in edges:
            # Walk to the first state that is not singular; memoized tails make this linear.
            path, state = [], start
            while state in edges and state not in chains and state not in path:
                path.append(state)
                state = edges[state][1]
            tail = chains.get(state, ForcedChain("", state))
            for s in reversed(path):  # a singular cycle never accepts; it was cut by `path`
                tail = ForcedChain(edges[s][0] + tail.text, tail.end_state)
                chains[s] = tail
        return chains


def _live_states(fsm) -> set[int]:
    """States from which a final state is reachable."""
    reverse: dict[int, set[int]] = {}
    for s, edges in fsm.map.items():
        for t in edges.values():
            reverse.setdefault(t, set()).add(s)
    live, frontier = set(fsm.finals), list(fsm.finals)
    while frontier:
        for s in reverse.get(frontier.pop(), ()):
            if s not in live:
                live.add(s)
                frontier.append(s)
    return live
