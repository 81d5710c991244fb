"""Llama, Qwen2 and Mistral Hugging Face folders load and match transformers.

Tiny random-weight models written with transformers' own classes (so the folder layout is
exactly what users have on disk) exercise what SmolLM2 does not: q/k/v biases (Qwen2), an
untied lm_head, Llama-3 RoPE scaling.
"""

from __future__ import annotations

import pytest
import torch

from radixlm.runtime import Engine

COMMON = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
    bos_token_id=1, eos_token_id=2,
)


def make_model(kind: str, vocab_size: int):
    import transformers as tf

    if kind == "llama3-untied":
        cfg = tf.LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **COMMON,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        return tf.LlamaForCausalLM(cfg)
    if kind == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(vocab_size=vocab_size, tie_word_embeddings=False, **COMMON))
    return tf.MistralForCausalLM(tf.MistralConfig(vocab_size=vocab_size, sliding_window=None, **COMMON))


@pytest.mark.parametrize("kind", ["llama3-untied", "qwen2", "mistral"])
def test_hf_folder_matches_transformers(kind, tmp_path, tokenizer):
    torch.manual_seed(0)
    model = make_model(kind, len(tokenizer)).eval()
    if kind == "qwen2":  # random biases, so a bias bug cannot hide behind zeros
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    prompts = ["Hello there, how are", "The quick brown fox jumps over the lazy dog. " * 6]
    with Engine(model_path=str(tmp_path), max_total_tokens=2000) as engine:
        ours = engine.generate(prompts, {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True},
                               return_logprob=True, top_logprobs_num=1)
    for p, out in zip(prompts, ours):
        ids = torch.tensor([tokenizer(p).input_ids])
        with torch.inference_mode():
            ref = model.generate(ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)
            ref_logits = model(ids).logits[0, -1].float()
        assert out["output_ids"] == ref[0, ids.shape[1]:].tolist()
        first_lp = out["meta_info"]["output_token_logprobs"][0][0]
        ref_lp = torch.log_softmax(ref_logits, -1).max().item()
        assert abs(first_lp - ref_lp) < 1e-4
