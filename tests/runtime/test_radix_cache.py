"""Specification of the radix cache: matching, insertion, locking, eviction, request glue.

Every test checks the pool invariant of docs/architecture.md §3,
`free + evictable + protected + held by requests == pool size`, where it matters.
"""

import random
from dataclasses import dataclass

import pytest
import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool
from radixlm.runtime.mem_cache.no_radix_cache import NoRadixCache
from radixlm.runtime.mem_cache.radix_cache import MatchResult, RadixCache, TreeNode


def make_cache(num_slots: int = 64) -> tuple[RadixCache, KVPool]:
    pool = KVPool(num_slots, num_layers=1, num_kv_heads=1, head_dim=1, dtype=torch.float32)
    return RadixCache(pool), pool


def insert_new(cache: RadixCache, token_ids: list[int]) -> torch.Tensor:
    """Allocate fresh slots for `token_ids`, insert them, free the duplicates; return slots."""
    slots = cache.kv_pool.alloc(len(token_ids))
    already_cached = cache.insert(token_ids, slots)
    cache.kv_pool.free(slots[:already_cached])
    return slots


def assert_pool_invariant(cache: RadixCache, held_by_requests: int = 0) -> None:
    cache.check_invariants()
    cache.kv_pool.check_invariants()
    assert (
        cache.kv_pool.available_size()
        + cache.evictable_size()
        + cache.protected_size()
        + held_by_requests
        == cache.kv_pool.size
    )


# ---------------------------------------------------------------- matching and insertion


def test_empty_cache_matches_nothing_and_returns_the_root():
    cache, _ = make_cache()
    result = cache.match_prefix([1, 2, 3])
    assert isinstance(result, MatchResult)
    assert result.slots.numel() == 0
    assert result.slots.dtype == torch.int64
    assert result.node is cache.root_node


def test_match_returns_the_slots_of_an_inserted_sequence():
    cache, _ = make_cache()
    slots = insert_new(cache, [1, 2, 3, 4])
    result = cache.match_prefix([1, 2, 3, 4])
    assert result.slots.tolist() == slots.tolist()
    assert result.node.key == [1, 2, 3, 4]


def test_match_returns_the_longest_cached_prefix_of_a_longer_query():
    cache, _ = make_cache()
    slots = insert_new(cache, [1, 2, 3])
    assert cache.match_prefix([1, 2, 3, 9, 9]).slots.tolist() == slots.tolist()


def test_match_of_an_unknown_first_token_is_empty():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    assert cache.match_prefix([2, 3]).slots.numel() == 0


def test_match_ending_inside_a_node_splits_it_so_the_handle_covers_exactly_the_match():
    cache, _ = make_cache()
    slots = insert_new(cache, [1, 2, 3, 4, 5])
    result = cache.match_prefix([1, 2, 7])
    assert result.slots.tolist() == slots[:2].tolist()
    assert result.node.key == [1, 2]
    assert list(result.node.children) == [3]
    assert result.node.children[3].key == [3, 4, 5]
    # The split changes the shape only: the whole sequence still matches.
    assert cache.match_prefix([1, 2, 3, 4, 5]).slots.tolist() == slots.tolist()
    assert_pool_invariant(cache)


def test_insert_returns_how_many_leading_tokens_were_already_cached():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    slots = cache.kv_pool.alloc(5)
    assert cache.insert([1, 2, 3, 4, 5], slots) == 3
    assert cache.insert([1, 2, 3, 4, 5], slots) == 5
    assert cache.insert([1, 2, 3, 4, 5, 6][:2], slots[:2]) == 2


def test_insert_keeps_the_tree_slots_of_the_cached_part():
    cache, _ = make_cache()
    first = insert_new(cache, [1, 2, 3])
    second = insert_new(cache, [1, 2, 3, 4])
    assert cache.match_prefix([1, 2, 3, 4]).slots.tolist() == [*first.tolist(), second[3].item()]
    assert_pool_invariant(cache)


def test_insert_diverging_inside_a_node_splits_it_into_a_branch():
    cache, _ = make_cache()
    a = insert_new(cache, [1, 2, 3, 4])
    b = insert_new(cache, [1, 2, 8, 9])
    shared = cache.root_node.children[1]
    assert shared.key == [1, 2]
    assert sorted(shared.children) == [3, 8]
    assert cache.match_prefix([1, 2, 3, 4]).slots.tolist() == a.tolist()
    assert cache.match_prefix([1, 2, 8, 9]).slots.tolist() == [*a[:2].tolist(), *b[2:].tolist()]
    assert cache.total_size() == 6
    assert_pool_invariant(cache)


def test_insert_needs_one_slot_per_token():
    cache, _ = make_cache()
    with pytest.raises(ValueError, match="one KV slot per token"):
        cache.insert([1, 2, 3], cache.kv_pool.alloc(2))


def test_inserted_tokens_are_evictable_until_locked():
    cache, pool = make_cache(16)
    insert_new(cache, [1, 2, 3])
    assert cache.evictable_size() == 3
    assert cache.protected_size() == 0
    assert pool.available_size() == 13
    assert_pool_invariant(cache)


def test_matching_a_4000_token_prompt_does_not_split_or_copy_per_token():
    cache, _ = make_cache(8192)
    prompt = list(range(4000))
    slots = insert_new(cache, prompt)
    result = cache.match_prefix([*prompt, 1])
    assert result.slots.tolist() == slots.tolist()
    assert len(cache.root_node.children) == 1
    assert cache.root_node.children[0].key == prompt


# ---------------------------------------------------------------- locking


def test_lock_moves_the_path_from_evictable_to_protected_and_unlock_moves_it_back():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4])
    node = cache.match_prefix([1, 2]).node
    cache.inc_lock_ref(node)
    assert (cache.evictable_size(), cache.protected_size()) == (2, 2)
    assert_pool_invariant(cache)
    cache.dec_lock_ref(node)
    assert (cache.evictable_size(), cache.protected_size()) == (4, 0)
    assert_pool_invariant(cache)


def test_shared_ancestors_are_protected_once_and_released_by_the_last_unlock():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    insert_new(cache, [1, 2, 4])
    a = cache.match_prefix([1, 2, 3]).node
    b = cache.match_prefix([1, 2, 4]).node
    cache.inc_lock_ref(a)
    cache.inc_lock_ref(b)
    assert cache.protected_size() == 4
    cache.dec_lock_ref(a)
    assert (cache.evictable_size(), cache.protected_size()) == (1, 3)
    cache.dec_lock_ref(b)
    assert (cache.evictable_size(), cache.protected_size()) == (4, 0)
    assert_pool_invariant(cache)


def test_locking_the_root_is_a_no_op():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    cache.inc_lock_ref(cache.root_node)
    cache.dec_lock_ref(cache.root_node)
    assert cache.protected_size() == 0


def test_unlocking_an_unlocked_node_is_an_error():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    with pytest.raises(RuntimeError, match="unpaired"):
        cache.dec_lock_ref(cache.match_prefix([1, 2]).node)


def test_splitting_a_locked_node_keeps_the_whole_path_protected():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4])
    node = cache.match_prefix([1, 2, 3, 4]).node
    cache.inc_lock_ref(node)
    cache.match_prefix([1, 2])  # splits the locked node
    assert cache.protected_size() == 4
    assert_pool_invariant(cache)
    cache.dec_lock_ref(node)
    assert cache.evictable_size() == 4
    assert_pool_invariant(cache)


def test_a_lock_taken_on_a_leaf_covers_children_inserted_later_only_as_evictable():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    node = cache.match_prefix([1, 2]).node
    cache.inc_lock_ref(node)
    insert_new(cache, [1, 2, 3, 4])
    assert (cache.evictable_size(), cache.protected_size()) == (2, 2)
    assert cache.evict(10) == 2
    assert cache.match_prefix([1, 2, 3]).slots.numel() == 2
    assert_pool_invariant(cache)


# ---------------------------------------------------------------- eviction


def test_evict_takes_the_least_recently_used_leaf_first():
    cache, _ = make_cache()
    for first in (1, 2, 3):
        insert_new(cache, [first, 0])
    cache.match_prefix([1, 0])  # 2 is now the least recently used, then 3
    assert cache.evict(1) == 2
    assert cache.match_prefix([2, 0]).slots.numel() == 0
    assert cache.match_prefix([1, 0]).slots.numel() == 2
    assert cache.match_prefix([3, 0]).slots.numel() == 2
    assert_pool_invariant(cache)


def test_evict_returns_slots_to_the_pool():
    cache, pool = make_cache(16)
    slots = insert_new(cache, [1, 2, 3])
    assert cache.evict(3) == 3
    assert pool.available_size() == 16
    assert set(slots.tolist()) <= set(pool.free_slots().tolist())
    assert_pool_invariant(cache)


def test_evict_frees_whole_nodes_and_may_exceed_the_request():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4, 5])
    assert cache.evict(1) == 5
    assert cache.total_size() == 0


def test_evict_stops_short_when_nothing_more_is_evictable():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    insert_new(cache, [4, 5])
    cache.inc_lock_ref(cache.match_prefix([1, 2, 3]).node)
    assert cache.evict(100) == 2
    assert cache.evict(100) == 0
    assert_pool_invariant(cache)


def test_locked_nodes_are_never_evicted():
    cache, _ = make_cache()
    locked_slots = insert_new(cache, [1, 2, 3])
    insert_new(cache, [1, 2, 3, 4, 5])
    cache.inc_lock_ref(cache.match_prefix([1, 2, 3]).node)
    cache.evict(100)
    assert cache.match_prefix([1, 2, 3, 4, 5]).slots.tolist() == locked_slots.tolist()
    assert cache.protected_size() == 3
    assert_pool_invariant(cache)


def test_a_parent_becomes_evictable_once_its_children_are_evicted():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    insert_new(cache, [1, 2, 4])
    # Leaves [3] and [4] go first; then their parent [1, 2] is a leaf and goes too.
    assert cache.evict(3) == 4
    assert cache.total_size() == 0
    assert_pool_invariant(cache)


def test_evict_of_zero_tokens_does_nothing():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    assert cache.evict(0) == 0
    assert cache.total_size() == 2


# ---------------------------------------------------------------- reset


def test_reset_frees_every_tree_slot_and_empties_the_tree():
    cache, pool = make_cache(16)
    insert_new(cache, [1, 2, 3])
    insert_new(cache, [1, 4])
    cache.reset()
    assert pool.available_size() == 16
    assert cache.total_size() == 0
    assert cache.match_prefix([1, 2, 3]).slots.numel() == 0
    assert_pool_invariant(cache)


def test_reset_with_a_lock_held_is_an_error():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    cache.inc_lock_ref(cache.match_prefix([1, 2]).node)
    with pytest.raises(RuntimeError, match="release every lock"):
        cache.reset()


# ---------------------------------------------------------------- request-level glue


def test_cache_finished_frees_exactly_the_slots_the_request_computed_twice():
    cache, pool = make_cache(32)
    insert_new(cache, [1, 2, 3, 4, 5])
    # The request matched [1, 2] and computed [3, 4, 5, 6] itself, in parallel with the
    # request that inserted [3, 4, 5] first.
    match = cache.match_prefix([1, 2])
    cache.inc_lock_ref(match.node)
    own = pool.alloc(4)
    free_before = pool.available_size()
    cache.cache_finished([1, 2, 3, 4, 5, 6], torch.cat([match.slots, own]), match.node)
    assert pool.available_size() == free_before + 3
    assert set(own[:3].tolist()) <= set(pool.free_slots().tolist())
    assert cache.match_prefix([1, 2, 3, 4, 5, 6]).slots[-1].item() == own[3].item()
    assert_pool_invariant(cache)


def test_cache_finished_releases_the_requests_lock():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    match = cache.match_prefix([1, 2])
    cache.inc_lock_ref(match.node)
    own = cache.kv_pool.alloc(2)
    cache.cache_finished([1, 2, 3, 4], torch.cat([match.slots, own]), match.node)
    assert (cache.evictable_size(), cache.protected_size()) == (4, 0)
    assert_pool_invariant(cache)


def test_cache_finished_rejects_tokens_that_do_not_start_with_the_locked_prefix():
    cache, _ = make_cache()
    insert_new(cache, [1, 2])
    match = cache.match_prefix([1, 2])
    cache.inc_lock_ref(match.node)
    own = cache.kv_pool.alloc(2)
    with pytest.raises(RuntimeError, match="locked prefix"):
        cache.cache_finished([1, 7, 8, 9], torch.cat([match.slots, own]), match.node)
    # Rejected before inserting: the tree and the lock are unchanged.
    assert cache.match_prefix([1, 7]).slots.numel() == 1
    assert cache.protected_size() == 2
    assert_pool_invariant(cache, held_by_requests=2)


def test_cache_unfinished_returns_the_tree_slots_and_moves_the_lock_down():
    cache, pool = make_cache(32)
    insert_new(cache, [1, 2, 3])
    match = cache.match_prefix([1])
    cache.inc_lock_ref(match.node)
    own = pool.alloc(4)  # the request computed [2, 3, 4, 5]; [2, 3] were inserted meanwhile
    tree_slots = cache.match_prefix([1, 2, 3]).slots
    result = cache.cache_unfinished([1, 2, 3, 4, 5], torch.cat([match.slots, own]), match.node)
    assert result.slots.tolist() == [*tree_slots.tolist(), *own[2:].tolist()]
    assert result.node.key == [4, 5]
    assert (cache.evictable_size(), cache.protected_size()) == (0, 5)
    assert set(own[:2].tolist()) <= set(pool.free_slots().tolist())
    assert_pool_invariant(cache)
    cache.dec_lock_ref(result.node)
    assert_pool_invariant(cache)


def test_cache_unfinished_from_the_root_handle_locks_the_new_path():
    cache, pool = make_cache(16)
    own = pool.alloc(3)
    result = cache.cache_unfinished([1, 2, 3], own, cache.root_node)
    assert result.slots.tolist() == own.tolist()
    assert cache.protected_size() == 3
    assert_pool_invariant(cache)


# ---------------------------------------------------------------- NoRadixCache


def make_no_cache(num_slots: int = 16) -> tuple[NoRadixCache, KVPool]:
    pool = KVPool(num_slots, num_layers=1, num_kv_heads=1, head_dim=1, dtype=torch.float32)
    return NoRadixCache(pool), pool


def test_no_radix_cache_matches_nothing_even_after_insert():
    cache, pool = make_no_cache()
    assert cache.disabled
    assert cache.insert([1, 2, 3], pool.alloc(3)) == 0
    result = cache.match_prefix([1, 2, 3])
    assert result.slots.numel() == 0
    assert result.node is cache.root_node
    assert cache.total_size() == cache.evictable_size() == cache.protected_size() == 0


def test_no_radix_cache_finished_frees_all_the_requests_slots():
    cache, pool = make_no_cache(16)
    slots = pool.alloc(5)
    cache.cache_finished([1, 2, 3, 4, 5], slots, cache.root_node)
    assert pool.available_size() == 16


def test_no_radix_cache_unfinished_leaves_the_slots_with_the_request():
    cache, pool = make_no_cache(16)
    slots = pool.alloc(5)
    result = cache.cache_unfinished([1, 2, 3, 4, 5], slots, cache.root_node)
    assert result.slots.tolist() == slots.tolist()
    assert result.node is cache.root_node
    assert pool.available_size() == 11


def test_no_radix_cache_evicts_nothing_and_locks_are_no_ops():
    cache, _ = make_no_cache()
    cache.inc_lock_ref(cache.root_node)
    cache.dec_lock_ref(cache.root_node)
    assert cache.evict(10) == 0
    cache.reset()


# ---------------------------------------------------------------- what observers read


def test_subtree_counts_follow_inserts_splits_and_evictions():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4])
    insert_new(cache, [1, 2, 5])  # splits [1, 2, 3, 4] into [1, 2] -> {[3, 4], [5]}
    root = cache.root_node
    assert (root.subtree_nodes, root.subtree_tokens) == (4, 5)  # root + 3 nodes, 5 tokens
    upper = root.children[1]
    assert (upper.subtree_nodes, upper.subtree_tokens) == (3, 5)
    assert cache.num_nodes() == 3
    cache.evict(1)  # the least recently used leaf, [3, 4]
    assert (root.subtree_nodes, root.subtree_tokens) == (3, 3)
    cache.check_invariants()  # recounts every node's subtree


def test_a_hit_counts_on_the_matched_node_and_every_node_above_it():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4])
    insert_new(cache, [1, 2, 5])
    deep = cache.match_prefix([1, 2, 3, 4]).node
    cache.record_hit(deep)
    cache.record_hit(cache.match_prefix([1, 2, 5]).node)
    upper = cache.root_node.children[1]
    assert (upper.hits, deep.hits) == (2, 1)
    assert upper.last_hit_at >= deep.last_hit_at > 0


def test_matching_alone_is_not_a_hit():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    node = cache.match_prefix([1, 2, 3]).node
    assert node.hits == 0 and node.last_hit_at == 0.0


def test_a_split_keeps_the_hits_on_both_halves():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3, 4])
    cache.record_hit(cache.match_prefix([1, 2, 3, 4]).node)
    lower = cache.match_prefix([1, 2, 3, 4]).node
    upper = cache.match_prefix([1, 2]).node  # splits
    assert upper is not lower and upper.hits == lower.hits == 1


def test_nodes_are_found_by_id_until_evicted():
    cache, _ = make_cache()
    insert_new(cache, [1, 2, 3])
    node = cache.match_prefix([1, 2, 3]).node
    assert cache.node_by_id(node.id) is node
    cache.evict(3)
    assert cache.node_by_id(node.id) is None
    assert cache.node_by_id(cache.root_node.id) is cache.root_node


# ---------------------------------------------------------------- randomized model check


@dataclass
class SimRequest:
    rid: int
    token_ids: list[int]  # everything the request will compute (prompt and output)
    slots: list[int]  # KV slots of token_ids[: len(slots)]
    prefix_len: int  # slots[:prefix_len] are tree slots on the locked node's path
    node: TreeNode


class CacheModelCheck:
    """Drives a RadixCache with random simulated requests and checks it against a reference.

    The reference is `cached`: every cached token prefix (as a tuple) mapped to the slot
    holding its last token's KV. `shadow[slot]` is the prefix whose KV the slot was written
    for, so a matched slot is right only if it maps back to the matched tokens. `owner`
    records who holds each allocated slot ("tree" or a request id), so a slot owned twice or
    leaked shows up as a set mismatch.
    """

    def __init__(self, seed: int, num_slots: int = 96, max_requests: int = 6) -> None:
        self.rng = random.Random(seed)
        self.pool = KVPool(num_slots, 1, 1, 1, torch.float32)
        self.cache = RadixCache(self.pool)
        self.max_requests = max_requests
        self.cached: dict[tuple[int, ...], int] = {}
        self.shadow: dict[int, tuple[int, ...]] = {}
        self.owner: dict[int, str | int] = {}
        self.requests: list[SimRequest] = []
        self.next_rid = 0
        # Shared "system prompts" so that requests overlap; a tiny vocabulary makes
        # branches and duplicate computations frequent.
        self.templates = [
            [self.rng.randrange(3) for _ in range(self.rng.randint(3, 15))] for _ in range(4)
        ]

    # -- operations

    def step(self) -> None:
        ops = [self.evict]
        if len(self.requests) < self.max_requests:
            ops += [self.add_request] * 3
        if any(len(r.slots) < len(r.token_ids) for r in self.requests):
            ops += [self.extend_request] * 6
        if self.requests:
            ops += [self.finish_request] * 2
        else:
            ops.append(self.reset)
        self.rng.choice(ops)()
        self.check()

    def add_request(self) -> None:
        template = self.rng.choice(self.templates)
        token_ids = template[: self.rng.randint(0, len(template))]
        token_ids += [self.rng.randrange(3) for _ in range(self.rng.randint(1, 20))]
        result = self.cache.match_prefix(token_ids)
        self.check_match(token_ids, result)
        self.cache.inc_lock_ref(result.node)
        slots = result.slots.tolist()
        self.requests.append(SimRequest(self.next_rid, token_ids, slots, len(slots), result.node))
        self.next_rid += 1

    def extend_request(self) -> None:
        req = self.rng.choice([r for r in self.requests if len(r.slots) < len(r.token_ids)])
        chunk = self.rng.randint(1, min(8, len(req.token_ids) - len(req.slots)))
        new_slots = self.pool.alloc(chunk)
        if new_slots is None:
            self.evict(chunk - self.pool.available_size())
            new_slots = self.pool.alloc(chunk)
            if new_slots is None:
                return  # everything is locked or held; other requests must finish first
        for slot in new_slots.tolist():
            assert slot not in self.owner, f"slot {slot} handed out while owned"
            pos = len(req.slots)
            self.owner[slot] = req.rid
            self.shadow[slot] = tuple(req.token_ids[: pos + 1])
            req.slots.append(slot)
        if self.rng.random() < 0.5:
            self.cache_unfinished(req)

    def cache_unfinished(self, req: SimRequest) -> None:
        token_ids = req.token_ids[: len(req.slots)]
        result = self.cache.cache_unfinished(token_ids, torch.tensor(req.slots), req.node)
        self.expect_inserted(req)
        expected = [self.cached[tuple(token_ids[: i + 1])] for i in range(len(token_ids))]
        assert result.slots.tolist() == expected
        req.slots, req.prefix_len, req.node = expected, len(expected), result.node

    def finish_request(self) -> None:
        req = self.requests.pop(self.rng.randrange(len(self.requests)))
        token_ids = req.token_ids[: len(req.slots)]
        self.cache.cache_finished(token_ids, torch.tensor(req.slots, dtype=torch.int64), req.node)
        self.expect_inserted(req)

    def evict(self, num_tokens: int | None = None) -> None:
        if num_tokens is None:
            num_tokens = self.rng.randint(1, 20)
        evictable_before = self.cache.evictable_size()
        free_before = set(self.pool.free_slots().tolist())
        num_evicted = self.cache.evict(num_tokens)
        freed = set(self.pool.free_slots().tolist()) - free_before
        assert num_evicted == len(freed)
        assert num_evicted >= min(num_tokens, evictable_before)
        for slot in freed:
            assert self.owner.pop(slot) == "tree", f"evicted slot {slot} was not the tree's"
        self.cached = {k: s for k, s in self.cached.items() if s not in freed}

    def reset(self) -> None:
        self.cache.reset()
        for slot in [s for s, o in self.owner.items() if o == "tree"]:
            del self.owner[slot]
        self.cached.clear()

    # -- reference updates and checks

    def expect_inserted(self, req: SimRequest) -> None:
        """Apply an insert of req's computed tokens to the reference: new prefixes join the
        tree, the request's slots for prefixes cached meanwhile must have been freed."""
        for i, slot in enumerate(req.slots):
            prefix = tuple(req.token_ids[: i + 1])
            if i < req.prefix_len:
                assert self.cached[prefix] == slot and self.owner[slot] == "tree"
            elif prefix in self.cached:
                assert self.cached[prefix] != slot
                assert self.owner.pop(slot) == req.rid
            else:
                self.cached[prefix] = slot
                self.owner[slot] = "tree"

    def check_match(self, token_ids: list[int], result: MatchResult) -> None:
        expected_len = 0
        while expected_len < len(token_ids) and tuple(token_ids[: expected_len + 1]) in self.cached:
            expected_len += 1
        slots = result.slots.tolist()
        assert len(slots) == expected_len
        for i, slot in enumerate(slots):
            assert self.shadow[slot] == tuple(token_ids[: i + 1]), "slot holds another prefix"

    def tree_contents(self) -> dict[tuple[int, ...], int]:
        contents = {}
        stack = [(self.cache.root_node, ())]
        while stack:
            node, path = stack.pop()
            for token, slot in zip(node.key, node.value.tolist(), strict=True):
                path = (*path, token)
                contents[path] = slot
            stack.extend((child, path) for child in node.children.values())
        return contents

    def check(self) -> None:
        self.cache.check_invariants()
        self.pool.check_invariants()
        assert self.tree_contents() == self.cached
        for prefix, slot in self.cached.items():
            assert self.shadow[slot] == prefix
        # Ownership: every slot is exactly one of free, tree, or one request's.
        free = set(self.pool.free_slots().tolist())
        assert len(free) == self.pool.available_size()
        assert free.isdisjoint(self.owner)
        assert free | set(self.owner) == set(range(1, self.pool.size + 1))
        tree_slots = {s for s, o in self.owner.items() if o == "tree"}
        assert set(self.cached.values()) == tree_slots
        held = 0
        locked_prefixes = set()
        for req in self.requests:
            for i, slot in enumerate(req.slots):
                prefix = tuple(req.token_ids[: i + 1])
                if i < req.prefix_len:
                    assert self.cached[prefix] == slot
                    locked_prefixes.add(prefix)
                else:
                    assert self.owner[slot] == req.rid
                    held += 1
        # Counters against the reference, and the pool invariant of docs/architecture.md §3.
        assert self.cache.protected_size() == len(locked_prefixes)
        assert self.cache.evictable_size() == len(self.cached) - len(locked_prefixes)
        assert (
            self.pool.available_size()
            + self.cache.evictable_size()
            + self.cache.protected_size()
            + held
            == self.pool.size
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_request_traffic_keeps_the_cache_consistent_with_a_reference(seed):
    model = CacheModelCheck(seed)
    for _ in range(2000):
        model.step()
    # Drain: finishing every request leaves all computed KV either free or evictable.
    while model.requests:
        model.finish_request()
        model.check()
    assert model.cache.protected_size() == 0
    model.reset()
    model.check()
    assert model.pool.available_size() == model.pool.size
