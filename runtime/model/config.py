"""ModelConfig: the architecture facts the runtime needs, read from a Hugging Face config.json.

Accepts both the transformers 4.x keys (`rope_theta`, `rope_scaling`) and the 5.x key
(`rope_parameters`), so folders written by either version load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from radixlm.runtime.model.loader import SUPPORTED_ARCHITECTURES, UnsupportedModelError


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    context_len: int
    tie_word_embeddings: bool
    qkv_bias: bool
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def from_folder(cls, folder: Path) -> ModelConfig:
        cfg = json.loads((Path(folder) / "config.json").read_text())
        archs = cfg.get("architectures") or []
        arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
        if arch is None:
            raise UnsupportedModelError(
                f"unsupported architecture {archs}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        rope = cfg.get("rope_parameters") or {}
        rope_scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        num_heads = cfg["num_attention_heads"]
        return cls(
            architecture=arch,
            model_type=cfg.get("model_type", "llama"),
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=cfg.get("num_key_value_heads") or num_heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // num_heads,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            rope_scaling=rope_scaling,
            context_len=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases; Llama exposes the choice as attention_bias.
            qkv_bias=arch == "Qwen2ForCausalLM" or bool(cfg.get("attention_bias", False)),
            eos_token_ids=tuple(_eos_ids(folder, cfg)),
        )


def _eos_ids(folder: Path, cfg: dict) -> list[int]:
    """EOS ids from config.json and generation_config.json (Llama-3 / Qwen list several)."""
    ids: list[int] = []
    sources = [cfg]
    gen_file = Path(folder) / "generation_config.json"
    if gen_file.is_file():
        sources.append(json.loads(gen_file.read_text()))
    for src in sources:
        eos = src.get("eos_token_id")
        for i in eos if isinstance(eos, list) else [eos]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids
