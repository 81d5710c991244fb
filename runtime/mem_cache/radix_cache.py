"""Radix cache: a token-level prefix tree over KV slots, so requests share computed prefixes.

Each edge of the tree is a segment of token ids (`TreeNode.key`) together with the KV slots
that hold those tokens' K/V (`TreeNode.value`, int64, same length). A path from the root
spells a token prefix; its slots are the prefix's KV. Page size is one token, so matches are
exact at token granularity.

Ownership (docs/architecture.md §3): every KV slot is either free in the `KVPool`, held by
the tree, or held by a running request outside the tree. Tree slots are *protected* while
some request locks a node at or below them (`inc_lock_ref`), otherwise *evictable*. The
scheduler keeps

    kv_pool.available_size() + evictable_size() + protected_size() + held_by_requests
        == kv_pool.size

and the sizes here are counters kept up to date on every mutation (`check_invariants`
recounts them by walking the tree).

For observers (the web view's tree snapshot, mem_cache/tree_snapshot.py) every node also
carries its subtree's node and token counts, kept up to date on every mutation by a walk to
the root (O(depth), the length of a path the mutation walked anyway), so a bounded snapshot
can say how much it left out without visiting it; a hit counter and the wall-clock times of
its last access and last hit; and the cache maps node ids to nodes (`node_by_id`).

The API is handle-based: `match_prefix` returns the deepest matched node, the caller locks
it while the request runs and hands it back to `cache_finished` / `cache_unfinished`.
`NoRadixCache` (no_radix_cache.py) has the same interface and caches nothing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import NamedTuple

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool
from radixlm.runtime.mem_cache.radix_checks import check_tree, tree_text


class TreeNode:
    """One edge of the radix tree: a token segment and its KV slots.

    `lock_ref` counts the locks taken at this node or below it (a lock walks to the root), so
    a node with `lock_ref == 0` has an entirely unlocked subtree.
    """

    __slots__ = ("id", "key", "value", "children", "parent", "lock_ref", "last_access_time",
                 "last_access_at", "hits", "last_hit_at", "subtree_nodes", "subtree_tokens")

    _ids = itertools.count()

    def __init__(
        self,
        key: list[int],
        value: torch.Tensor,
        parent: TreeNode | None,
        last_access_time: int = 0,
    ) -> None:
        self.id = next(TreeNode._ids)  # heap tie-breaker between nodes touched at once
        self.key = key  # token ids of this segment
        self.value = value  # int64 [len(key)] KV slots
        self.children: dict[int, TreeNode] = {}  # keyed by the child's first token
        self.parent = parent
        self.lock_ref = 0
        self.last_access_time = last_access_time
        self.last_access_at = time.monotonic()  # wall clock of the last access, for display
        self.hits = 0  # admitted requests whose cache match passed through or ended here
        self.last_hit_at = 0.0  # time.monotonic() of the last hit; 0.0: never hit
        self.subtree_nodes = 1  # nodes in this subtree, this one included
        self.subtree_tokens = len(key)  # tokens in this subtree, this node's key included

    def __repr__(self) -> str:
        return f"TreeNode(id={self.id}, len={len(self.key)}, lock_ref={self.lock_ref})"


class MatchResult(NamedTuple):
    slots: torch.Tensor  # int64 [prefix_len] KV slots of the longest cached prefix
    node: TreeNode  # deepest matched node (the root if nothing matched); the handle to lock


def _common_prefix_len(key: list[int], token_ids: list[int], start: int) -> int:
    """Length of the common prefix of `key` and `token_ids[start:]`."""
    n = min(len(key), len(token_ids) - start)
    # The slice compare runs in C; it settles the common case (a whole segment matches)
    # without a Python-level loop over thousands of tokens.
    if key[:n] == token_ids[start : start + n]:
        return n
    for i in range(n):
        if key[i] != token_ids[start + i]:
            return i
    return n


class RadixCache:
    """Prefix tree over the KV slots of `kv_pool`; frees slots back to it on eviction."""

    disabled = False

    def __init__(self, kv_pool: KVPool) -> None:
        self.kv_pool = kv_pool
        self.device = kv_pool.device
        self._init_tree()

    def _init_tree(self) -> None:
        # Forgets the tree without freeing its slots: used at construction and by `reset`.
        self._clock = 0  # monotonic access counter; higher means more recently used
        self.root_node = TreeNode([], self._empty_slots(), parent=None)
        # The root is permanently "locked" so that lock walks and evictions stop at it.
        self.root_node.lock_ref = 1
        self._evictable_size = 0
        self._protected_size = 0
        # Every non-root node without children. Eviction heaps the unlocked ones instead of
        # walking the whole tree.
        self._leaves: set[TreeNode] = set()
        # Every node by id, so an observer can name a node across snapshots (root included).
        self._nodes: dict[int, TreeNode] = {self.root_node.id: self.root_node}

    def _empty_slots(self) -> torch.Tensor:
        return torch.empty((0,), dtype=torch.int64, device=self.device)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    # ------------------------------------------------------------------ matching and insertion

    def match_prefix(self, token_ids: list[int]) -> MatchResult:
        """Find the longest cached prefix of `token_ids`.

        Mutates the tree shape (a node whose key the match ends inside is split, so the
        returned node covers exactly the match) and the access times of the matched path,
        but no sizes. The result is unprotected until the caller `inc_lock_ref`s its node;
        the caller must lock before anything can evict. To leave at least one token to
        compute (for the logits), match `token_ids[:-1]`.
        """
        now = self._tick()
        wall = time.monotonic()
        node = self.root_node
        matched: list[torch.Tensor] = []
        pos = 0
        while pos < len(token_ids):
            child = node.children.get(token_ids[pos])
            if child is None:
                break
            n = _common_prefix_len(child.key, token_ids, pos)
            ends_inside = n < len(child.key)
            if ends_inside:
                child = self._split(child, n)
            child.last_access_time = now
            child.last_access_at = wall
            matched.append(child.value)
            node = child
            pos += n
            if ends_inside:
                break
        slots = torch.cat(matched) if matched else self._empty_slots()
        return MatchResult(slots, node)

    def insert(self, token_ids: list[int], slots: torch.Tensor) -> int:
        """Add `token_ids` with their KV `slots` (aligned, same length) to the tree.

        Returns how many leading tokens were already in the tree. The tree takes ownership of
        `slots[result:]`; `slots[:result]` stay the caller's, and those that differ from the
        tree's slots (KV the caller computed again) must be freed by the caller.
        New nodes are unlocked, so their size is added to the evictable size.
        """
        if len(token_ids) != slots.numel():
            raise ValueError(
                f"insert needs one KV slot per token (got {len(token_ids)} tokens, "
                f"{slots.numel()} slots)"
            )
        now = self._tick()
        wall = time.monotonic()
        node = self.root_node
        pos = 0
        while pos < len(token_ids):
            child = node.children.get(token_ids[pos])
            if child is None:
                self._add_leaf(node, list(token_ids[pos:]), slots[pos:], now)
                return pos
            n = _common_prefix_len(child.key, token_ids, pos)
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access_time = now
            child.last_access_at = wall
            node = child
            pos += n
        return pos

    def _add_leaf(self, parent: TreeNode, key: list[int], slots: torch.Tensor, now: int) -> None:
        # A copy, so the caller's tensor (often a view of its own buffers) can be reused.
        value = slots.to(device=self.device, dtype=torch.int64, copy=True)
        leaf = TreeNode(key, value, parent, last_access_time=now)
        parent.children[key[0]] = leaf
        self._leaves.discard(parent)
        self._leaves.add(leaf)
        self._nodes[leaf.id] = leaf
        self._evictable_size += len(key)
        self._add_to_ancestors(parent, 1, len(key))

    @staticmethod
    def _add_to_ancestors(node: TreeNode | None, nodes: int, tokens: int) -> None:
        """Add to the subtree counts of `node` and every node above it."""
        while node is not None:
            node.subtree_nodes += nodes
            node.subtree_tokens += tokens
            node = node.parent

    def _split(self, node: TreeNode, split_len: int) -> TreeNode:
        """Cut `node`'s key after `split_len` tokens; return the new upper node.

        The upper node inherits `lock_ref` (every lock through `node` also passes through it),
        the access times and the hits (every match through `node` passed through it), so
        sizes and LRU order are unchanged.
        """
        upper = TreeNode(
            node.key[:split_len],
            node.value[:split_len],
            node.parent,
            last_access_time=node.last_access_time,
        )
        upper.lock_ref = node.lock_ref
        upper.last_access_at = node.last_access_at
        upper.hits = node.hits
        upper.last_hit_at = node.last_hit_at
        upper.subtree_nodes = node.subtree_nodes + 1
        upper.subtree_tokens = node.subtree_tokens
        upper.children = {node.key[split_len]: node}
        assert node.parent is not None, "the root is never split"
        node.parent.children[node.key[0]] = upper
        node.key = node.key[split_len:]
        node.value = node.value[split_len:]
        node.subtree_tokens -= split_len
        node.parent = upper
        self._nodes[upper.id] = upper
        self._add_to_ancestors(upper.parent, 1, 0)
        return upper

    def record_hit(self, node: TreeNode) -> None:
        """Count a request admitted with the match ending at `node`: one hit for it and every
        node above it, stamped with the time (the web view highlights fresh hits). Called once
        per admission, not per `match_prefix` (the scheduler re-matches waiting requests
        every step)."""
        now = time.monotonic()
        while node is not self.root_node:
            node.hits += 1
            node.last_hit_at = now
            assert node.parent is not None
            node = node.parent

    def node_by_id(self, node_id: int) -> TreeNode | None:
        """The node with this id while it is in the tree (None once evicted or reset)."""
        return self._nodes.get(node_id)

    def num_nodes(self) -> int:
        """Nodes in the tree, the root not counted."""
        return self.root_node.subtree_nodes - 1

    # ------------------------------------------------------------------ locking

    def inc_lock_ref(self, node: TreeNode) -> None:
        """Lock the path from `node` to the root so eviction cannot take it.

        A node's first lock moves its size from evictable to protected. Locking the root is a
        no-op. Every `inc_lock_ref` must be paired with one `dec_lock_ref` of the same node.
        """
        while node is not self.root_node:
            if node.lock_ref == 0:
                self._evictable_size -= len(node.key)
                self._protected_size += len(node.key)
            node.lock_ref += 1
            assert node.parent is not None
            node = node.parent

    def dec_lock_ref(self, node: TreeNode) -> None:
        """Undo one `inc_lock_ref(node)`; a node's last unlock makes its size evictable again."""
        while node is not self.root_node:
            if node.lock_ref <= 0:
                raise RuntimeError(f"dec_lock_ref on an unlocked node {node!r} (unpaired unlock)")
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._protected_size -= len(node.key)
                self._evictable_size += len(node.key)
            assert node.parent is not None
            node = node.parent

    # ------------------------------------------------------------------ eviction

    def evict(self, num_tokens: int) -> int:
        """Free at least `num_tokens` tree slots to the pool, least recently used leaves first.

        Only unlocked nodes are evicted, leaves first; a parent becomes a candidate once its
        children are gone. Returns the number of tokens freed: it may exceed `num_tokens` by
        up to one node (nodes are evicted whole), or fall short when nothing more is
        evictable.
        """
        if num_tokens <= 0:
            return 0
        heap = [(n.last_access_time, n.id, n) for n in self._leaves if n.lock_ref == 0]
        heapq.heapify(heap)
        freed: list[torch.Tensor] = []
        # Subtree counts are settled once at the end: each surviving node gets what was removed
        # below it, so evicting a whole branch walks to the root once, not once per node.
        removed: dict[TreeNode, list[int]] = {}  # surviving node -> [nodes, tokens] gone below it
        num_evicted = 0
        while num_evicted < num_tokens and heap:
            _, _, node = heapq.heappop(heap)
            parent = node.parent
            assert parent is not None
            del parent.children[node.key[0]]
            self._leaves.discard(node)
            del self._nodes[node.id]
            below = removed.pop(node, (0, 0))
            gone = removed.setdefault(parent, [0, 0])
            gone[0] += 1 + below[0]
            gone[1] += len(node.key) + below[1]
            freed.append(node.value)
            num_evicted += len(node.key)
            self._evictable_size -= len(node.key)
            if parent is not self.root_node and not parent.children:
                self._leaves.add(parent)
                if parent.lock_ref == 0:
                    heapq.heappush(heap, (parent.last_access_time, parent.id, parent))
        for node, (nodes, tokens) in removed.items():
            self._add_to_ancestors(node, -nodes, -tokens)
        if freed:
            # One concat into the free list instead of one per node.
            self.kv_pool.free(torch.cat(freed))
        return num_evicted

    # ------------------------------------------------------------------ sizes and reset

    def evictable_size(self) -> int:
        """Tokens in the tree that no request locks (reclaimable by `evict`)."""
        return self._evictable_size

    def protected_size(self) -> int:
        """Tokens in the tree on a locked path."""
        return self._protected_size

    def total_size(self) -> int:
        return self._evictable_size + self._protected_size

    def reset(self) -> None:
        """Free every tree slot back to the pool and empty the tree. Only valid with no locks."""
        if self._protected_size != 0:
            raise RuntimeError(
                f"reset with {self._protected_size} protected tokens: "
                "release every lock (finish or abort all requests) first"
            )
        slots = [node.value for node in self._walk() if node is not self.root_node]
        if slots:
            self.kv_pool.free(torch.cat(slots))
        self._init_tree()

    # ------------------------------------------------------------------ request-level glue

    def cache_finished(
        self, token_ids: list[int], slots: torch.Tensor, locked_node: TreeNode
    ) -> None:
        """Hand a finished request's KV to the tree and release its lock.

        `token_ids` are exactly the tokens whose KV was computed and `slots` their slots; the
        leading part of `slots` is the tree prefix the request matched (`locked_node`'s path).
        Inserts, frees the slots the request computed for tokens the tree already had, then
        `dec_lock_ref(locked_node)`. Afterwards the request holds no slots.
        """
        self._insert_and_free_duplicates(token_ids, slots, locked_node)
        self.dec_lock_ref(locked_node)

    def cache_unfinished(
        self, token_ids: list[int], slots: torch.Tensor, locked_node: TreeNode
    ) -> MatchResult:
        """Hand a continuing request's computed KV to the tree and move its lock down.

        For a chunked-prefill step or a retraction that keeps the computed part. Same
        arguments as `cache_finished`. Inserts, frees duplicates, re-matches `token_ids`,
        locks the new node and unlocks `locked_node`. Returns the new match, whose slots
        (length `len(token_ids)`) are the tree's own: the caller writes them into its
        `req_to_token` row and keeps the returned node as its lock handle.
        """
        self._insert_and_free_duplicates(token_ids, slots, locked_node)
        result = self.match_prefix(token_ids)
        assert result.slots.numel() == len(token_ids), "tokens just inserted must match"
        self.inc_lock_ref(result.node)
        self.dec_lock_ref(locked_node)
        return result

    def _insert_and_free_duplicates(
        self, token_ids: list[int], slots: torch.Tensor, locked_node: TreeNode
    ) -> None:
        # slots[:prefix_len] came from the tree (locked, so still there); slots
        # [prefix_len:already_cached] were computed by this request while another request
        # inserted the same tokens first, so the tree keeps its copy and these are freed.
        prefix_len = self._locked_prefix_len(token_ids, locked_node)
        already_cached = self.insert(token_ids, slots)
        self.kv_pool.free(slots[prefix_len:already_cached])

    def _locked_prefix_len(self, token_ids: list[int], locked_node: TreeNode) -> int:
        # Checked before inserting, so a caller bug raises without corrupting the tree.
        segments = []
        while locked_node is not self.root_node:
            segments.append(locked_node.key)
            assert locked_node.parent is not None
            locked_node = locked_node.parent
        pos = 0
        for key in reversed(segments):
            if list(token_ids[pos : pos + len(key)]) != key:
                raise RuntimeError(
                    f"token_ids differ from the locked prefix at or after position {pos}; "
                    "pass the request's full computed tokens, starting with its matched prefix"
                )
            pos += len(key)
        return pos

    # ------------------------------------------------------------------ debugging

    def _walk(self) -> list[TreeNode]:
        nodes, stack = [], [self.root_node]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(node.children.values())
        return nodes

    def check_invariants(self) -> None:
        """Debug check, O(tree): counters, leaf set, node shapes and lock counts are
        consistent (radix_checks.py). Raises `AssertionError` naming the first violation."""
        check_tree(self)

    def pretty_print(self) -> str:
        """The tree as indented text, one node per line (debug)."""
        return tree_text(self)
