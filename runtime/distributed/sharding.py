"""ShardPlan: which slice of every weight one tensor-parallel rank holds.

    plan = ShardPlan.for_rank(model_config, rank=1, size=2)
    plan.num_heads, plan.num_kv_heads      # this rank's query and KV heads
    plan.select("model.layers.0.self_attn.q_proj.weight")  # TensorSlice(dim=0, start, stop, length)

Split by rank (Megatron-style, as SGLang and vLLM do):
- query heads: rank r holds heads [r * H/N, (r+1) * H/N); q_proj rows and o_proj columns follow.
- KV heads: with at least N KV heads, each rank holds KV/N of them; with fewer, each holds
  the one KV head its query heads read (replicated on N/KV ranks). Replicating costs KV
  memory only for those heads and keeps every GQA model usable up to tp = query heads;
  anything else (KV heads that neither divide nor are divided by N) is a ValueError.
- MLP: gate/up rows and down_proj columns, intermediate/N each.
- vocabulary: embedding and lm_head rows, ceil(V/N) each (the last shard zero-padded), so
  the per-rank weight memory halves at tp 2 even for small models whose embedding is a
  large share (SmolLM2-135M: 21%). Logits are gathered on rank 0 only.
- norms: replicated (hidden_size floats each).

Pure Python over ints: `check_tp_fits` also runs in the server's main process, which reads
config.json without importing torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# HF name pieces (the second-to-last part of a layer weight's name) -> how they split.
_HEAD_ROWS = {"q_proj": "q", "k_proj": "kv", "v_proj": "kv"}
_MLP_ROWS = ("gate_proj", "up_proj")


class TensorSlice(NamedTuple):
    dim: int  # the dimension that is split
    start: int
    stop: int  # [start, stop) of the checkpoint tensor along `dim`
    length: int  # this rank's size along `dim` (> stop - start only for the padded last vocab shard)


def check_tp_fits(num_heads: int, num_kv_heads: int, intermediate_size: int, tp: int) -> None:
    """ValueError saying what to change when a model cannot be split over `tp` ranks."""
    if tp < 1:
        raise ValueError(f"tp must be >= 1 (got {tp})")
    if num_heads % tp:
        fits = [n for n in range(1, num_heads + 1) if num_heads % n == 0 and _kv_fits(num_kv_heads, n)]
        raise ValueError(f"--tp {tp} does not divide the model's {num_heads} attention heads: "
                         f"use a tp that does ({', '.join(map(str, fits))})")
    if not _kv_fits(num_kv_heads, tp):
        raise ValueError(f"--tp {tp} and the model's {num_kv_heads} KV heads: one must divide the "
                         "other (KV heads are split, or replicated when there are fewer than ranks)")
    if intermediate_size % tp:
        raise ValueError(f"--tp {tp} does not divide the model's MLP width {intermediate_size}")


def _kv_fits(num_kv_heads: int, tp: int) -> bool:
    return num_kv_heads % tp == 0 if num_kv_heads >= tp else tp % num_kv_heads == 0


def check_folder_fits(folder: str | Path, tp: int) -> None:
    """`check_tp_fits` on a Hugging Face folder's config.json (no torch, no model load)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    check_tp_fits(heads, cfg.get("num_key_value_heads") or heads, cfg["intermediate_size"], tp)


@dataclass(frozen=True)
class ShardPlan:
    rank: int
    size: int
    head_dim: int
    num_heads: int  # this rank's query heads
    num_kv_heads: int  # this rank's KV heads
    first_head: int  # global index of this rank's first query head
    first_kv_head: int
    intermediate_size: int  # this rank's MLP width
    vocab_size: int  # the whole vocabulary
    vocab_shard: int  # embedding / lm_head rows on every rank: ceil(vocab_size / size)

    @classmethod
    def for_rank(cls, cfg, rank: int, size: int) -> ShardPlan:
        """The plan of `rank` of `size` for a ModelConfig (size 1: the whole model)."""
        check_tp_fits(cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size, size)
        heads = cfg.num_heads // size
        kv_heads = max(cfg.num_kv_heads // size, 1)
        # Query head h reads KV head h // (H / KV); this rank's first query head picks its KV head.
        first_kv = rank * kv_heads if cfg.num_kv_heads >= size else rank * heads // (cfg.num_heads // cfg.num_kv_heads)
        return cls(rank=rank, size=size, head_dim=cfg.head_dim, num_heads=heads, num_kv_heads=kv_heads,
                   first_head=rank * heads, first_kv_head=first_kv,
                   intermediate_size=cfg.intermediate_size // size, vocab_size=cfg.vocab_size,
                   vocab_shard=-(-cfg.vocab_size // size))

    @property
    def vocab_start(self) -> int:
        return self.rank * self.vocab_shard

    def select(self, name: str) -> TensorSlice | None:
        """This rank's slice of the checkpoint tensor `name` (Hugging Face naming), or None
        when every rank holds all of it (norms)."""
        parts = name.split(".")
        if parts[-2:] in (["embed_tokens", "weight"], ["lm_head", "weight"]):
            stop = min(self.vocab_start + self.vocab_shard, self.vocab_size)
            return TensorSlice(0, self.vocab_start, stop, self.vocab_shard)
        if len(parts) < 2:
            return None
        module, kind = parts[-2], parts[-1]
        if module in _HEAD_ROWS:
            first, count = ((self.first_head, self.num_heads) if _HEAD_ROWS[module] == "q"
                            else (self.first_kv_head, self.num_kv_heads))
            return self._span(0, first * self.head_dim, count * self.head_dim)
        if module in _MLP_ROWS:
            return self._span(0, self.rank * self.intermediate_size, self.intermediate_size)
        if module == "o_proj" and kind == "weight":
            return self._span(1, self.first_head * self.head_dim, self.num_heads * self.head_dim)
        if module == "down_proj" and kind == "weight":
            return self._span(1, self.rank * self.intermediate_size, self.intermediate_size)
        return None

    @staticmethod
    def _span(dim: int, start: int, length: int) -> TensorSlice:
        return TensorSlice(dim, start, start + length, length)
