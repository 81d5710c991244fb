"""NoRadixCache: the radix cache's interface with nothing cached (`--disable-radix-cache`).

The ablation baseline of the benchmarks: the scheduler runs unchanged, every request
computes its whole prompt.
"""

from __future__ import annotations

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool
from radixlm.runtime.mem_cache.radix_cache import MatchResult, TreeNode


class NoRadixCache:
    """`--disable-radix-cache`: the `RadixCache` interface with nothing cached (ablation).

    Matches are always empty, finished requests free all their slots, and every size is 0, so
    the pool invariant reduces to `free + held by requests == size`.
    """

    disabled = True

    def __init__(self, kv_pool: KVPool) -> None:
        self.kv_pool = kv_pool
        self.device = kv_pool.device
        self.root_node = TreeNode([], self._empty_slots(), parent=None)
        self.root_node.lock_ref = 1

    def _empty_slots(self) -> torch.Tensor:
        return torch.empty((0,), dtype=torch.int64, device=self.device)

    def match_prefix(self, token_ids: list[int]) -> MatchResult:
        """Always an empty match on the root."""
        return MatchResult(self._empty_slots(), self.root_node)

    def insert(self, token_ids: list[int], slots: torch.Tensor) -> int:
        """Stores nothing and returns 0: the caller keeps (and must free) all its slots."""
        return 0

    def record_hit(self, node: TreeNode) -> None:
        pass

    def node_by_id(self, node_id: int) -> TreeNode | None:
        return self.root_node if node_id == self.root_node.id else None

    def num_nodes(self) -> int:
        return 0

    def inc_lock_ref(self, node: TreeNode) -> None:
        pass

    def dec_lock_ref(self, node: TreeNode) -> None:
        pass

    def evict(self, num_tokens: int) -> int:
        return 0

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0

    def total_size(self) -> int:
        return 0

    def reset(self) -> None:
        pass

    def cache_finished(
        self, token_ids: list[int], slots: torch.Tensor, locked_node: TreeNode
    ) -> None:
        """Frees all of `slots`: nothing is kept for later requests."""
        self.kv_pool.free(slots)

    def cache_unfinished(
        self, token_ids: list[int], slots: torch.Tensor, locked_node: TreeNode
    ) -> MatchResult:
        """Returns `MatchResult(slots, root)`: the request keeps holding its own slots."""
        return MatchResult(slots, self.root_node)

    def check_invariants(self) -> None:
        pass

    def pretty_print(self) -> str:
        return "NoRadixCache (caching disabled)"
