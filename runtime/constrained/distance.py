"""DistanceTable: for every state of a token index, the fewest tokens to a complete match.

Budget-aware decoding (`complete_within_budget`) needs, at each step, the tokens after which
a valid end is still reachable in the tokens left. Computed once per grammar, in the compile
worker, from the outlines-core index's transitions:

  * `dist[s]`: the length of the shortest token path from state s to a state where the
    output may end (the end sentinel leads to a final state), by breadth-first search
    backwards from those states over every real token edge (the sentinel and stop tokens
    are not edges: a stop token ends the output, it does not move the index);
  * per state, the out-edges to states *closer* than its farthest successor, sorted by the
    successor's distance. With r tokens left a request may take a token t only if
    dist[next(s, t)] <= r - 1; when r - 1 is at least the farthest successor's distance,
    every allowed token qualifies and the index's own mask is used as is (the common case);
    otherwise the allowed tokens are a prefix of this sorted list.

Memory: one int per state, plus the stored edges, which are few: in a JSON string every
content token leads to the same state, so none of them is stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNREACHABLE = np.iinfo(np.int32).max


class DistanceTable:
    def __init__(self, dist: dict[int, int], far: dict[int, int], edges: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        self._dist = dist  # state -> fewest tokens to a complete match
        self._far = far  # state -> distance of its farthest successor
        self._edges = edges  # state -> (tokens, their successors' distances), closer ones, sorted

    @classmethod
    def build(cls, transitions: dict[int, dict[int, int]], accepting: set[int],
              skip_tokens: set[int]) -> DistanceTable:
        """From an index's `get_transitions()`; `skip_tokens`: ids that are not text (the end
        sentinel, stop tokens)."""
        states = sorted(set(transitions) | {n for edges in transitions.values() for n in edges.values()}
                        | accepting)
        dense = {s: i for i, s in enumerate(states)}
        src, tok, dst = _edge_arrays(transitions, dense, skip_tokens)
        dist = _backward_bfs(len(states), src, dst, [dense[s] for s in accepting])
        return cls(*_tables(states, src, tok, dist[dst], dist))

    def distance(self, state: int) -> int:
        return self._dist.get(state, UNREACHABLE)

    def needs_filter(self, state: int, remaining: int) -> bool:
        """True if some allowed token at `state` would leave no way to finish in `remaining`
        tokens (counting the token itself)."""
        return remaining - 1 < self._far.get(state, 0)

    def tokens_within(self, state: int, remaining: int) -> np.ndarray:
        """The tokens at `state` after which a complete match takes at most remaining - 1 more."""
        tokens, dists = self._edges.get(state, (_EMPTY, _EMPTY))
        return tokens[: int(np.searchsorted(dists, remaining - 1, side="right"))]

    def size_bytes(self) -> int:
        stored = sum(t.nbytes + d.nbytes for t, d in self._edges.values())
        return stored + 64 * len(self._dist)

    def __getstate__(self) -> dict[str, Any]:
        return {"dist": self._dist, "far": self._far, "edges": self._edges}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._dist, self._far, self._edges = state["dist"], state["far"], state["edges"]


_EMPTY = np.zeros(0, dtype=np.int32)


def _edge_arrays(transitions: dict[int, dict[int, int]], dense: dict[int, int],
                 skip: set[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src, tok, dst = [], [], []
    for s, edges in transitions.items():
        i = dense[s]
        for t, n in edges.items():
            if t not in skip:
                src.append(i)
                tok.append(t)
                dst.append(dense[n])
    as_array = lambda xs: np.asarray(xs, dtype=np.int32)  # noqa: E731
    return as_array(src), as_array(tok), as_array(dst)


def _backward_bfs(n: int, src: np.ndarray, dst: np.ndarray, targets: list[int]) -> np.ndarray:
    """dist[i]: fewest edges from state i to a target; every edge is visited once."""
    order = np.argsort(dst, kind="stable")
    preds = src[order]
    ptr = np.searchsorted(dst[order], np.arange(n + 1))
    dist = np.full(n, UNREACHABLE, dtype=np.int32)
    frontier = np.unique(np.asarray(targets, dtype=np.int64))
    dist[frontier] = 0
    level = 0
    while frontier.size:
        level += 1
        found = np.concatenate([preds[ptr[f]:ptr[f + 1]] for f in frontier]) if frontier.size else _EMPTY
        found = np.unique(found)
        frontier = found[dist[found] == UNREACHABLE]
        dist[frontier] = level
    return dist


def _tables(states: list[int], src: np.ndarray, tok: np.ndarray, succ_dist: np.ndarray,
            dist: np.ndarray) -> tuple[dict, dict, dict]:
    far = np.zeros(len(states), dtype=np.int64)
    np.maximum.at(far, src, succ_dist)
    closer = succ_dist < far[src]
    order = np.lexsort((succ_dist[closer], src[closer]))
    c_src, c_tok, c_dist = src[closer][order], tok[closer][order], succ_dist[closer][order]
    bounds = np.flatnonzero(np.diff(c_src)) + 1
    edges = {
        states[int(group_src[0])]: (group_tok.astype(np.int32), group_dist.astype(np.int32))
        for group_src, group_tok, group_dist in zip(np.split(c_src, bounds), np.split(c_tok, bounds),
                                                    np.split(c_dist, bounds))
        if group_src.size
    }
    has_edges = np.zeros(len(states), dtype=bool)
    has_edges[src] = True
    far_map = {states[i]: int(far[i]) for i in np.flatnonzero(has_edges)}
    dist_map = {s: int(d) for s, d in zip(states, dist.tolist())}
    return dist_map, far_map, edges
