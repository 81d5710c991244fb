"""KV memory: the request-to-token table and the token-level K/V pool (docs/architecture.md §3).

Two allocators, both owned by the scheduler process:

- `ReqToTokenPool` hands out rows of `req_to_token` (int32 `[size, max_context_len]`), one row
  per running request (`req_pool_idx`); the row maps a position in the request to the KV slot
  that holds that position's K/V.
- `KVPool` hands out KV slots (int64 indices into the per-layer `k_buffers` / `v_buffers`).
  Page size is one token, so the radix cache can share KV at exact token granularity.

Neither pool knows who holds what: the radix cache and the running requests own the allocated
slots, and the invariant `free + evictable + protected + held by requests == size` is checked
by the caller (see `radix_cache.py`).
"""

from __future__ import annotations

import torch


class ReqToTokenPool:
    """Rows of the (row, position) -> KV slot table; one row per running request."""

    def __init__(self, size: int, max_context_len: int, device: str | torch.device = "cpu") -> None:
        if size <= 0:
            raise ValueError(f"ReqToTokenPool size must be > 0 (got {size})")
        if max_context_len <= 0:
            raise ValueError(f"max_context_len must be > 0 (got {max_context_len})")
        self.size = size
        self.max_context_len = max_context_len
        self.device = torch.device(device)
        # [size, max_context_len]; int32 because attention kernels index with it.
        self.req_to_token = torch.zeros(
            (size, max_context_len), dtype=torch.int32, device=self.device
        )
        self._is_free = [True] * size
        # A stack popped from the end; reversed so that row 0 is handed out first.
        self._free_rows = list(range(size - 1, -1, -1))

    def alloc(self) -> int | None:
        """Take a free row; `None` when all rows are in use. The row's contents are stale."""
        if not self._free_rows:
            return None
        row = self._free_rows.pop()
        self._is_free[row] = False
        return row

    def free(self, row: int) -> None:
        """Return `row` to the pool. Raises `ValueError` for an unknown or already-free row."""
        if not 0 <= row < self.size:
            raise ValueError(f"req_pool_idx must be in [0, {self.size}) (got {row})")
        if self._is_free[row]:
            raise ValueError(f"req_pool_idx {row} is already free (double free)")
        self._is_free[row] = True
        self._free_rows.append(row)

    def available_size(self) -> int:
        return len(self._free_rows)

    def clear(self) -> None:
        """Mark every row free. Only valid when no request holds a row."""
        self._is_free = [True] * self.size
        self._free_rows = list(range(self.size - 1, -1, -1))


class KVPool:
    """Token-level K/V storage: per layer k and v buffers `[num_slots + 1, num_kv_heads, head_dim]`.

    Slot 0 is never handed out: padded positions write their K/V there, so a padded write can
    never clobber a live token. The allocator is a free-slot int64 tensor: `alloc` slices from
    the front, `free` concatenates at the back. Freed slots are not checked on the hot path
    (that would force a device sync); `check_invariants` does it for tests and idle checks.
    """

    def __init__(
        self,
        num_slots: int,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in [
            ("num_slots", num_slots),
            ("num_layers", num_layers),
            ("num_kv_heads", num_kv_heads),
            ("head_dim", head_dim),
        ]:
            if value <= 0:
                raise ValueError(f"KVPool {name} must be > 0 (got {value})")
        self.size = num_slots
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
        # Zeroed rather than empty: slot 0 is read under masks, and garbage NaNs times a zero
        # mask weight would still be NaN.
        shape = (num_slots + 1, num_kv_heads, head_dim)
        self.k_buffers = [
            torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)
        ]
        self.v_buffers = [
            torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)
        ]
        self._free_slots = self._all_slots()

    def _all_slots(self) -> torch.Tensor:
        return torch.arange(1, self.size + 1, dtype=torch.int64, device=self.device)

    def alloc(self, n: int) -> torch.Tensor | None:
        """Take `n` slots (int64 `[n]`, values in `[1, size]`).

        Returns `None` and allocates nothing when fewer than `n` are free; the caller may
        evict from the radix cache and retry.
        """
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of KV slots (got {n})")
        if n > self._free_slots.numel():
            return None
        slots = self._free_slots[:n]
        self._free_slots = self._free_slots[n:]
        return slots

    def free(self, slots: torch.Tensor) -> None:
        """Return `slots` (1-D, any int dtype, may be empty) to the pool.

        The caller must own every slot and pass each only once; `check_invariants` catches
        violations after the fact.
        """
        if slots.numel() == 0:
            return
        slots = slots.to(device=self.device, dtype=torch.int64).reshape(-1)
        self._free_slots = torch.cat([self._free_slots, slots])

    def available_size(self) -> int:
        return self._free_slots.numel()

    def clear(self) -> None:
        """Mark every slot free (buffers keep their contents). Only valid when nothing is held."""
        self._free_slots = self._all_slots()

    def free_slots(self) -> torch.Tensor:
        """A copy of the free list (debug and tests; order is the allocation order)."""
        return self._free_slots.clone()

    def check_invariants(self) -> None:
        """Debug check, O(size): the free list has no duplicates and only slots in `[1, size]`.

        Raises `AssertionError` naming the violation.
        """
        free = self._free_slots
        if free.numel() > self.size:
            raise AssertionError(f"free list has {free.numel()} slots, pool has {self.size}")
        if free.numel() == 0:
            return
        if int(free.min()) < 1 or int(free.max()) > self.size:
            raise AssertionError(
                f"free list holds slots outside [1, {self.size}]: "
                f"min={int(free.min())} max={int(free.max())}"
            )
        if torch.unique(free).numel() != free.numel():
            raise AssertionError("free list holds a slot twice (double free)")

    @staticmethod
    def bytes_per_token(
        num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
    ) -> int:
        """Bytes of K plus V for one token over all layers; sizes the pool at start-up."""
        return 2 * num_layers * num_kv_heads * head_dim * dtype.itemsize
