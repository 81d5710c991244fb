"""Parse a `/generate` JSON body into per-sample request specs (docs/wire-protocol.md B.7).

    batch = parse_generate(body)   # ValueError (-> HTTP 400) naming the bad field
    batch.specs                    # one RequestSpec per (prompt, sample), in response order

A list `text` / 2-D `input_ids` is a batch; `n > 1` expands each prompt into n samples
(prompt-major, as SGLang orders them), each with a seed of its own when the request has one
(`SamplingParams.for_choice`). Per-item fields may be a scalar shared by the batch or a
list with one entry per prompt. Unknown top-level keys are a 400 (request_fields.py:
SGLang's other GenerateReqInput fields pass only when empty); unknown `sampling_params` keys
are rejected by `SamplingParams.from_dict`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.http.request_fields import GENERATE_FIELDS, check_fields
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.validation import Bool, Int, Rule

# The top-level fields besides the prompt, rid and sampling_params (openapi_spec.py describes
# them from here). Those in PER_PROMPT may also be a list with one entry per prompt.
FIELD_RULES: dict[str, Rule] = {
    "stream": Bool(),
    "return_logprob": Bool(description="return logprobs"),
    "logprob_start_len": Int(description="first prompt position with logprobs (-1: none)"),
    "top_logprobs_num": Int(lo=0, hi=20, description="top logprobs per position"),
    "return_text_in_logprobs": Bool(),
}
PER_PROMPT = frozenset({"return_logprob", "logprob_start_len", "top_logprobs_num"})


@dataclass
class RequestSpec:
    """One sample to generate, before tokenization."""

    rid: str
    params: SamplingParams
    text: str | None = None
    input_ids: list[int] | None = None
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    return_text_in_logprobs: bool = False
    add_special_tokens: bool = True  # False for chat-template text (it has its own markup)
    # The route's names for `max_new_tokens` and `input_ids`, for errors found after parsing
    # (scheduler/request_checks.py); /generate's own names when empty.
    field_names: dict[str, str] = field(default_factory=dict)


@dataclass
class GenerateBatch:
    specs: list[RequestSpec]
    is_batch: bool  # respond with a JSON list
    stream: bool


def parse_generate(body: Any) -> GenerateBatch:
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    check_fields(body, GENERATE_FIELDS)
    prompts, is_batch = _prompts(body)
    k = len(prompts)
    params = [_sampling_params(sp) for sp in _per_item(body, "sampling_params", None, k)]
    n = max(p.n for p in params)
    is_batch = is_batch or n > 1
    rids = _rids(body.get("rid"), k * n, n)
    logprob = _per_prompt(body, "return_logprob", False, k)
    start = _per_prompt(body, "logprob_start_len", -1, k)
    top = _per_prompt(body, "top_logprobs_num", 0, k)
    text_in_lp = _field(body, "return_text_in_logprobs", False)
    specs = []
    for i, prompt in enumerate(prompts):
        for j in range(params[i].n):
            spec = RequestSpec(
                rid=rids[i * n + j],
                params=params[i].for_choice(j),
                return_logprob=logprob[i],
                logprob_start_len=start[i],
                top_logprobs_num=top[i],
                return_text_in_logprobs=text_in_lp,
            )
            if isinstance(prompt, str):
                spec.text = prompt
            else:
                spec.input_ids = prompt
            specs.append(spec)
    stream = _field(body, "stream", False)
    return GenerateBatch(specs, is_batch, stream)


def _prompts(body: dict) -> tuple[list, bool]:
    text, ids = body.get("text"), body.get("input_ids")
    if (text is None) == (ids is None):
        raise ValueError("Either text, input_ids or input_embeds should be provided (exactly one).")
    if text is not None:
        if isinstance(text, str):
            return [text], False
        if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            return list(text), True
        raise ValueError("text must be a string or a non-empty list of strings")
    # The body's own lists, not copies: nothing else holds them, and copying millions of ids
    # is one C call that holds the GIL (this runs in the tokenizer pool's worker for big bodies).
    if _is_id_list(ids):
        return [ids], False
    if isinstance(ids, list) and ids and all(_is_id_list(x) for x in ids):
        return list(ids), True
    raise ValueError("input_ids must be a non-empty list of token ids or a list of such lists")


def _is_id_list(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in x
    )


def _sampling_params(sp: Any) -> SamplingParams:
    if sp is not None and not isinstance(sp, dict):
        raise ValueError("sampling_params must be an object (or a list of objects, one per prompt)")
    return SamplingParams.from_dict(sp)


def _per_item(body: dict, key: str, default: Any, k: int) -> list:
    """A field given once for the batch or as a list with one entry per prompt."""
    value = body.get(key, default)
    if isinstance(value, list):
        if len(value) != k:
            raise ValueError(f"{key} has {len(value)} entries for {k} prompts")
        return value
    return [value] * k


def _field(body: dict, key: str, default: Any) -> Any:
    return FIELD_RULES[key].check(key, body.get(key), default)


def _per_prompt(body: dict, key: str, default: Any, k: int) -> list:
    """A checked field with one value per prompt (shared, or given as a list)."""
    return [FIELD_RULES[key].check(key, v, default) for v in _per_item(body, key, None, k)]


def _rids(rid: Any, count: int, n: int) -> list[str]:
    if rid is None:
        return [uuid.uuid4().hex for _ in range(count)]
    if isinstance(rid, str):
        return [rid] if count == 1 else [f"{rid}_{i}" for i in range(count)]
    if isinstance(rid, list) and all(isinstance(r, str) for r in rid):
        if len(rid) * n != count:
            raise ValueError(f"rid has {len(rid)} entries for {count // n} prompts")
        return rid if n == 1 else [f"{r}_{j}" for r in rid for j in range(n)]
    raise ValueError("rid must be a string or a list of strings")

