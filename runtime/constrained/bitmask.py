"""Token bitmasks: allocation on the CPU, application to logits on their own device.

Layout (shared with xgrammar and outlines-core): int32 `[batch, ceil(logits_dim / 32)]`,
bit `i % 32` of word `i // 32` set = token `i` allowed. Sized from the model's logits
dimension, never the tokenizer's length: a short buffer makes outlines-core silently drop
high ids, eos included (reference §1, mask-size pitfall).

Per step: `reset_bitmask` (all allowed) -> each constrained row's `matcher.fill_bitmask` on
the CPU -> `bitmask.to(device, non_blocking=True)` -> `apply_token_bitmask_`. Unpacking
uses torch bit ops on a GPU and numpy's unpackbits on the CPU (little-endian hosts).
"""

from __future__ import annotations

import numpy as np
import torch

_BITS = 32
_NUMPY_FLOATS = (torch.float32, torch.float64)


def bitmask_words(logits_dim: int) -> int:
    return (logits_dim + _BITS - 1) // _BITS


def allocate_token_bitmask(batch_size: int, logits_dim: int, pin_memory: bool = False
                           ) -> torch.Tensor:
    """An all-allowed CPU bitmask [batch_size, ceil(logits_dim / 32)] int32. Pin it when the
    logits live on a GPU so the copy can overlap."""
    mask = torch.full((batch_size, bitmask_words(logits_dim)), -1, dtype=torch.int32,
                      pin_memory=pin_memory)
    return mask


def reset_bitmask(bitmask: torch.Tensor) -> None:
    """Allow every token in every row (rows without a grammar stay this way)."""
    bitmask.fill_(-1)


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[batch, words] int32 -> [batch, vocab_size] bool (True = allowed), on its device."""
    if bitmask.device.type == "cpu":  # numpy's unpackbits: ~15x faster than torch on a CPU
        return _unpack_numpy(bitmask, vocab_size)
    return _unpack_torch(bitmask, vocab_size)


def _unpack_torch(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    shifts = torch.arange(_BITS, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # [batch, words, 32]
    return bits.flatten(1)[:, :vocab_size].bool()


def _unpack_numpy(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    # Little-endian int32 words: byte k holds bits 8k..8k+7, lowest bit first.
    data = np.ascontiguousarray(bitmask.numpy()).view(np.uint8)  # [batch, words * 4]
    bits = np.unpackbits(data, axis=-1, bitorder="little")  # [batch, words * 32]
    return torch.from_numpy(bits.view(np.bool_))[:, :vocab_size]


def apply_token_bitmask_(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """In place: logits[b, i] = -inf where bit i of row b is clear. Returns `logits`.

    logits [batch, vocab] float (any device); bitmask [batch, >= ceil(vocab / 32)] int32 on
    the same device. Columns past the bitmask's words stay as they are (none, when sized
    from the logits dim)."""
    vocab_size = min(logits.shape[-1], bitmask.shape[-1] * _BITS)
    allowed = unpack_bitmask(bitmask, vocab_size)
    if logits.device.type == "cpu" and logits.dtype in _NUMPY_FLOATS and not logits.requires_grad:
        # numpy's masked copy is ~3x faster than masked_fill_ on a small CPU.
        np.copyto(logits.numpy()[:, :vocab_size], -np.inf, where=~allowed.numpy())
    else:
        logits[:, :vocab_size].masked_fill_(~allowed, float("-inf"))
    return logits
