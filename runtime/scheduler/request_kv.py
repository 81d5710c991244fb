"""RequestKV: the KV slots of running requests, between the pools and the radix cache.

Every slot of the pool is free, held by the radix tree (evictable, or protected while a
running request locks its node), or held by a running request outside the tree:

    free + evictable + protected + held by requests == pool size

A running request owns `req_to_token[req.req_pool_idx, :req.prefix_len]`: the part its
locked node (`req.last_node`) covers is the tree's, the rest is its own. The methods here are
the only places that move slots between those owners; `check_invariant` recounts the sum
(AssertionError when off), run whenever the scheduler is idle, by tests after every
scenario, and reported by /get_server_info.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool
from radixlm.runtime.scheduler.request import Req


class RequestKV:
    def __init__(self, req_pool: ReqToTokenPool, kv_pool: KVPool, cache) -> None:
        self.req_pool = req_pool
        self.kv_pool = kv_pool
        self.cache = cache

    def room(self) -> int:
        """Slots a step could still take: free ones plus what eviction can reclaim."""
        return self.kv_pool.available_size() + self.cache.evictable_size()

    def alloc_slots(self, n: int) -> torch.Tensor:
        """`n` slots for this step's new tokens, evicting cached prefixes if needed."""
        slots = self.kv_pool.alloc(n)
        if slots is None:
            self.cache.evict(n - self.kv_pool.available_size())
            slots = self.kv_pool.alloc(n)
        if slots is None:  # the scheduler retracts and admission reserves so this cannot happen
            raise RuntimeError(f"out of KV memory: need {n} slots, {self.kv_pool.available_size()} free")
        return slots

    def attach(self, req: Req, match) -> None:
        """Give `req` a row holding its cache match (`match.node` already locked); the match
        counts as a hit of its path (RadixCache.record_hit)."""
        self.cache.record_hit(match.node)
        req.req_pool_idx = self.req_pool.alloc()
        req.last_node = match.node
        req.prefix_len = len(match.slots)
        if req.prefix_len:
            self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len] = match.slots.to(torch.int32)

    def cache_and_free(self, req: Req) -> None:
        """Give the request's computed KV to the radix cache (unlocking its node), free its row."""
        ids = req.fill_ids[: req.prefix_len]
        self.cache.cache_finished(ids, self._slots(req), req.last_node)
        self.req_pool.free(req.req_pool_idx)
        req.req_pool_idx, req.last_node = None, None

    def cache_progress(self, req: Req) -> None:
        """Insert the computed part of a running request into the tree now, so requests
        admitted next step share it (and a retraction keeps it); the row then points at the
        tree's slots where the tree already had them."""
        ids = req.fill_ids[: req.prefix_len]
        match = self.cache.cache_unfinished(ids, self._slots(req), req.last_node)
        self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len] = match.slots.to(torch.int32)
        req.last_node = match.node

    def drop_last(self, req: Req) -> None:
        """Free the slot of the request's last computed token (a rejected draft)."""
        req.prefix_len -= 1
        slot = self.req_pool.req_to_token[req.req_pool_idx, req.prefix_len : req.prefix_len + 1]
        self.kv_pool.free(slot.to(torch.int64))

    def held_by_requests(self, running: Iterable[Req]) -> int:
        """Slots held by running requests outside the tree: their computed prefix minus the
        part their locked node covers."""
        held = 0
        for r in running:
            cached = 0
            node = r.last_node
            while node is not None and node.parent is not None:
                cached += len(node.key)
                node = node.parent
            held += r.prefix_len - cached
        return held

    def check_invariant(self, running: Iterable[Req]) -> None:
        held = self.held_by_requests(running)
        free, evictable = self.kv_pool.available_size(), self.cache.evictable_size()
        protected = self.cache.protected_size()
        if free + evictable + protected + held != self.kv_pool.size:
            raise AssertionError(
                f"KV pool invariant broken: free {free} + evictable {evictable} + protected "
                f"{protected} + held {held} != {self.kv_pool.size}"
            )

    def _slots(self, req: Req) -> torch.Tensor:
        return self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len].to(torch.int64)
