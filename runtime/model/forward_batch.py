"""ForwardBatch: the one description of a model forward, built in one place.

See docs/architecture.md §3.

A batch is a list of requests, each extending its KV by `extend_len` tokens on top of a
`prefix_len`-token prefix already in the pool. Decode requests are simply extend_len == 1;
a batch where every request decodes uses the decode kernel (DECODE mode), any other batch —
including mixes of prefill chunks and decodes — runs through the extend kernel (EXTEND mode).

Owned by the scheduler process: built by the scheduler, read by the model runner, the model
and its attention layers (passed explicitly, never through a global).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch


class ForwardMode(enum.Enum):
    EXTEND = "extend"
    DECODE = "decode"


@dataclass
class ForwardBatch:
    mode: ForwardMode
    batch_size: int
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64
    req_pool_indices: torch.Tensor  # [batch] int64
    prefix_lens: torch.Tensor  # [batch] int64
    extend_lens: torch.Tensor  # [batch] int64
    seq_lens: torch.Tensor  # [batch] int64
    extend_start_loc: torch.Tensor  # [batch] int64
    out_cache_loc: torch.Tensor  # [num_tokens] int64, KV slots written by this forward
    logits_indices: torch.Tensor  # [num_logit_rows] int64, token rows whose logits are needed
    max_seq_len: int
    max_extend_len: int
    shared_prefix_len: int  # leading KV slots identical for every request (0 if < threshold)
    req_to_token: torch.Tensor  # [rows, max_context_len] int32
    k_buffers: list[torch.Tensor]  # per layer [num_slots + 1, kv_heads, head_dim]
    v_buffers: list[torch.Tensor]
    # Scratch for kernels: index tensors derived from the batch, built by the first layer and
    # reused by the others (the layers see the same batch; only the KV buffers differ).
    kernel_memo: dict = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        input_ids: list[int],
        req_pool_indices: list[int],
        prefix_lens: list[int],
        extend_lens: list[int],
        out_cache_loc: torch.Tensor,
        logits_indices: list[int],
        req_to_token: torch.Tensor,
        k_buffers: list[torch.Tensor],
        v_buffers: list[torch.Tensor],
        device: torch.device | str = "cpu",
    ) -> ForwardBatch:
        """Build all index tensors from host lists (input_ids concatenated in request order)."""
        batch = len(req_pool_indices)
        positions: list[int] = []
        starts: list[int] = []
        offset = 0
        for p, e in zip(prefix_lens, extend_lens):
            positions.extend(range(p, p + e))
            starts.append(offset)
            offset += e
        seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]

        def t(x: list[int]) -> torch.Tensor:
            return torch.tensor(x, dtype=torch.int64, device=device)

        shared = common_prefix_slots(req_to_token, req_pool_indices, prefix_lens)
        mode = ForwardMode.DECODE if all(e == 1 for e in extend_lens) else ForwardMode.EXTEND
        return cls(
            mode=mode,
            batch_size=batch,
            input_ids=t(input_ids),
            positions=t(positions),
            req_pool_indices=t(req_pool_indices),
            prefix_lens=t(prefix_lens),
            extend_lens=t(extend_lens),
            seq_lens=t(seq_lens),
            extend_start_loc=t(starts),
            out_cache_loc=out_cache_loc.to(device),
            logits_indices=t(logits_indices),
            max_seq_len=max(seq_lens),
            max_extend_len=max(extend_lens),
            shared_prefix_len=shared,
            req_to_token=req_to_token,
            k_buffers=k_buffers,
            v_buffers=v_buffers,
        )


# Below this many shared slots, the separate shared-prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 32


def common_prefix_slots(req_to_token: torch.Tensor, rows: list[int], prefix_lens: list[int]) -> int:
    """Length of the run of KV slots that every request's row starts with (radix-cache hits
    give requests literally the same slots), or 0 if it is short or the batch has one row."""
    if len(rows) < 2:
        return 0
    n = min(prefix_lens)
    if n < MIN_SHARED_PREFIX:
        return 0
    block = req_to_token[rows, :n]  # [batch, n]
    same = (block == block[0]).all(dim=0)
    shared = n if bool(same.all()) else int((~same).nonzero()[0])
    return shared if shared >= MIN_SHARED_PREFIX else 0
