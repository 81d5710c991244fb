"""Chat template selection by model path (docs/wire-protocol.md A.10) and from HF templates."""

from __future__ import annotations

import pytest

from radixlm.lang.chat_template import get_chat_template_by_model_path, template_from_hf


@pytest.mark.parametrize("model_path, name", [
    ("SmolLM2-135M-Instruct", "default"),
    ("SmolLM2-135M-Instruct (chatml, as tinyllama)", "chatml"),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "chatml"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "qwen"),
    ("meta-llama/Llama-3.2-1B-Instruct", "llama-3-instruct"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2-chat"),
    ("google/gemma-2-2b-it", "gemma-it"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    ("lmsys/vicuna-7b-v1.5", "vicuna_v1.1"),
])
def test_model_path_selects_the_same_template_as_sglang(model_path, name):
    assert get_chat_template_by_model_path(model_path).name == name


def test_template_stop_strings_and_default_system_prompts():
    assert get_chat_template_by_model_path("tinyllama").stop_str == ("<|im_end|>",)
    assert get_chat_template_by_model_path("qwen-chat").default_system_prompt == "You are a helpful assistant."
    assert get_chat_template_by_model_path("x").stop_str == ()


def test_a_chatml_hf_template_maps_to_chatml_when_the_path_matches_nothing():
    hf = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    assert template_from_hf("/cache/SmolLM2-135M-Instruct.Q4_1", hf).name == "chatml"
    assert template_from_hf("/cache/unknown-model", None).name == "default"
    assert template_from_hf("Qwen2-7B-Instruct", hf).name == "qwen"  # the path wins
