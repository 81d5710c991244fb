"""Token bitmask: unpacking and applying agree with a plain bool-mask reference."""

from __future__ import annotations

import torch

from radixlm.runtime.constrained.bitmask import (
    _unpack_torch,
    allocate_token_bitmask,
    apply_token_bitmask_,
    bitmask_words,
    reset_bitmask,
    unpack_bitmask,
)


def _pack(allowed: torch.Tensor) -> torch.Tensor:
    """Reference packing of a bool mask [batch, vocab] into int32 words."""
    batch, vocab = allowed.shape
    words = torch.zeros(batch, bitmask_words(vocab), dtype=torch.int64)
    for b, i in allowed.nonzero().tolist():
        words[b, i // 32] |= 1 << (i % 32)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def test_words_round_up_to_cover_the_logits():
    assert bitmask_words(49152) == 1536
    assert bitmask_words(151_665) == 4740
    assert allocate_token_bitmask(3, 100).shape == (3, 4)


def test_new_bitmask_allows_everything():
    assert unpack_bitmask(allocate_token_bitmask(2, 70), 70).all()


def test_unpack_matches_reference_including_bit_31():
    gen = torch.Generator().manual_seed(0)
    allowed = torch.rand(3, 100, generator=gen) < 0.3
    allowed[0, 31] = allowed[1, 63] = True  # sign bits of their words
    assert torch.equal(unpack_bitmask(_pack(allowed), 100), allowed)


def test_device_unpack_agrees_with_the_cpu_unpack():
    """The torch bit-op path (used on GPUs) checked on the CPU against the numpy path."""
    mask = torch.randint(-(2**31), 2**31 - 1, (4, 40), dtype=torch.int32,
                         generator=torch.Generator().manual_seed(2))
    assert torch.equal(_unpack_torch(mask, 1270), unpack_bitmask(mask, 1270))


def test_unpack_of_a_row_slice():
    mask = allocate_token_bitmask(4, 64)
    mask[2].zero_()
    assert not unpack_bitmask(mask[1:3], 64)[1].any()


def test_apply_sets_disallowed_logits_to_minus_inf():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 70, generator=gen)
    allowed = torch.rand(2, 70, generator=gen) < 0.5
    expected = logits.masked_fill(~allowed, float("-inf"))
    assert torch.equal(apply_token_bitmask_(logits.clone(), _pack(allowed)), expected)


def test_apply_on_half_precision_logits():
    """bf16 has no numpy dtype: the torch path must give the same result."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 70, generator=gen).to(torch.bfloat16)
    allowed = torch.rand(2, 70, generator=gen) < 0.5
    expected = logits.masked_fill(~allowed, float("-inf"))
    assert torch.equal(apply_token_bitmask_(logits.clone(), _pack(allowed)), expected)


def test_reset_allows_every_row_again():
    mask = allocate_token_bitmask(2, 64)
    mask.zero_()
    reset_bitmask(mask)
    assert unpack_bitmask(mask, 64).all()


def test_logits_wider_than_the_mask_keep_their_tail():
    logits = torch.zeros(1, 40)
    mask = torch.zeros(1, 1, dtype=torch.int32)  # covers 32 ids, all refused
    apply_token_bitmask_(logits, mask)
    assert torch.isinf(logits[0, :32]).all() and (logits[0, 32:] == 0).all()
