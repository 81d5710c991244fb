"""Vocabulary-parallel embedding and logits (runtime/distributed/sharding.py).

Each rank holds rows [rank * shard, (rank + 1) * shard) of the embedding (and of an untied
lm_head; a tied one shares these rows). The embedding looks up the ids in its range, writes
zeros for the others and sums over the ranks (one all-reduce per forward); the lm_head
computes this rank's columns of the logits, gathered on rank 0 (`TPGroup.gather_logits`).
"""

from __future__ import annotations

import torch
from torch import nn


class VocabParallelEmbedding(nn.Module):
    def __init__(self, shard_rows: int, hidden_size: int, first_id: int, tp) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shard_rows, hidden_size))  # HF name: embed_tokens.weight
        self.first_id = first_id
        self.tp = tp

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[tokens] int64 -> [tokens, hidden], the same on every rank."""
        local = input_ids - self.first_id
        outside = (local < 0) | (local >= self.weight.shape[0])
        x = nn.functional.embedding(local.masked_fill(outside, 0), self.weight)
        return self.tp.all_reduce(x.masked_fill_(outside[:, None], 0.0))
