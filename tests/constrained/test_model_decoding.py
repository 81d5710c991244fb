"""The grammar layer driving the real bundled model (Hugging Face forward with a KV cache):
temperature 0 and 1, jump-forward off and on; every finished output is valid.

A stand-in for the scheduler: mask -> sample -> accept -> jump (the jumped tokens ride in the
next forward, as the scheduler's extend pass will). Slow on a loaded 2-core CPU, so marked
slow; the grammar-only walks in test_random_walk.py cover the 60+ constraints.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from radixlm.runtime.constrained import (
    allocate_token_bitmask,
    apply_token_bitmask_,
    try_jump_forward,
)

from .conftest import EOS_ID, LOGITS_DIM  # noqa: TID252 (pytest importlib mode)

pytestmark = pytest.mark.slow

MAX_NEW = 60
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
          "age": {"type": "integer"}, "city": {"enum": ["Paris", "London", "Tokyo"]}},
          "required": ["name", "age", "city"]}
CASES = [
    ("json_schema", PERSON, "Alice is 31 and lives in Paris. Give her record as JSON."),
    ("json_schema", {"type": "object", "properties": {"ok": {"type": "boolean"}, "items": {
        "type": "array", "items": {"type": "integer"}, "maxItems": 3}},
        "required": ["ok", "items"]}, "Reply with JSON: is 7 prime, and list three primes."),
    ("json_schema", {"type": "object", "properties": {"ville": {"enum": ["東京", "café", "naïve"]}},
                     "required": ["ville"]}, "Pick a word and answer in JSON."),
    ("regex", r"[0-9]{1,3}", "How many legs does a spider have? Answer with a number."),
    ("regex", "霍格沃茨特快列车|霍比特人比尔博", "Name a famous train or hobbit."),
    ("choices", ["yes", "no", "maybe"], "Is the sky blue?"),
]


@pytest.fixture(autouse=True)
def _only_with_m_slow(request):
    """The `slow` marker is documented as outside the default suite: skip unless selected."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("model-in-the-loop decoding: run with -m slow")


@pytest.fixture(scope="module")
def model(model_folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_folder), dtype=torch.float32).eval()


@torch.inference_mode()
def generate(model, tokenizer, matcher, prompt: str, temperature: float, jump: bool,
             seed: int = 0) -> tuple[bytes, int, bool]:
    """(output bytes, forward passes, finished by the grammar)."""
    chat = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    feed = tokenizer(chat).input_ids
    generator = torch.Generator().manual_seed(seed)
    mask = allocate_token_bitmask(1, LOGITS_DIM)
    past, data, passes = None, b"", 0
    token_bytes = matcher.grammar.vocab.token_bytes
    while len(matcher.accepted_ids) < MAX_NEW:
        out = model(torch.tensor([feed]), past_key_values=past, use_cache=True)
        past, passes = out.past_key_values, passes + 1
        matcher.fill_bitmask(mask, 0)
        logits = apply_token_bitmask_(out.logits[:, -1].float().clone(), mask)
        if temperature == 0:
            token = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        assert matcher.accept_token(token)
        if token == EOS_ID or matcher.is_terminated():
            return data + (token_bytes[token] or b""), passes, True
        data, feed = data + token_bytes[token], [token]
        if jump and (jf := try_jump_forward(matcher, tokenizer, MAX_NEW)):
            data, feed = data + jf.text.encode(), feed + jf.token_ids
    return data, passes, False


def _check(kind, spec, text: str) -> None:
    if kind == "json_schema":
        jsonschema.validate(json.loads(text), spec)
    elif kind == "regex":
        assert re.fullmatch(spec, text), text
    else:
        assert text in spec


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("kind, spec, prompt", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_model_outputs_validate_with_and_without_jump_forward(kind, spec, prompt, temperature,
                                                               model, tokenizer, new_matcher):
    for jump in (False, True):
        data, _, finished = generate(model, tokenizer, new_matcher(kind, spec), prompt,
                                     temperature, jump)
        if finished:  # an output cut by MAX_NEW may be incomplete (finish reason length)
            _check(kind, spec, data.decode("utf-8"))


def test_jump_forward_saves_forward_passes_at_temperature_0(model, tokenizer, new_matcher):
    kind, spec, prompt = CASES[0]
    plain, plain_passes, _ = generate(model, tokenizer, new_matcher(kind, spec), prompt, 0, False)
    jumped, jump_passes, _ = generate(model, tokenizer, new_matcher(kind, spec), prompt, 0, True)
    _check(kind, spec, jumped.decode())
    assert jump_passes <= 0.8 * plain_passes, (plain_passes, jump_passes)
