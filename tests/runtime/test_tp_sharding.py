"""What each tensor-parallel rank holds (runtime/distributed/sharding.py), where it runs
(ranks.py), and the loader reading only its slices from a real safetensors file."""

from __future__ import annotations

import pytest
import torch

from radixlm.runtime.distributed.ranks import rank_cpus
from radixlm.runtime.distributed.sharding import ShardPlan, TensorSlice, check_tp_fits
from radixlm.runtime.model.config import ModelConfig
from radixlm.runtime.model.loader import iter_safetensors


def config(heads: int, kv_heads: int, vocab: int = 10, intermediate: int = 24, head_dim: int = 2) -> ModelConfig:
    return ModelConfig(architecture="LlamaForCausalLM", model_type="llama", vocab_size=vocab,
                       hidden_size=heads * head_dim, intermediate_size=intermediate, num_layers=1,
                       num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, rms_norm_eps=1e-6,
                       rope_theta=1e4, rope_scaling=None, context_len=64, tie_word_embeddings=False,
                       qkv_bias=True)


def test_kv_heads_are_split_when_there_are_enough():
    plans = [ShardPlan.for_rank(config(8, 4), r, 2) for r in range(2)]
    assert [(p.num_heads, p.first_head, p.num_kv_heads, p.first_kv_head) for p in plans] == [(4, 0, 2, 0), (4, 4, 2, 2)]


def test_fewer_kv_heads_than_ranks_are_replicated_to_the_ranks_whose_queries_read_them():
    # 8 query heads read 2 KV heads in groups of 4; at tp 4 each rank has 2 query heads
    plans = [ShardPlan.for_rank(config(8, 2), r, 4) for r in range(4)]
    assert [(p.num_kv_heads, p.first_kv_head) for p in plans] == [(1, 0), (1, 0), (1, 1), (1, 1)]


def test_smollm2_heads_split_over_three_ranks():
    plans = [ShardPlan.for_rank(config(9, 3), r, 3) for r in range(3)]
    assert [(p.num_heads, p.first_head, p.first_kv_head) for p in plans] == [(3, 0, 0), (3, 3, 1), (3, 6, 2)]


def test_each_weight_is_cut_along_its_split_dimension():
    plan = ShardPlan.for_rank(config(4, 2), 1, 2)  # head_dim 2, MLP 24, vocab 10
    layer = "model.layers.0."
    assert plan.select(layer + "self_attn.q_proj.weight") == TensorSlice(0, 4, 8, 4)
    assert plan.select(layer + "self_attn.q_proj.bias") == TensorSlice(0, 4, 8, 4)
    assert plan.select(layer + "self_attn.k_proj.weight") == TensorSlice(0, 2, 4, 2)
    assert plan.select(layer + "self_attn.o_proj.weight") == TensorSlice(1, 4, 8, 4)
    assert plan.select(layer + "mlp.up_proj.weight") == TensorSlice(0, 12, 24, 12)
    assert plan.select(layer + "mlp.down_proj.weight") == TensorSlice(1, 12, 24, 12)
    assert plan.select("model.embed_tokens.weight") == TensorSlice(0, 5, 10, 5)
    assert plan.select(layer + "input_layernorm.weight") is None
    assert plan.select("model.norm.weight") is None


def test_the_last_vocabulary_shard_is_padded_when_the_vocabulary_does_not_divide():
    plans = [ShardPlan.for_rank(config(4, 2, vocab=11), r, 2) for r in range(2)]
    assert [p.select("lm_head.weight") for p in plans] == [TensorSlice(0, 0, 6, 6), TensorSlice(0, 6, 11, 6)]


@pytest.mark.parametrize(("heads", "kv", "intermediate", "tp", "message"), [
    (9, 3, 24, 2, r"--tp 2 does not divide the model's 9 attention heads: use a tp that does \(1, 3, 9\)"),
    (12, 3, 24, 4, r"--tp 4 and the model's 3 KV heads: one must divide the other"),
    (4, 2, 30, 4, r"--tp 4 does not divide the model's MLP width 30"),
])
def test_a_model_that_cannot_be_split_is_a_value_error_saying_what_to_change(heads, kv, intermediate, tp, message):
    with pytest.raises(ValueError, match=message):
        check_tp_fits(heads, kv, intermediate, tp)


def test_the_loader_reads_only_this_ranks_slices(tmp_path):
    from safetensors.torch import save_file

    q = torch.arange(8 * 8, dtype=torch.float32).reshape(8, 8)
    o = q.t().contiguous()
    emb = torch.arange(11 * 8, dtype=torch.float32).reshape(11, 8)
    norm = torch.ones(8)
    save_file({"model.layers.0.self_attn.q_proj.weight": q, "model.layers.0.self_attn.o_proj.weight": o,
               "model.embed_tokens.weight": emb, "model.norm.weight": norm}, str(tmp_path / "model.safetensors"))
    plan = ShardPlan.for_rank(config(4, 2, vocab=11), 1, 2)
    got = dict(iter_safetensors(tmp_path, plan))
    assert torch.equal(got["model.layers.0.self_attn.q_proj.weight"], q[4:8])
    assert torch.equal(got["model.layers.0.self_attn.o_proj.weight"], o[:, 4:8])
    assert torch.equal(got["model.embed_tokens.weight"], torch.cat([emb[6:11], torch.zeros(1, 8)]))
    assert torch.equal(got["model.norm.weight"], norm)


def test_ranks_take_consecutive_runs_of_cores_or_share_them_when_too_few():
    assert [rank_cpus(r, 2, [0, 1, 2, 3, 4]) for r in range(2)] == [((0, 1, 2), True), ((3, 4), True)]
    assert rank_cpus(1, 2, [5]) == ((5,), False)
