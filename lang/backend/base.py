"""BaseBackend: the one interface every backend implements (docs/architecture.md §8).

The interpreter calls these from a state's worker thread, one call at a time per state but
concurrently across states (forks, batch items), so implementations must be thread-safe.
A backend never sees interpreter objects: it gets a `Prompt` (the text so far plus the chat
messages recorded at role ends) and resolved `SglSamplingParams`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from radixlm.lang.chat_template import ChatTemplate, get_chat_template
from radixlm.lang.ir import ChoicesDecision, SglSamplingParams


class Prompt(NamedTuple):
    text: str  # the whole program text so far
    messages: list[dict]  # OpenAI-format messages completed so far
    cur_role: str | None  # the role currently open, if any
    image_data: str | None = None  # one base64 image, when the state has one


class BaseBackend:
    support_concate_and_append = False

    def __init__(self) -> None:
        self.chat_template: ChatTemplate = get_chat_template("default")

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    def get_model_name(self) -> str:
        raise NotImplementedError

    def generate(self, prompt: Prompt, sampling_params: SglSamplingParams) -> tuple[str, dict]:
        """Complete `prompt`; returns (completion text, meta_info)."""
        raise NotImplementedError

    def generate_stream(self, prompt: Prompt, sampling_params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict]]:
        """Yield (new text, meta_info) per event; logprob lists in meta_info are increments."""
        raise NotImplementedError

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: Any) -> ChoicesDecision:
        raise NotImplementedError

    def cache_prefix(self, prefix: str) -> None:
        """Ask the backend to keep `prefix` cached (a hint; may be a no-op)."""

    def commit_lazy_operations(self, prompt: Prompt) -> None:
        """Prefill `prompt` so that requests extending it reuse its KV (a hint; may be a no-op)."""

    def concatenate_and_append(self, src_rids: list[str], dst_rid: str) -> None:
        raise NotImplementedError

    def flush_cache(self) -> Any:
        """Drop the backend's prefix cache, where it has one."""

    def get_server_info(self) -> dict:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release what the backend owns (processes, engines); a no-op by default."""


def resolve_backend(backend: Any) -> BaseBackend:
    """The backend a program runs on: `backend`, else the default, unwrapping `.endpoint`.

    A radixlm.runtime.Engine is wrapped in an EngineBackend, so
    `set_default_backend(rl.Engine(...))` works.
    """
    from radixlm.lang.global_config import global_config

    backend = backend if backend is not None else global_config.default_backend
    if backend is None:
        raise ValueError(
            "no backend: pass backend=... or call set_default_backend(...) first, e.g. "
            "set_default_backend(RuntimeEndpoint('http://127.0.0.1:30000'))"
        )
    if hasattr(backend, "endpoint") and not isinstance(backend, BaseBackend):
        backend = backend.endpoint
    if isinstance(backend, BaseBackend):
        return backend
    if hasattr(backend, "generate_stream") and hasattr(backend, "tokenizer"):
        from radixlm.lang.backend.engine_backend import EngineBackend

        return EngineBackend.for_engine(backend)
    raise TypeError(f"{type(backend).__name__} is not a backend; use RuntimeEndpoint, Runtime, "
                    "EngineBackend, OpenAI or a radixlm.runtime.Engine")
