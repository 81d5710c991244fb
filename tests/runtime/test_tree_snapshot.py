"""Specification of the radix-tree snapshot behind the web view (mem_cache/tree_snapshot.py):
bounded by depth, node count and a scan budget, honest about what it leaves out, expandable
from any node, on real RadixCache trees."""

import torch

from radixlm.runtime.mem_cache import tree_snapshot
from radixlm.runtime.mem_cache.memory_pool import KVPool
from radixlm.runtime.mem_cache.no_radix_cache import NoRadixCache
from radixlm.runtime.mem_cache.radix_cache import RadixCache
from radixlm.runtime.mem_cache.tree_snapshot import TreeQuery, take_snapshot


def make_cache(num_slots: int = 4096) -> RadixCache:
    return RadixCache(KVPool(num_slots, num_layers=1, num_kv_heads=1, head_dim=1, dtype=torch.float32))


def insert(cache: RadixCache, token_ids: list[int]) -> None:
    match = cache.match_prefix(token_ids)
    new = cache.kv_pool.alloc(len(token_ids) - len(match.slots))
    cache.insert(token_ids, torch.cat([match.slots, new]))


def shared_prefix_tree() -> RadixCache:
    """root -> [1..10] (10 tokens) -> three branches of 5, 3 and 1 tokens."""
    cache = make_cache()
    prefix = list(range(1, 11))
    for branch in ([100, 101, 102, 103, 104], [200, 201, 202], [300]):
        insert(cache, prefix + branch)
    return cache


def by_depth(snap) -> dict[int, list]:
    out: dict[int, list] = {}
    for v in snap.views():
        out.setdefault(v.depth, []).append(v)
    return out


def test_the_snapshot_lists_the_shared_prefix_and_its_branches_largest_first():
    snap = take_snapshot(shared_prefix_tree(), TreeQuery())
    levels = by_depth(snap)
    (shared,) = levels[1]
    assert (shared.tokens, shared.preview) == (10, list(range(1, 11)))
    assert [v.tokens for v in levels[2]] == [5, 3, 1]
    assert all(v.parent == shared.id for v in levels[2])
    assert (snap.total_nodes, snap.total_tokens, snap.truncated) == (4, 19, False)


def test_nodes_below_the_depth_are_counted_on_their_listed_ancestor():
    snap = take_snapshot(shared_prefix_tree(), TreeQuery(depth=1))
    start, shared = snap.views()
    assert (shared.hidden_nodes, shared.hidden_tokens, shared.children) == (3, 9, 3)
    assert (start.hidden_nodes, start.hidden_tokens) == (0, 0)
    assert not snap.truncated  # everything within the asked depth is listed


def test_max_nodes_bounds_the_listing_and_the_rest_is_counted():
    cache = make_cache()
    for first in range(1, 41):
        insert(cache, [first, 7, 7])
    snap = take_snapshot(cache, TreeQuery(max_nodes=10))
    assert len(snap.nodes) == 10
    start = snap.views()[0]
    assert (start.hidden_nodes, start.hidden_tokens) == (31, 93)
    assert snap.truncated


def test_children_smaller_than_min_tokens_are_counted_not_listed():
    snap = take_snapshot(shared_prefix_tree(), TreeQuery(min_tokens=3))
    levels = by_depth(snap)
    assert [v.tokens for v in levels[2]] == [5, 3]
    assert (levels[1][0].hidden_nodes, levels[1][0].hidden_tokens) == (1, 1)


def test_a_snapshot_from_a_node_starts_there_and_names_its_path():
    cache = shared_prefix_tree()
    shared_id = take_snapshot(cache, TreeQuery()).views()[1].id
    snap = take_snapshot(cache, TreeQuery(node_id=shared_id, depth=1))
    assert snap.start_id == shared_id
    assert snap.path == [cache.root_node.id, shared_id]
    assert [v.depth for v in snap.views()] == [0, 1, 1, 1]


def test_an_evicted_node_disappears_and_cannot_be_expanded():
    cache = shared_prefix_tree()
    leaf = next(v for v in take_snapshot(cache, TreeQuery()).views() if v.tokens == 1)
    cache.evict(cache.evictable_size())
    assert take_snapshot(cache, TreeQuery(node_id=leaf.id)) is None
    snap = take_snapshot(cache, TreeQuery())
    assert [v.id for v in snap.views()] == [cache.root_node.id]
    assert snap.total_nodes == 0


def test_locks_and_hits_show_on_the_path_of_a_running_request():
    cache = shared_prefix_tree()
    match = cache.match_prefix(list(range(1, 11)) + [200, 201, 202])
    cache.inc_lock_ref(match.node)
    cache.record_hit(match.node)
    views = {v.tokens: v for v in take_snapshot(cache, TreeQuery()).views()}
    assert (views[10].lock_ref, views[10].hits) == (1, 1)
    assert (views[3].lock_ref, views[3].hits) == (1, 1)
    assert (views[5].lock_ref, views[5].hits, views[5].last_hit_s) == (0, 0, None)
    assert views[3].last_hit_s is not None and views[3].last_hit_s >= 0


def test_a_very_wide_node_costs_a_bounded_scan(monkeypatch):
    monkeypatch.setattr(tree_snapshot, "SCAN_LIMIT", 8)
    cache = make_cache()
    for first in range(1, 101):
        insert(cache, [first] * (first % 7 + 1))
    snap = take_snapshot(cache, TreeQuery())
    listed = snap.views()[1:]
    assert len(listed) == 8  # only the 8 most recently inserted children were considered
    assert {v.preview[0] for v in listed} == set(range(93, 101))
    assert snap.views()[0].hidden_nodes == 92


def test_the_scan_budget_leaves_later_nodes_collapsed(monkeypatch):
    monkeypatch.setattr(tree_snapshot, "SCAN_BUDGET", 3)
    snap = take_snapshot(shared_prefix_tree(), TreeQuery())
    # the root's one child used the budget's first scan; the shared node's three children
    # exhaust it, so they are listed but not expanded (they have no children anyway)
    assert len(snap.nodes) == 5
    cache = make_cache()
    for a in (1, 2, 3):
        for b in (10, 20):
            insert(cache, [a, b])
    snap = take_snapshot(cache, TreeQuery())
    assert [v.depth for v in snap.views()] == [0, 1, 1, 1]  # depth 2 never scanned
    assert snap.truncated


def test_a_disabled_cache_snapshots_as_an_empty_tree():
    cache = NoRadixCache(KVPool(16, 1, 1, 1, torch.float32))
    snap = take_snapshot(cache, TreeQuery())
    assert not snap.radix_cache
    assert snap.total_nodes == 0 and len(snap.nodes) == 1
