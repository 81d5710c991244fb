"""The Llama family (Llama, Mistral, Qwen2, SmolLM) over ForwardBatch.

One readable model file: embeddings -> N x (RMSNorm, attention with RoPE + GQA, RMSNorm,
SwiGLU MLP) -> final norm -> logits for the rows the batch asks for only. Parameter names
follow Hugging Face's, so safetensors load by name (q/k/v and gate/up are fused on load).

Built with a `TPGroup` (runtime/distributed/), the model is one rank's shard: its sizes come
from a `ShardPlan` (its heads, MLP width and vocabulary rows), o_proj and down_proj are
row-parallel, the embedding vocabulary-parallel, and logits are gathered on rank 0. Without
one (tp == 1) the plan is the whole model and the layers are the single-device ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from radixlm import kernels
from radixlm.runtime.distributed.sharding import ShardPlan
from radixlm.runtime.model.config import ModelConfig
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.model.layers.attention import PoolAttention
from radixlm.runtime.model.layers.linear import Linear
from radixlm.runtime.model.layers.norm import RMSNorm
from radixlm.runtime.model.layers.parallel_linear import row_linear
from radixlm.runtime.model.layers.rotary import RotaryEmbedding
from radixlm.runtime.model.layers.vocab_parallel import VocabParallelEmbedding


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int, rotary: RotaryEmbedding, shard: ShardPlan, tp) -> None:
        super().__init__()
        # This rank's heads (all of them at tp == 1); qkv_proj is column-parallel by rows.
        self.num_heads, self.num_kv_heads, self.head_dim = shard.num_heads, shard.num_kv_heads, cfg.head_dim
        self.q_size = shard.num_heads * cfg.head_dim
        self.kv_size = shard.num_kv_heads * cfg.head_dim
        self.qkv_proj = Linear(cfg.hidden_size, self.q_size + 2 * self.kv_size, bias=cfg.qkv_bias)
        self.o_proj = row_linear(self.q_size, cfg.hidden_size, False, tp)
        self.rotary = rotary
        self.attn = PoolAttention(layer_id, shard.num_heads, shard.num_kv_heads, cfg.head_dim)

    def forward(self, cos_sin, x: torch.Tensor, fb: ForwardBatch) -> torch.Tensor:
        qkv = self.qkv_proj(x)  # [tokens, q_size + 2 * kv_size]
        qk_size = self.q_size + self.kv_size
        qk = qkv[:, :qk_size].view(-1, self.num_heads + self.num_kv_heads, self.head_dim)
        q, k = kernels.rotary(qk, *cos_sin).split([self.num_heads, self.num_kv_heads], dim=1)
        v = qkv[:, qk_size:].view(-1, self.num_kv_heads, self.head_dim)
        return self.o_proj(self.attn(q, k, v, fb))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, shard: ShardPlan, tp) -> None:
        super().__init__()
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * shard.intermediate_size, bias=False)
        self.down_proj = row_linear(shard.intermediate_size, cfg.hidden_size, False, tp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(kernels.silu_and_mul(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int, rotary: RotaryEmbedding, shard: ShardPlan, tp) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(cfg, layer_id, rotary, shard, tp)
        self.mlp = LlamaMLP(cfg, shard, tp)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, cos_sin, x, residual, fb: ForwardBatch):
        if residual is None:
            residual = x
            x = self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(cos_sin, x, fb)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig, tp=None) -> None:
        """`tp`: this rank's TPGroup (runtime/distributed/group.py), or None for one device."""
        super().__init__()
        self.cfg = cfg
        self.tp = tp
        rank, size = (tp.rank, tp.size) if tp is not None else (0, 1)
        self.shard = ShardPlan.for_rank(cfg, rank, size)  # what this rank holds (all of it at tp == 1)
        self.compiled_decode = None  # set by ModelRunner on the CPU (llama_compiled_decode.py)
        self.lm_head_packed = None  # set by prepack_weights
        self.embed_tokens = (
            nn.Embedding(cfg.vocab_size, cfg.hidden_size) if tp is None
            else VocabParallelEmbedding(self.shard.vocab_shard, cfg.hidden_size, self.shard.vocab_start, tp)
        )
        # One table shared by all layers (the HF model builds it once too).
        rotary = RotaryEmbedding(cfg.head_dim, cfg.context_len, cfg.rope_theta, cfg.rope_scaling)
        self.layers = nn.ModuleList(LlamaDecoderLayer(cfg, i, rotary, self.shard, tp) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = (
            None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, self.shard.vocab_shard, bias=False)
        )

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, fb: ForwardBatch) -> torch.Tensor | None:
        """Returns float32 logits [len(fb.logits_indices), vocab] (empty if none are needed);
        None on tensor-parallel ranks other than 0, which need no logits."""
        if self.compiled_decode is not None and self.compiled_decode.applies(input_ids, fb):
            return self.compiled_decode.forward(input_ids, positions, fb)
        x = self.embed_tokens(input_ids)  # [tokens, hidden]
        cos_sin = self.layers[0].self_attn.rotary.lookup(positions, x.dtype)
        residual = None
        for layer in self.layers:
            x, residual = layer(cos_sin, x, residual, fb)
        if fb.logits_indices.numel() == 0:
            return x.new_empty((0, self.cfg.vocab_size), dtype=torch.float32)
        # Norm and project only the rows that need logits (last token per request, prompt spans).
        x = x[fb.logits_indices]
        residual = residual[fb.logits_indices]
        x, _ = self.norm(x, residual)
        logits = kernels.linear(x, self.lm_head_weight, packed=self.lm_head_packed).float()
        return logits if self.tp is None else self.tp.gather_logits(logits, self.cfg.vocab_size)

    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def prepack_weights(self) -> int:
        """Prepack every linear weight and the lm_head for the CPU path (kernels.prepack_weight);
        returns the bytes the packed copies take (0 where prepacking does not apply)."""
        linears = [m for m in self.modules() if isinstance(m, Linear)]
        packed = [m.weight for m in linears if m.prepack()]
        self.lm_head_packed = kernels.prepack_weight(self.lm_head_weight)
        if self.lm_head_packed is not None:
            packed.append(self.lm_head_weight)
        return sum(w.numel() * w.element_size() for w in packed)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load Hugging Face-named tensors, fusing q/k/v and gate/up into one matmul each.
        Under tensor parallelism the tensors are already this rank's slices (`ShardPlan.select`)."""
        params = dict(self.named_parameters())
        fused = {"q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
                 "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}
        loaded: set[str] = set()
        for name, w in weights:
            name = name.removeprefix("model.")
            if name == "lm_head.weight" and self.lm_head is None:
                continue  # tied to the embeddings
            if "rotary_emb" in name:
                continue
            parts = name.split(".")
            if len(parts) >= 2 and parts[-2] in fused:
                target, shard = fused[parts[-2]]
                pname = ".".join(parts[:-2] + [target, parts[-1]])
                param = params[pname]
                sizes = self._shard_sizes(target)
                start = sum(sizes[:shard])
                param.data[start : start + sizes[shard]].copy_(w)
                loaded.add(f"{pname}#{shard}")
                continue
            if name not in params:
                raise ValueError(f"unexpected weight {name!r} for {self.cfg.architecture}")
            params[name].data.copy_(w)
            loaded.add(name)
        self._check_all_loaded(params, loaded)

    def _shard_sizes(self, target: str) -> list[int]:
        """Rows of the fused weight per checkpoint tensor, for this rank's shard."""
        s = self.shard
        if target == "qkv_proj":
            return [s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim, s.num_kv_heads * s.head_dim]
        return [s.intermediate_size, s.intermediate_size]

    def _check_all_loaded(self, params: dict, loaded: set[str]) -> None:
        missing = []
        for pname in params:
            target = pname.split(".")[-2]
            if target in ("qkv_proj", "gate_up_proj"):
                n = 3 if target == "qkv_proj" else 2
                missing += [f"{pname}#{i}" for i in range(n) if f"{pname}#{i}" not in loaded]
            elif pname not in loaded:
                missing.append(pname)
        if missing:
            raise ValueError(f"checkpoint is missing weights: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
