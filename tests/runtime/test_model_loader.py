"""Model loading: bundled GGUF conversion matches transformers, clear errors otherwise."""

from __future__ import annotations

import json

import pytest

from radixlm.runtime.model.loader import ModelNotFoundError, UnsupportedModelError, resolve_model


def test_bundled_model_converts_to_an_hf_folder(model_folder):
    assert (model_folder / "config.json").is_file()
    assert (model_folder / "model.safetensors").is_file()
    assert (model_folder / "tokenizer.json").is_file()
    assert resolve_model(None) == model_folder  # second resolve hits the cache


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nope")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(tmp_path)


def test_unsupported_architecture_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel"):
        resolve_model(tmp_path)


def test_gguf_dequantization_equals_transformers(model_folder):
    pytest.importorskip("accelerate", reason="transformers' GGUF loader needs accelerate")
    import torch
    from transformers import AutoModelForCausalLM

    from radixlm.runtime.model.loader import bundled_model_path, iter_safetensors

    gguf = bundled_model_path()
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ref_sd = ref.state_dict()
    ours = dict(iter_safetensors(model_folder))
    assert set(ours) == set(ref_sd) - {"lm_head.weight"}  # lm_head is tied
    for name, w in ours.items():
        assert torch.equal(w, ref_sd[name]), name
