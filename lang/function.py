"""`@function` programs: SglFunction with run / run_batch / bind / trace / cache (A.2)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from radixlm.lang.ir import SglSamplingParams
from radixlm.lang.state import ProgramState


class SglFunction:
    def __init__(self, func: Callable, num_api_spec_tokens: int | None = None,
                 bind_arguments: dict[str, Any] | None = None) -> None:
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = dict(bind_arguments or {})
        spec = inspect.getfullargspec(func)
        if not spec.args or spec.args[0] != "s":
            raise TypeError(f"the first parameter of @function {func.__name__} must be named 's'")
        self.arg_names = spec.args[1:]
        self.arg_defaults = spec.defaults or ()

    def __repr__(self) -> str:
        return f"SglFunction({self.func.__name__})"

    def bind(self, **kwargs: Any) -> SglFunction:
        """A new program with some arguments fixed (num_api_spec_tokens is not carried over)."""
        unknown = [k for k in kwargs if k not in self.arg_names]
        if unknown:
            raise TypeError(f"{self.func.__name__} has no arguments named {unknown}")
        return SglFunction(self.func, bind_arguments={**self.bind_arguments, **kwargs})

    def run(self, *args: Any, max_new_tokens: int = 128, n: int = 1, stop: Any = None,
            stop_token_ids: list[int] | None = None, stop_regex: Any = None,
            temperature: float = 1.0, top_p: float = 1.0, top_k: int = -1, min_p: float = 0.0,
            frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
            ignore_eos: bool = False, return_logprob: bool | None = None,
            logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
            return_text_in_logprobs: bool | None = None, stream: bool = False,
            backend: Any = None, use_thread: bool = True, **kwargs: Any) -> ProgramState:
        """Run the program once; returns its state at once (requests go out on its worker)."""
        from radixlm.lang.runner import run_program

        params = _default_params(locals())
        return run_program(self, backend, args, kwargs, params, stream, use_thread=use_thread)

    def run_batch(self, batch_kwargs: list[dict] | list[tuple | list], *,
                  max_new_tokens: int = 128, n: int = 1, stop: Any = None,
                  stop_token_ids: list[int] | None = None, stop_regex: Any = None,
                  temperature: float = 1.0, top_p: float = 1.0, top_k: int = -1,
                  min_p: float = 0.0, frequency_penalty: float = 0.0,
                  presence_penalty: float = 0.0, ignore_eos: bool = False,
                  return_logprob: bool | None = None, logprob_start_len: int | None = None,
                  top_logprobs_num: int | None = None, return_text_in_logprobs: bool | None = None,
                  backend: Any = None, num_threads: int | str = "auto", progress_bar: bool = False,
                  generator_style: bool = False) -> list[ProgramState] | Iterator[ProgramState]:
        """Run one program per item (dicts of arguments, or positional tuples) on a thread pool."""
        from radixlm.lang.runner import run_program_batch

        if not isinstance(batch_kwargs, (list, tuple)):
            raise TypeError("batch_kwargs must be a list of dicts or of argument tuples")
        if len(batch_kwargs) == 0:
            return []
        params = _default_params(locals())
        items = [self._as_kwargs(item) for item in batch_kwargs]
        return run_program_batch(self, backend, items, params, num_threads, progress_bar,
                                 generator_style)

    def _as_kwargs(self, item: dict | tuple | list) -> dict:
        if isinstance(item, dict):
            return item
        required = len(self.arg_names) - len(self.arg_defaults)
        if not isinstance(item, (list, tuple)) or not required <= len(item) <= len(self.arg_names):
            raise Exception(
                f"Given arguments mismatch the SGL function signature: {item!r} for "
                f"{self.func.__name__}({', '.join(self.arg_names)})")
        return dict(zip(self.arg_names, item))

    def trace(self, *, backend: Any = None, **kwargs: Any):
        """Record the program's IR with abstract arguments; returns the tracer state."""
        from radixlm.lang.global_config import global_config
        from radixlm.lang.tracer import trace_program

        return trace_program(self, kwargs, backend or global_config.default_backend)

    def cache(self, backend: Any = None) -> str:
        """Send the traced constant prefix (> 64 chars) to the backend; returns it ("" if none)."""
        from radixlm.lang.runner import cache_program

        return cache_program(self, backend)

    def __call__(self, *args: Any, **kwargs: Any):
        from radixlm.lang.tracer import current_tracer

        tracer = current_tracer()
        if tracer is None:
            return self.run(*args, **kwargs)
        kwargs.setdefault("backend", tracer.backend)
        return self.trace(**kwargs)


def _default_params(values: dict[str, Any]) -> SglSamplingParams:
    """The run() defaults as sampling params; None stop lists become [] (A.2)."""
    return SglSamplingParams(
        max_new_tokens=values["max_new_tokens"], n=values["n"],
        stop=_list_or_empty(values["stop"]), stop_token_ids=_list_or_empty(values["stop_token_ids"]),
        stop_regex=_list_or_empty(values["stop_regex"]), temperature=values["temperature"],
        top_p=values["top_p"], top_k=values["top_k"], min_p=values["min_p"],
        frequency_penalty=values["frequency_penalty"], presence_penalty=values["presence_penalty"],
        ignore_eos=values["ignore_eos"], return_logprob=values["return_logprob"],
        logprob_start_len=values["logprob_start_len"], top_logprobs_num=values["top_logprobs_num"],
        return_text_in_logprobs=values["return_text_in_logprobs"],
    )


def _list_or_empty(value: Any) -> Any:
    return [] if value is None else value
