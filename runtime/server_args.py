"""ServerArgs: the one frozen configuration of a radixlm runtime (Engine or server).

The CLI is generated from the fields (`add_cli_args` / `from_cli`), so a new option is one
field here. Parts below take explicit typed arguments derived from it; nothing mutates it.
`add_field_flags` / `field_values` / `field_flags` do the same for any flat frozen
dataclass (the router's `RouterConfig` uses them too).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

API_KEY_ENV = "RADIXLM_API_KEY"
TOOL_CALL_PARSERS = ("hermes", "qwen25", "llama3", "mistral")  # runtime/tools/formats.py FORMATS


@dataclass(frozen=True)
class ServerArgs:
    model_path: str | None = None  # HF folder or .gguf file; None = bundled SmolLM2-135M-Instruct
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 30000
    api_key: str | None = None  # CLI: --api-key, else the RADIXLM_API_KEY environment variable
    device: str = "auto"
    dtype: str = "auto"
    mem_fraction: float | None = None  # of free memory for the KV pool (default 0.85 CUDA, 0.1 CPU)
    max_total_tokens: int | None = None  # KV pool size in tokens (overrides mem_fraction)
    max_running_requests: int = 256
    max_queued_requests: int = 4096
    chunked_prefill_size: int = 2048
    context_length: int | None = None  # default: the model's
    disable_radix_cache: bool = False
    schedule_policy: str = "lpm"
    random_seed: int | None = None
    chat_template: str | None = None  # path to a Jinja template overriding the model's
    tool_call_parser: str | None = None  # hermes|qwen25|llama3|mistral; default: told from the chat template
    log_level: str = "info"
    log_requests: bool = False
    disable_jump_forward: bool = False
    # CPU float32 paths (runtime/model/path_selection.py): "auto" times the candidates at start-up
    # on this CPU and keeps the faster (cached on disk per CPU and model); a value forces one.
    cpu_decode: str = "auto"  # one-token forward: auto | compiled (TorchInductor) | eager
    cpu_weights: str = "auto"  # linear weights: auto | prepacked (oneDNN copy) | panels (C, + oneDNN) | plain
    disable_torch_compile: bool = False  # = --cpu-decode eager
    disable_weight_prepack: bool = False  # = --cpu-weights plain
    grammar_compile_timeout: float = 30.0  # seconds; a constraint slower to compile is a 400
    grammar_workers: int = 2  # compile worker processes
    grammar_memory_limit: int = 2048  # MiB one compile may add to its worker; past it: a 400
    grammar_queue_timeout: float = 30.0  # seconds a compile may wait for a worker; past it: a 503
    disable_budget_completion: bool = False  # constrained outputs may then be cut at max_new_tokens
    max_body_size: int = 16 * 1024 * 1024  # HTTP request body limit in bytes (413 above it)
    scheduler_threads: int | None = None  # torch threads of the server's scheduler process
    # ... for a step in which no request streams output and no grammar compiles (only prompts
    # computed: the other processes are idle then). Default: every core the process may use.
    prefill_threads: int | None = None
    dp: int = 1  # > 1: that many replicas behind sglang-router (runtime/server/dp_launch.py)
    tp: int = 1  # > 1: one model split over that many ranks (tensor parallelism, runtime/distributed/)
    replica_name: str | None = None  # names this server in responses and /metrics (set by --dp)

    def __post_init__(self) -> None:
        if self.mem_fraction is not None and not 0.0 < self.mem_fraction < 1.0:
            raise ValueError(f"mem_fraction must be in (0, 1) (got {self.mem_fraction})")
        for name in ("max_running_requests", "chunked_prefill_size", "max_queued_requests", "max_body_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("scheduler_threads", "prefill_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_total_tokens is not None and self.max_total_tokens < 16:
            raise ValueError(f"max_total_tokens must be >= 16 (got {self.max_total_tokens})")
        for name in ("grammar_compile_timeout", "grammar_queue_timeout", "grammar_workers", "grammar_memory_limit"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.schedule_policy not in ("lpm", "fcfs"):
            raise ValueError(f"schedule_policy must be lpm or fcfs (got {self.schedule_policy!r})")
        if self.tool_call_parser is not None and self.tool_call_parser not in TOOL_CALL_PARSERS:
            raise ValueError(f"tool_call_parser must be one of {', '.join(TOOL_CALL_PARSERS)} "
                             f"(got {self.tool_call_parser!r})")
        if self.dp < 1:
            raise ValueError(f"dp must be >= 1 (got {self.dp})")
        if self.tp < 1:
            raise ValueError(f"tp must be >= 1 (got {self.tp})")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535] (got {self.port})")
        self.path_request()  # raises on an unknown or contradictory CPU path

    def path_request(self):
        """The CPU path request of the four path fields (a PathRequest)."""
        from radixlm.runtime.model.path_selection import request_from_flags

        return request_from_flags(self.cpu_decode, self.cpu_weights, self.disable_torch_compile,
                                  self.disable_weight_prepack)

    def replace(self, **changes) -> ServerArgs:
        return dataclasses.replace(self, **changes)

    @classmethod
    def add_cli_args(cls, parser: argparse.ArgumentParser) -> None:
        add_field_flags(cls, parser)

    @classmethod
    def from_cli(cls, ns: argparse.Namespace) -> ServerArgs:
        values = field_values(cls, ns)
        # A key on the command line is visible to every local user in `ps`; the environment is not.
        values["api_key"] = values["api_key"] or os.environ.get(API_KEY_ENV) or None
        return cls(**values)


def add_field_flags(cls: type, parser: argparse.ArgumentParser) -> None:
    """One `--flag-name` per field of the dataclass `cls`: bools are switches, tuples take
    several values, `X | None` takes an X."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        if typ is bool:
            parser.add_argument(flag, action="store_true", default=f.default)
            continue
        args = [t for t in getattr(typ, "__args__", (typ,)) if t is not type(None) and t is not Ellipsis]
        nargs = "*" if getattr(typ, "__origin__", None) is tuple else None
        parser.add_argument(flag, type=args[0] if args else str, default=f.default, dest=f.name, nargs=nargs)


def field_values(cls: type, ns: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of `add_field_flags`' flags, by field name (lists as tuples)."""
    values = {f.name: getattr(ns, f.name) for f in fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def field_flags(obj: Any, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The command line that `add_field_flags` parses back into `obj`: one flag per field
    that differs from its default, except those in `exclude`."""
    argv: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in exclude or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
