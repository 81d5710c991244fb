"""Specification of the request-to-token table and the token-level KV pool."""

import pytest
import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool


def make_kv_pool(num_slots: int = 16) -> KVPool:
    return KVPool(num_slots, num_layers=2, num_kv_heads=2, head_dim=4, dtype=torch.float32)


# ---------------------------------------------------------------- ReqToTokenPool


def test_req_to_token_table_is_int32_zeros_of_the_requested_shape():
    pool = ReqToTokenPool(size=4, max_context_len=32)
    assert pool.req_to_token.shape == (4, 32)
    assert pool.req_to_token.dtype == torch.int32
    assert int(pool.req_to_token.abs().sum()) == 0


def test_req_rows_are_distinct_until_exhausted_then_none():
    pool = ReqToTokenPool(size=3, max_context_len=8)
    rows = [pool.alloc() for _ in range(3)]
    assert sorted(rows) == [0, 1, 2]
    assert pool.available_size() == 0
    assert pool.alloc() is None


def test_freed_req_row_can_be_allocated_again():
    pool = ReqToTokenPool(size=1, max_context_len=8)
    row = pool.alloc()
    pool.free(row)
    assert pool.available_size() == 1
    assert pool.alloc() == row


def test_req_row_double_free_is_an_error():
    pool = ReqToTokenPool(size=2, max_context_len=8)
    row = pool.alloc()
    pool.free(row)
    with pytest.raises(ValueError, match="double free"):
        pool.free(row)


@pytest.mark.parametrize("row", [-1, 2])
def test_freeing_a_row_outside_the_pool_is_an_error(row):
    pool = ReqToTokenPool(size=2, max_context_len=8)
    with pytest.raises(ValueError, match="req_pool_idx"):
        pool.free(row)


def test_req_pool_clear_frees_every_row():
    pool = ReqToTokenPool(size=3, max_context_len=8)
    pool.alloc()
    pool.alloc()
    pool.clear()
    assert pool.available_size() == 3


def test_req_pool_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="size must be > 0"):
        ReqToTokenPool(size=0, max_context_len=8)
    with pytest.raises(ValueError, match="max_context_len"):
        ReqToTokenPool(size=2, max_context_len=0)


# ---------------------------------------------------------------- KVPool


def test_kv_buffers_have_one_extra_padding_slot_per_layer():
    pool = KVPool(10, num_layers=3, num_kv_heads=2, head_dim=8, dtype=torch.float16)
    assert len(pool.k_buffers) == len(pool.v_buffers) == 3
    for buffer in pool.k_buffers + pool.v_buffers:
        assert buffer.shape == (11, 2, 8)
        assert buffer.dtype == torch.float16


def test_kv_alloc_returns_int64_slots_never_slot_zero():
    pool = make_kv_pool(16)
    slots = pool.alloc(16)
    assert slots.dtype == torch.int64
    assert sorted(slots.tolist()) == list(range(1, 17))
    assert pool.available_size() == 0


def test_kv_alloc_of_more_than_available_returns_none_and_allocates_nothing():
    pool = make_kv_pool(8)
    pool.alloc(5)
    assert pool.alloc(4) is None
    assert pool.available_size() == 3


def test_kv_alloc_of_zero_returns_an_empty_tensor():
    pool = make_kv_pool(8)
    slots = pool.alloc(0)
    assert slots.numel() == 0
    assert pool.available_size() == 8


def test_kv_alloc_of_a_negative_count_is_an_error():
    with pytest.raises(ValueError, match="negative"):
        make_kv_pool().alloc(-1)


def test_kv_free_returns_slots_for_reuse():
    pool = make_kv_pool(4)
    slots = pool.alloc(4)
    pool.free(slots[:2])
    assert pool.available_size() == 2
    assert sorted(pool.alloc(2).tolist()) == sorted(slots[:2].tolist())


def test_kv_free_accepts_an_empty_tensor_and_int32_slots():
    pool = make_kv_pool(4)
    slots = pool.alloc(3)
    pool.free(torch.empty(0, dtype=torch.int64))
    pool.free(slots.to(torch.int32))
    assert pool.available_size() == 4
    pool.check_invariants()


def test_kv_clear_frees_every_slot():
    pool = make_kv_pool(8)
    pool.alloc(6)
    pool.clear()
    assert pool.available_size() == 8
    pool.check_invariants()


def test_kv_check_invariants_detects_a_double_free():
    pool = make_kv_pool(4)
    slots = pool.alloc(3)
    pool.free(slots[:2])
    pool.free(slots[:1])
    with pytest.raises(AssertionError, match="twice"):
        pool.check_invariants()


def test_kv_check_invariants_detects_slot_zero_in_the_free_list():
    pool = make_kv_pool(4)
    pool.alloc(1)
    pool.free(torch.tensor([0]))
    with pytest.raises(AssertionError, match="outside"):
        pool.check_invariants()


def test_bytes_per_token_counts_k_and_v_over_all_layers():
    # 2 (k and v) * 4 layers * 8 heads * 128 dims * 2 bytes
    assert KVPool.bytes_per_token(4, 8, 128, torch.bfloat16) == 16384
    assert KVPool.bytes_per_token(1, 1, 1, torch.float32) == 8


def test_kv_pool_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="num_slots must be > 0"):
        KVPool(0, num_layers=1, num_kv_heads=1, head_dim=1, dtype=torch.float32)
