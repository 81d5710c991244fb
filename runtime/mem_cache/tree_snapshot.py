"""A bounded snapshot of the radix tree for observers (the web view's `GET /cache/tree`).

    snap = take_snapshot(cache, TreeQuery(node_id=None, depth=4, max_nodes=256))

Taken on the scheduler thread between two steps (scheduler_process.py answers a
`CacheTreeRequest`), so it must cost about a millisecond whatever the tree's size: it visits
the top `depth` levels below the start node breadth-first, at most `max_nodes` nodes and at
most `SCAN_BUDGET` children in all, and says what it left out from the per-node subtree
counts the radix cache keeps up to date (`TreeNode.subtree_nodes` / `subtree_tokens`), never
by walking the rest. docs/benchmarks.md has its cost at 1k, 10k and 100k nodes
(benchmarks/bench_tree_snapshot.py).

Token ids, not text: node previews are decoded by the HTTP process (web_view.py), so the
scheduler spends no time in the tokenizer. The result is plain data, pickled over zmq; each
node is a plain tuple in `NodeView`'s field order (a NamedTuple pickles 4x slower, and the
pickling is part of the stall too).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from radixlm.runtime.mem_cache.radix_cache import TreeNode

PREVIEW_TOKENS = 24  # leading ids of each node's key sent for its text preview
MAX_CHILDREN = 64  # children listed per node, largest subtrees first; the rest is counted
SCAN_LIMIT = 512  # children considered per node: the most recently inserted, when there are more
SCAN_BUDGET = 4096  # children considered per snapshot; past it, nodes stay collapsed
_by_size = attrgetter("subtree_tokens")


@dataclass(frozen=True)
class TreeQuery:
    """What to snapshot: from `node_id` (None: the root) down `depth` levels, at most
    `max_nodes` nodes; children whose whole subtree holds fewer than `min_tokens` tokens are
    counted, not listed."""

    node_id: int | None = None
    depth: int = 4
    max_nodes: int = 256
    min_tokens: int = 0


class NodeView(NamedTuple):
    """One listed node (`TreeSnapshot.nodes` holds these as plain tuples; `views()` names them)."""

    id: int  # the node's for its life; a split keeps it on the lower half, the upper is new
    parent: int | None  # None for the snapshot's start node
    depth: int  # levels below the start node (0: the start node)
    tokens: int  # tokens of this node's own key segment
    preview: list[int]  # its first PREVIEW_TOKENS token ids
    lock_ref: int  # locks of running requests at or below this node
    hits: int
    last_access_s: float  # seconds since the last match or insert through it
    last_hit_s: float | None  # seconds since its last hit; None: never hit
    subtree_nodes: int  # this node and everything below it, listed or not
    subtree_tokens: int
    children: int  # its children in the tree
    hidden_nodes: int  # nodes below it that the snapshot does not list
    hidden_tokens: int


@dataclass
class TreeSnapshot:
    radix_cache: bool  # False with --disable-radix-cache (the tree stays empty)
    start_id: int
    path: list[int]  # node ids from the root down to the start node
    total_nodes: int  # in the whole tree, the root not counted
    total_tokens: int
    evictable_tokens: int
    protected_tokens: int
    truncated: bool  # some node within `depth` has children that are counted, not listed
    took_s: float  # time spent on the scheduler thread
    nodes: list[tuple] = field(default_factory=list)  # NodeView tuples, breadth-first, start first

    def views(self) -> list[NodeView]:
        return [NodeView(*n) for n in self.nodes]


def take_snapshot(cache, query: TreeQuery) -> TreeSnapshot | None:
    """The snapshot `query` asks for, or None when its start node is not in the tree (evicted)."""
    start_time = time.perf_counter()
    start = cache.root_node if query.node_id is None else cache.node_by_id(query.node_id)
    if start is None:
        return None
    now = time.monotonic()
    views: list[tuple] = []
    truncated = _visit(start, query, now, views)
    root = cache.root_node
    return TreeSnapshot(
        radix_cache=not getattr(cache, "disabled", False), start_id=start.id, path=_path(start),
        total_nodes=root.subtree_nodes - 1, total_tokens=root.subtree_tokens,
        evictable_tokens=cache.evictable_size(), protected_tokens=cache.protected_size(),
        truncated=truncated, took_s=time.perf_counter() - start_time, nodes=views,
    )


def _visit(start: TreeNode, query: TreeQuery, now: float, views: list[tuple]) -> bool:
    """Append the views breadth-first; True if some children within `depth` are not listed."""
    queue: deque[tuple[TreeNode, int | None, int]] = deque([(start, None, 0)])
    budget = SCAN_BUDGET
    truncated = False
    while queue:
        node, parent_id, depth = queue.popleft()
        room = query.max_nodes - len(views) - len(queue) - 1  # keep a place for the queued ones
        shown: list[TreeNode] = []
        if depth < query.depth and node.children and room > 0 and budget > 0:
            shown, scanned = _largest_children(node, query.min_tokens, min(room, MAX_CHILDREN))
            budget -= scanned
        truncated = truncated or (depth < query.depth and len(shown) < len(node.children))
        views.append(_view(node, parent_id, depth, now, shown))
        queue.extend((child, node.id, depth + 1) for child in shown)
    return truncated


def _largest_children(node: TreeNode, min_tokens: int, limit: int) -> tuple[list[TreeNode], int]:
    """(up to `limit` children holding at least `min_tokens`, largest first; children scanned)."""
    kids = node.children
    if len(kids) <= SCAN_LIMIT:
        candidates = list(kids.values())
    else:  # a very wide node: the most recently inserted branches are the likeliest live ones
        candidates = list(itertools.islice(reversed(kids.values()), SCAN_LIMIT))
    scanned = len(candidates)
    if min_tokens > 0:
        candidates = [c for c in candidates if c.subtree_tokens >= min_tokens]
    candidates.sort(key=_by_size, reverse=True)
    return candidates[:limit], scanned


def _view(node: TreeNode, parent_id: int | None, depth: int, now: float,
          shown: list[TreeNode]) -> tuple:
    """`node` as a NodeView-ordered tuple."""
    listed_nodes = listed_tokens = 0
    for child in shown:
        listed_nodes += child.subtree_nodes
        listed_tokens += child.subtree_tokens
    return (
        # the root's own lock is permanent (it stops lock walks), not a request's
        node.id, parent_id, depth, len(node.key), node.key[:PREVIEW_TOKENS],
        node.lock_ref if node.parent is not None else 0,
        node.hits, now - node.last_access_at,
        now - node.last_hit_at if node.last_hit_at else None,
        node.subtree_nodes, node.subtree_tokens, len(node.children),
        node.subtree_nodes - 1 - listed_nodes, node.subtree_tokens - len(node.key) - listed_tokens,
    )


def _path(node: TreeNode) -> list[int]:
    ids = []
    while node is not None:
        ids.append(node.id)
        node = node.parent
    return ids[::-1]
