"""Debug checks of a RadixCache: every counter it keeps recomputed by walking the tree.

The cache keeps its sizes, leaf set, id map and subtree counts up to date on every mutation
(radix_cache.py); these walks recount them and raise `AssertionError` naming the first that
disagrees. O(tree): tests and the scheduler's idle snapshot call them, never a hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radixlm.runtime.mem_cache.radix_cache import RadixCache


def check_tree(cache: RadixCache) -> None:
    _check_sizes(cache)
    _check_nodes(cache)
    _check_subtree_counts(cache)


def _check_sizes(cache: RadixCache) -> None:
    evictable = protected = 0
    for node in cache._walk():
        if node is not cache.root_node:
            if node.lock_ref > 0:
                protected += len(node.key)
            else:
                evictable += len(node.key)
    if (evictable, protected) != (cache._evictable_size, cache._protected_size):
        raise AssertionError(f"size counters (evictable={cache._evictable_size}, protected={cache._protected_size}) "
                             f"!= tree recount {(evictable, protected)}")


def _check_nodes(cache: RadixCache) -> None:
    leaves = set()
    for node in cache._walk():
        if node is not cache.root_node:
            if not node.key or len(node.key) != node.value.numel():
                raise AssertionError(f"{node!r}: key/value length mismatch or empty key")
            if not node.children:
                leaves.add(node)
        child_locks = 0
        for first, child in node.children.items():
            if child.parent is not node or child.key[0] != first:
                raise AssertionError(f"{child!r}: wrong parent link or child key")
            child_locks += child.lock_ref
        if node is not cache.root_node and node.lock_ref < child_locks:
            raise AssertionError(f"{node!r}: lock_ref below the sum of its children's")
    if leaves != cache._leaves:
        raise AssertionError("leaf set out of date")


def _check_subtree_counts(cache: RadixCache) -> None:
    nodes = cache._walk()
    if {n.id: n for n in nodes} != cache._nodes:
        raise AssertionError("node id map out of date")
    for node in reversed(nodes):  # children come after their parent in _walk's order
        expected = (1 + sum(c.subtree_nodes for c in node.children.values()),
                    len(node.key) + sum(c.subtree_tokens for c in node.children.values()))
        if (node.subtree_nodes, node.subtree_tokens) != expected:
            raise AssertionError(f"{node!r}: subtree counts {(node.subtree_nodes, node.subtree_tokens)} "
                                 f"!= recount {expected}")


def tree_text(cache: RadixCache) -> str:
    """The tree as indented text, one node per line."""
    lines = [f"root (evictable={cache._evictable_size}, protected={cache._protected_size})"]

    def visit(node, depth: int) -> None:
        for child in node.children.values():
            key = child.key if len(child.key) <= 8 else [*child.key[:8], "..."]
            lines.append(f"{'  ' * depth}{key} len={len(child.key)} lock_ref={child.lock_ref} "
                         f"t={child.last_access_time}")
            visit(child, depth + 1)

    visit(cache.root_node, 1)
    return "\n".join(lines)
