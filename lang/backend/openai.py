"""OpenAI: any OpenAI-compatible endpoint (OpenAI itself, our `/v1`, vLLM, ...) via `openai`.

    backend = OpenAI("SmolLM2-135M-Instruct", base_url="http://127.0.0.1:30000/v1", api_key="-")

Chat models (the default) send the recorded messages to /v1/chat/completions, so a gen must
come right after `assistant_begin` (the server applies its own chat template). Completion
models (`is_chat_model=False`) send the whole text to /v1/completions. `select` needs prompt
logprobs, which the OpenAI API does not offer; use RuntimeEndpoint for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from radixlm.lang.backend.base import BaseBackend, Prompt
from radixlm.lang.chat_template import get_chat_template
from radixlm.lang.ir import (
    EXTENSION_FIELDS,
    REGEX_BOOL,
    REGEX_FLOAT,
    REGEX_INT,
    REGEX_STR,
    SglSamplingParams,
)

_DTYPE_REGEX = {"int": REGEX_INT, "float": REGEX_FLOAT, "str": REGEX_STR, "bool": REGEX_BOOL}


class TokenUsage:
    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._lock = threading.Lock()

    def add(self, usage: Any) -> None:
        if usage is None:
            return
        with self._lock:
            self.prompt_tokens += usage.prompt_tokens or 0
            self.completion_tokens += usage.completion_tokens or 0

    def reset(self) -> None:
        with self._lock:
            self.prompt_tokens = self.completion_tokens = 0


class OpenAI(BaseBackend):
    def __init__(self, model_name: str, is_chat_model: bool | None = None,
                 chat_template: Any = None, is_azure: bool = False, **client_kwargs: Any) -> None:
        """`client_kwargs` go to `openai.OpenAI` (base_url, api_key, timeout, ...)."""
        super().__init__()
        import openai

        if is_azure:
            self.client = openai.AzureOpenAI(**client_kwargs)
        else:
            self.client = openai.OpenAI(**client_kwargs)
        self.model_name = model_name
        self.is_chat_model = model_name != "gpt-3.5-turbo-instruct" if is_chat_model is None else is_chat_model
        self.chat_template = chat_template or get_chat_template("chatgpt" if self.is_chat_model else "default")
        self.token_usage = TokenUsage()

    def get_model_name(self) -> str:
        return self.model_name

    def generate(self, prompt: Prompt, sampling_params: SglSamplingParams) -> tuple[str, dict]:
        kwargs = self._request_kwargs(prompt, sampling_params)
        if self.is_chat_model:
            resp = self.client.chat.completions.create(**kwargs)
            text = resp.choices[0].message.content or ""
        else:
            resp = self.client.completions.create(**kwargs)
            text = resp.choices[0].text
        self.token_usage.add(resp.usage)
        return text, _meta(resp, resp.choices[0].finish_reason)

    def generate_stream(self, prompt: Prompt, sampling_params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict]]:
        kwargs = self._request_kwargs(prompt, sampling_params)
        create = self.client.chat.completions.create if self.is_chat_model else self.client.completions.create
        for chunk in create(stream=True, **kwargs):
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            text = (choice.delta.content or "") if self.is_chat_model else choice.text
            yield text, _meta(chunk, choice.finish_reason)

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: Any) -> Any:
        raise NotImplementedError(
            "select needs prompt logprobs, which OpenAI-compatible APIs do not return; "
            "use RuntimeEndpoint (our server or SGLang's) or the in-process engine")

    def get_server_info(self) -> dict:
        return {"model_name": self.model_name, "base_url": str(self.client.base_url)}

    def _request_kwargs(self, prompt: Prompt, sp: SglSamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model_name, **_sampling_kwargs(sp)}
        if self.is_chat_model:
            if prompt.cur_role != "assistant" or not prompt.text.endswith(
                    self.chat_template.get_prefix_and_suffix("assistant", prompt.messages)[0]):
                raise RuntimeError(
                    "for OpenAI chat models, gen must come right after assistant_begin "
                    "(e.g. s += assistant(gen('answer')))")
            kwargs["messages"] = prompt.messages
        else:
            kwargs["prompt"] = prompt.text
        return kwargs


def _sampling_kwargs(sp: SglSamplingParams) -> dict[str, Any]:
    """OpenAI fields, plus SGLang extras (top_k, min_p, regex, ...) in `extra_body`."""
    stop = sp.stop if isinstance(sp.stop, str) else (list(sp.stop) or None)
    kwargs: dict[str, Any] = {
        "max_tokens": sp.max_new_tokens, "temperature": sp.temperature, "top_p": sp.top_p,
        "frequency_penalty": sp.frequency_penalty, "presence_penalty": sp.presence_penalty,
    }
    if stop:
        kwargs["stop"] = stop
    extra: dict[str, Any] = {}
    if sp.top_k not in (None, -1):
        extra["top_k"] = sp.top_k
    if sp.min_p:
        extra["min_p"] = sp.min_p
    if sp.min_new_tokens:
        extra["min_tokens"] = sp.min_new_tokens
    if sp.ignore_eos:
        extra["ignore_eos"] = True
    regex = _DTYPE_REGEX.get(getattr(sp.dtype, "__name__", sp.dtype)) if sp.dtype else sp.regex
    if regex:
        extra["regex"] = regex
    if sp.json_schema:
        extra["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "output", "schema": json.loads(sp.json_schema)}}
    for name in EXTENSION_FIELDS:  # radixlm's own (another server would refuse them)
        if getattr(sp, name) is not None:
            extra[name] = getattr(sp, name)
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _meta(resp: Any, finish_reason: str | None) -> dict:
    usage = getattr(resp, "usage", None)
    return {
        "id": resp.id,
        "finish_reason": finish_reason,
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
    }
