"""radixlm.lang: the programmable frontend, API-compatible with `sglang.lang`.

See docs/architecture.md §8.

    import radixlm.lang as rl          # SGLang programs run with `import radixlm.lang as sgl`

    @rl.function
    def qa(s, question):
        s += rl.user(question)
        s += rl.assistant(rl.gen("answer", max_tokens=64))

    rl.set_default_backend(rl.RuntimeEndpoint("http://127.0.0.1:30000"))
    print(qa.run(question="What is a radix tree?")["answer"])

Nothing here imports torch or radixlm.runtime; `Engine`, `EngineBackend`, `Runtime` and
`OpenAI` are imported lazily on first use.
"""

from __future__ import annotations

from typing import Any

from radixlm.lang.api import (
    assistant,
    assistant_begin,
    assistant_end,
    flush_cache,
    function,
    gen,
    gen_int,
    gen_string,
    get_server_info,
    image,
    select,
    separate_reasoning,
    set_default_backend,
    system,
    system_begin,
    system_end,
    user,
    user_begin,
    user_end,
    video,
)
from radixlm.lang.backend.runtime_endpoint import RuntimeEndpoint
from radixlm.lang.choices import (
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from radixlm.lang.global_config import global_config

__version__ = "0.1.0"

__all__ = [
    "Engine", "EngineBackend", "OpenAI", "Runtime", "RuntimeEndpoint", "ServerArgs", "ToolCall",
    "assistant", "assistant_begin", "assistant_end", "flush_cache", "function", "gen", "gen_int",
    "gen_string", "get_server_info", "global_config", "greedy_token_selection", "image", "select",
    "describe_tools", "separate_reasoning", "set_default_backend", "system", "system_begin", "system_end",
    "token_length_normalized", "unconditional_likelihood_normalized", "user", "user_begin",
    "user_end", "video",
]

_LAZY = {
    "EngineBackend": ("radixlm.lang.backend.engine_backend", "EngineBackend"),
    "Runtime": ("radixlm.lang.backend.runtime", "Runtime"),
    "OpenAI": ("radixlm.lang.backend.openai", "OpenAI"),
    "Engine": ("radixlm.runtime.engine", "Engine"),
    "ServerArgs": ("radixlm.runtime.server_args", "ServerArgs"),
    "ToolCall": ("radixlm.lang.tools", "ToolCall"),
    "describe_tools": ("radixlm.lang.tools", "describe_tools"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'radixlm.lang' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
