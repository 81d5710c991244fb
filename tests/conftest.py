"""Shared fixtures: the real bundled model (converted once, cached on disk)."""

from __future__ import annotations

import os

import pytest

# CPU path selection (runtime/model/path_selection.py) would time the candidate paths at every
# start-up on this shared machine and could pick either; tests check the fixed default
# configuration (compiled one-token forward, prepacked weights), so `auto` means that here.
# Set before any Engine or server starts, so server subprocesses inherit it;
# tests/runtime/test_path_selection.py turns it back on where it tests the timing.
os.environ.setdefault("RADIXLM_PATH_SELECTION", "off")


@pytest.fixture(scope="session")
def model_folder():
    from radixlm.runtime.model.loader import resolve_model

    return resolve_model(None)


@pytest.fixture(scope="session")
def tokenizer(model_folder):
    from radixlm.runtime.model.tokenizer import load_tokenizer

    return load_tokenizer(model_folder)


@pytest.fixture(scope="session")
def router_flags() -> set[str]:
    """Every flag of the installed sglang-router's launcher, from its own --help."""
    import re
    import subprocess
    import sys

    pytest.importorskip("sglang_router", reason='needs the router extra: pip install "radixlm[router]"')
    out = subprocess.run([sys.executable, "-m", "sglang_router.launch_router", "--help"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))


# Small random-weight models whose heads divide by 2, for tensor parallelism (SmolLM2's 9
# query heads do not): written with transformers' own classes, so the folders are what users
# have on disk. "llama": 4 query / 2 KV heads (split), untied lm_head, one more row than the
# tokenizer so the vocabulary does not divide by 2 (a padded last shard). "qwen2": 4 / 1 (the
# KV head replicated), random q/k/v biases, tied embeddings.
SMALL_TP_MODELS = {
    "llama": dict(num_key_value_heads=2, tie_word_embeddings=False, extra_vocab=1),
    "qwen2": dict(num_key_value_heads=1, tie_word_embeddings=True, extra_vocab=0),
}


@pytest.fixture(scope="session")
def small_tp_model(tmp_path_factory, tokenizer):
    """small_tp_model("llama" | "qwen2") -> the folder of that model (written once)."""
    folders = {}

    def make(kind: str):
        if kind not in folders:
            folders[kind] = _write_small_model(tmp_path_factory.mktemp(f"tp-{kind}"), tokenizer, kind)
        return folders[kind]

    return make


def _write_small_model(folder, tokenizer, kind: str):
    import torch
    import transformers as tf

    spec = dict(SMALL_TP_MODELS[kind])
    extra = spec.pop("extra_vocab")
    common = dict(vocab_size=len(tokenizer) + extra, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=1024, initializer_range=0.2,
                  bos_token_id=1, eos_token_id=2, **spec)
    torch.manual_seed(0)
    if kind == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
        for layer in model.model.layers:  # random biases, so a bias slicing bug cannot hide behind zeros
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
