"""NativeBackend: the SGLang `/generate` protocol (docs/wire-protocol.md B.3-B.6), transport-free.

RuntimeEndpoint sends these bodies over HTTP; EngineBackend hands them to an in-process
Engine. Keeping the bodies here means both backends issue exactly the requests SGLang's
frontend would: the whole text each time (the server's radix cache supplies the reuse),
`max_new_tokens: 0` prefills for caching, and one batched scoring request per select.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from radixlm.lang.backend.base import BaseBackend, Prompt
from radixlm.lang.global_config import global_config
from radixlm.lang.ir import (
    EXTENSION_FIELDS,
    REGEX_BOOL,
    REGEX_FLOAT,
    REGEX_INT,
    REGEX_STR,
    ChoicesDecision,
    SglSamplingParams,
)

# dtype -> (regex, extra stop strings), B.3.
_DTYPE_REGEX = {
    "int": (REGEX_INT, [" ", "\n"]),
    "float": (REGEX_FLOAT, [" ", "\n"]),
    "str": (REGEX_STR, []),
    "bool": (REGEX_BOOL, []),
}


class NativeBackend(BaseBackend):
    support_concate_and_append = True

    # ---- transport (subclasses) --------------------------------------------------------
    def _post_generate(self, body: dict) -> dict | list[dict]:
        """Send one /generate body; return the JSON result (a list for batch inputs)."""
        raise NotImplementedError

    def _post_generate_stream(self, body: dict) -> Iterator[dict]:
        """Send one streaming /generate body; yield each event (cumulative `text`)."""
        raise NotImplementedError

    # ---- BaseBackend ---------------------------------------------------------------------
    def generate(self, prompt: Prompt, sampling_params: SglSamplingParams) -> tuple[str, dict]:
        obj = self._post_generate(self._gen_body(prompt, sampling_params))
        if isinstance(obj, list):
            raise RuntimeError("the server answered with a list: n > 1 is not supported by gen")
        return obj["text"], obj["meta_info"]

    def generate_stream(self, prompt: Prompt, sampling_params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict]]:
        body = self._gen_body(prompt, sampling_params)
        body["stream"] = True
        pos = 0
        for event in self._post_generate_stream(body):
            chunk = event["text"][pos:]  # `text` is cumulative (B.6)
            pos += len(chunk)
            yield chunk, event["meta_info"]

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: Any) -> ChoicesDecision:
        if temperature > 1e-5:
            raise ValueError(f"select scores choices greedily; temperature must be 0 (got {temperature})")
        prefill = self._post_generate(self._prefill_body(prompt))
        # Start two tokens early: the last prompt token may merge with a choice ("token healing").
        logprob_start_len = max(prefill["meta_info"]["prompt_tokens"] - 2, 0)
        results = self._post_generate({
            "text": [prompt.text + c for c in choices],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "return_logprob": True,
            "return_text_in_logprobs": True,
            "logprob_start_len": logprob_start_len,
        })
        input_lps = [_drop_unhealed(prompt.text, r["meta_info"]["input_token_logprobs"]) for r in results]
        output_lps = [r["meta_info"]["output_token_logprobs"] for r in results]
        uncond = None
        if choices_method.requires_unconditional_logprobs:
            uncond = self._unconditional_logprobs(input_lps)
        return choices_method(
            choices=choices,
            normalized_prompt_logprobs=[_mean_logprob(lp) for lp in input_lps],
            input_token_logprobs=input_lps,
            output_token_logprobs=output_lps,
            unconditional_token_logprobs=uncond,
        )

    def cache_prefix(self, prefix: str) -> None:
        self._post_generate({"text": prefix, "sampling_params": {"max_new_tokens": 0}})

    def commit_lazy_operations(self, prompt: Prompt) -> None:
        self._post_generate(self._prefill_body(prompt))

    # ---- request bodies ------------------------------------------------------------------
    def _gen_body(self, prompt: Prompt, sp: SglSamplingParams) -> dict:
        sp = apply_dtype_regex(sp)
        body: dict[str, Any] = {"text": prompt.text, "sampling_params": sampling_params_body(sp)}
        body.update(sp.logprob_kwargs())
        if prompt.image_data is not None:
            body["image_data"] = prompt.image_data
        return body

    def _prefill_body(self, prompt: Prompt) -> dict:
        body: dict[str, Any] = {"text": prompt.text, "sampling_params": {"max_new_tokens": 0}}
        if prompt.image_data is not None:
            body["image_data"] = prompt.image_data
        return body

    def _unconditional_logprobs(self, input_lps: list[list]) -> list[list]:
        # SGLang omits logprob_start_len here, which yields empty lists; start at 0 instead so
        # the method sees the choices' unconditional logprobs.
        results = self._post_generate({
            "input_ids": [[entry[1] for entry in lp] for lp in input_lps],
            "sampling_params": {"max_new_tokens": 0},
            "return_logprob": True,
            "logprob_start_len": 0,
        })
        return [r["meta_info"]["input_token_logprobs"] for r in results]


def apply_dtype_regex(sp: SglSamplingParams) -> SglSamplingParams:
    """Map `dtype` to a regex and extra stop strings (B.3); returns a new params object."""
    if sp.dtype is None:
        return sp
    key = sp.dtype.__name__ if isinstance(sp.dtype, type) else str(sp.dtype)
    if key not in _DTYPE_REGEX:
        raise ValueError(f"invalid dtype {sp.dtype!r}; use int, float, str or bool")
    regex, stops = _DTYPE_REGEX[key]
    out = sp.clone()
    if out.regex is not None:
        warnings.warn(f"both dtype={key} and regex are set; the dtype's regex wins", stacklevel=2)
    out.regex = regex
    if stops:
        out.add_stop_strings(stops)
    out.dtype = None
    return out


def sampling_params_body(sp: SglSamplingParams) -> dict[str, Any]:
    """The `sampling_params` object of a gen request, with exactly SGLang's keys (B.3)."""
    return {
        "skip_special_tokens": global_config.skip_special_tokens_in_output,
        "spaces_between_special_tokens": global_config.spaces_between_special_tokens_in_out,
        "max_new_tokens": sp.max_new_tokens,
        "min_new_tokens": sp.min_new_tokens,
        "n": sp.n,
        "stop": _json_list(sp.stop),
        "stop_token_ids": _json_list(sp.stop_token_ids),
        "stop_regex": _json_list(sp.stop_regex),
        "temperature": sp.temperature,
        "top_p": sp.top_p,
        "top_k": sp.top_k,
        "min_p": sp.min_p,
        "frequency_penalty": sp.frequency_penalty,
        "presence_penalty": sp.presence_penalty,
        "ignore_eos": sp.ignore_eos,
        "regex": sp.regex,
        "json_schema": sp.json_schema,
        **{name: getattr(sp, name) for name in EXTENSION_FIELDS if getattr(sp, name) is not None},
    }


def _json_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _drop_unhealed(text: str, entries: list[list]) -> list[list]:
    """Drop entry 0 when `text` already ends with its token, i.e. no token healing happened."""
    if entries and isinstance(entries[0][-1], str) and text.endswith(entries[0][-1]):
        return entries[1:]
    return entries


def _mean_logprob(entries: list[list]) -> float:
    """Mean of the logprobs, skipping null (and, as SGLang does, exactly 0.0) values."""
    values = [e[0] for e in entries if e[0]]
    return sum(values) / len(values) if values else 0.0
