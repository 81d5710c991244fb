"""Parity with Hugging Face transformers in bfloat16 on the CPU (issue 21 item 4).

bf16 is not bit-reproducible across implementations: every matmul rounds its output to 8
mantissa bits, and two correct implementations (oneDNN's bf16 dot products here, ATen's
bf16 GEMM in HF) round different partial sums. HF's own bf16 logits differ from its float32
ones by 0.23-0.71 on these prompts. So the contract is stated as tolerances, measured on the
bundled model (16 prompts, docs/benchmarks.md "bfloat16 on the CPU"):

- final-position logits of a batched prefill: max |ours - HF float32| within LOGIT_ATOL
  (measured max 0.56), as close to the float32 model as HF's bf16 is (max 0.71);
- greedy: the first token equals HF bf16's for every prompt, and the first
  AGREE_TOKENS tokens for at least AGREE_PROMPTS of 16 (measured: 13 of 16, batched
  and one at a time; later tokens split at near-ties, as HF bf16 and HF float32 do).
  Where HF float32's two best first logits are closer than 2^-7 of their size (0.22 at 28:
  one to two bf16 rounding steps), either token is a bf16 answer: on the AMX Xeon one prompt's
  two best logits are 28.557 / 28.527 in float32 and 28.625 / 28.5 in HF bf16, and ours
  tie exactly or split by one step, depending on the rows oneDNN's kernel ran with.

The same bounds hold on both bf16 weight layouts: oneDNN's prepacked weights and the C
column panels (kernels/cpu_gemm.py, 1-4 rows, float32 sums of exact bf16 products).
"""

from __future__ import annotations

import pytest
import torch

from radixlm.runtime import Engine
from radixlm.runtime.server_args import ServerArgs

from .batched_prefill import last_position_logits

MAX_NEW = 24
LOGIT_ATOL = 1.0
AGREE_TOKENS = 8
AGREE_PROMPTS = 10


def hf_logits(model_folder, dtype, ids: list[list[int]]) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_folder), dtype=dtype).eval()
    with torch.inference_mode():
        return [model(torch.tensor([x])).logits[0, -1].float() for x in ids]


@pytest.fixture(scope="module")
def prompt_ids(prompts, tokenizer) -> list[list[int]]:
    return [tokenizer(p).input_ids for p in prompts]


@pytest.fixture(scope="module")
def hf_bf16_greedy(model_folder, tokenizer, prompt_ids) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_folder), dtype=torch.bfloat16).eval()
    outs = []
    with torch.inference_mode():
        for x in prompt_ids:
            gen = model.generate(torch.tensor([x]), max_new_tokens=MAX_NEW, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
            outs.append(gen[0, len(x):].tolist())
    return outs


@pytest.fixture(scope="module")
def hf_f32_first_logits(model_folder, prompt_ids) -> list[torch.Tensor]:
    """HF float32 logits at each prompt's final position (they pick the first new token)."""
    return hf_logits(model_folder, torch.float32, prompt_ids)


def test_bf16_prefill_logits_within_tolerance_of_float32(prompt_ids, hf_f32_first_logits):
    ours, sched = last_position_logits(ServerArgs(max_total_tokens=4000, dtype="bfloat16"), prompt_ids)
    assert sched.kv_pool.k_buffers[0].dtype == torch.bfloat16
    ref = hf_f32_first_logits
    diffs = [(ours[i] - r).abs().max().item() for i, r in enumerate(ref)]
    assert max(diffs) < LOGIT_ATOL, f"max |logit diff| per prompt: {[f'{d:.2f}' for d in diffs]}"


def first_token_ok(ours: int, hf_bf16: int, f32_logits: torch.Tensor) -> bool:
    """HF bf16's first token, or, at a float32 near-tie within bf16 rounding, either of the two."""
    top = f32_logits.topk(2)
    near_tie = (top.values[0] - top.values[1]).item() < top.values[0].abs().item() * 2.0**-7
    return ours == hf_bf16 or (near_tie and ours in top.indices.tolist())


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def bf16_panels_available() -> bool:
    from radixlm.kernels import cpu_gemm

    return cpu_gemm.pack(torch.zeros(2, 2, dtype=torch.bfloat16)) is not None


@pytest.mark.parametrize("weights", ["prepacked", "panels"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-at-a-time"])
def test_bf16_greedy_agrees_with_hf_bf16(prompts, hf_bf16_greedy, hf_f32_first_logits, batched, weights):
    """On oneDNN's bf16 dot products (prepacked) and on the C bf16 panels (1-4 rows: the
    one-at-a-time decode steps; AVX512-BF16 only)."""
    if weights == "panels" and not bf16_panels_available():
        pytest.skip("no AVX512-BF16 on this CPU: no bf16 panels")
    params = {"max_new_tokens": MAX_NEW, "temperature": 0}
    with Engine(dtype="bfloat16", max_total_tokens=20000, cpu_weights=weights) as engine:
        paths = engine.scheduler.runner.paths
        if batched:
            ours = [r["output_ids"] for r in engine.generate(prompts, params)]
        else:
            ours = [engine.generate(p, params)["output_ids"] for p in prompts]
    if torch.backends.mkldnn.is_available():
        assert paths is not None and paths.weights == weights, paths  # the bf16 dot products
    agree = [common_prefix(a, b) for a, b in zip(ours, hf_bf16_greedy)]
    first_ok = [first_token_ok(a[0], b[0], f) for a, b, f in zip(ours, hf_bf16_greedy, hf_f32_first_logits)]
    assert all(first_ok), f"first tokens vs HF bf16 per prompt: {list(zip(first_ok, agree))}"
    assert sum(n >= AGREE_TOKENS for n in agree) >= AGREE_PROMPTS, f"tokens in common per prompt: {agree}"
