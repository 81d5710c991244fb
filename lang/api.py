"""The DSL's public primitives, named and shaped exactly as `sglang.lang.api`.

See docs/wire-protocol.md A.1-A.3.

`None` for a gen parameter means "inherit from run()"; everything else overrides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from radixlm.lang.choices import ChoicesSamplingMethod, token_length_normalized
from radixlm.lang.function import SglFunction
from radixlm.lang.global_config import global_config
from radixlm.lang.ir import (
    SglExpr,
    SglExprList,
    SglGen,
    SglRoleBegin,
    SglRoleEnd,
    SglSelect,
    SglSeparateReasoning,
    unset_sampling_params,
)

_DTYPES = (int, float, str, bool, "int", "float", "str", "bool")


def function(func: Callable | None = None, num_api_spec_tokens: int | None = None):
    """Decorator making a program: `@function` or `@function(num_api_spec_tokens=...)`."""
    if func is not None:
        return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)

    def decorator(f: Callable) -> SglFunction:
        return SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)

    return decorator


def set_default_backend(backend: Any) -> None:
    """The backend programs use when run() gets none (a backend, a Runtime or an Engine)."""
    global_config.default_backend = backend


def flush_cache(backend: Any = None) -> Any:
    from radixlm.lang.backend.base import resolve_backend

    return resolve_backend(backend).flush_cache()


def get_server_info(backend: Any = None) -> dict:
    from radixlm.lang.backend.base import resolve_backend

    return resolve_backend(backend).get_server_info()


def gen(
    name: str | None = None,
    max_tokens: int | None = None,
    min_tokens: int | None = None,
    n: int | None = None,
    stop: str | list[str] | None = None,
    stop_token_ids: list[int] | None = None,
    stop_regex: str | list[str] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    ignore_eos: bool | None = None,
    return_logprob: bool | None = None,
    logprob_start_len: int | None = None,
    top_logprobs_num: int | None = None,
    return_text_in_logprobs: bool | None = None,
    dtype: Any = None,
    choices: list[str] | None = None,
    choices_method: ChoicesSamplingMethod | None = None,
    regex: str | None = None,
    json_schema: Any = None,
    ebnf: str | None = None,
    complete_within_budget: bool | None = None,
    end_on_reject: bool | None = None,
    tools: list[Any] | None = None,
    tool_choice: Any = None,
) -> SglExpr:
    """Generate into variable `name`. With `choices` this is a `select` (temperature 0).

    Constraints (docs/structured-output.md): `regex`, `json_schema` (a dict, a JSON string
    or a pydantic model class), `ebnf` (a context-free grammar), `dtype` (int, float, str,
    bool); `complete_within_budget` / `end_on_reject` override their defaults.

    With `tools` (functions, pydantic models or OpenAI tool dicts; lang/tools.py) the gen
    writes a call that validates, or text (`tool_choice` "auto", the default), and its
    variable is a `ToolCall`: the text, with `.name` and `.arguments`."""
    if choices:
        return SglSelect(name, choices, 0.0 if temperature is None else temperature,
                         token_length_normalized if choices_method is None else choices_method)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"invalid regex {regex!r}: {exc}") from None
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"invalid dtype {dtype!r}; use int, float, str or bool")
    params = unset_sampling_params(
        max_new_tokens=max_tokens, min_new_tokens=min_tokens, n=n, stop=stop,
        stop_token_ids=stop_token_ids, stop_regex=stop_regex, temperature=temperature,
        top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
        logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs, dtype=dtype, regex=regex,
        json_schema=schema_text(json_schema), ebnf=ebnf, complete_within_budget=complete_within_budget,
        end_on_reject=end_on_reject,
    )
    if tools:
        from radixlm.lang.tools import ToolCall, tool_sampling

        extra = tool_sampling(tools, tool_choice or "auto")
        params.structural_tag, params.no_stop_trim = extra.get("structural_tag"), extra.get("no_stop_trim")
        params.stop = [*_as_stops(stop), *extra.get("stop", [])]
        return SglGen(name, params, parse=ToolCall)
    return SglGen(name, params)


def _as_stops(stop: Any) -> list[str]:
    return [] if stop is None else [stop] if isinstance(stop, str) else list(stop)


def schema_text(schema: Any) -> str | None:
    """A JSON schema as the JSON text the backends send: from a dict, a JSON string or a
    pydantic model class (pydantic is then needed, and only then)."""
    if schema is None or isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return json.dumps(schema)
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):  # pydantic v2
        return json.dumps(schema.model_json_schema())
    raise TypeError(f"json_schema must be a dict, a JSON string or a pydantic model class (got {schema!r})")


def gen_int(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
            stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
            stop_regex: str | list[str] | None = None, temperature: float | None = None,
            top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
            frequency_penalty: float | None = None, presence_penalty: float | None = None,
            ignore_eos: bool | None = None, return_logprob: bool | None = None,
            logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
            return_text_in_logprobs: bool | None = None) -> SglExpr:
    """`gen` constrained to an integer (dtype=int)."""
    return gen(**locals(), dtype=int)  # every parameter above, by keyword


def gen_string(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
               stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
               stop_regex: str | list[str] | None = None, temperature: float | None = None,
               top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
               frequency_penalty: float | None = None, presence_penalty: float | None = None,
               ignore_eos: bool | None = None, return_logprob: bool | None = None,
               logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
               return_text_in_logprobs: bool | None = None) -> SglExpr:
    """`gen` constrained to a double-quoted string (dtype=str)."""
    return gen(**locals(), dtype=str)  # every parameter above, by keyword


def select(name: str | None = None, choices: list[str] | None = None, temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized) -> SglExpr:
    """Pick one of `choices` by scoring each with the model (one batched request)."""
    if not choices:
        raise ValueError("select needs a non-empty list of choices")
    return SglSelect(name, list(choices), temperature, choices_method)


def image(expr: Any) -> SglExpr:
    raise NotImplementedError("image(): radixlm serves text-only models; multimodal input is not supported")


def video(path: str, num_frames: int) -> SglExpr:
    raise NotImplementedError("video(): radixlm serves text-only models; multimodal input is not supported")


def separate_reasoning(expr: SglExpr | None = None, model_type: str | None = None) -> SglExpr:
    """After a gen/select: move its `<think>...</think>` part into `<name>_reasoning_content`."""
    return SglSeparateReasoning(model_type, expr)


def _role_common(role: str, expr: Any = None) -> SglExprList:
    if expr is None:
        return SglExprList([SglRoleBegin(role), SglRoleEnd(role)])
    return SglExprList([SglRoleBegin(role), expr, SglRoleEnd(role)])


def system(expr: Any = None) -> SglExprList:
    return _role_common("system", expr)


def user(expr: Any = None) -> SglExprList:
    return _role_common("user", expr)


def assistant(expr: Any = None) -> SglExprList:
    return _role_common("assistant", expr)


def system_begin() -> SglRoleBegin:
    return SglRoleBegin("system")


def system_end() -> SglRoleEnd:
    return SglRoleEnd("system")


def user_begin() -> SglRoleBegin:
    return SglRoleBegin("user")


def user_end() -> SglRoleEnd:
    return SglRoleEnd("user")


def assistant_begin() -> SglRoleBegin:
    return SglRoleBegin("assistant")


def assistant_end() -> SglRoleEnd:
    return SglRoleEnd("assistant")
