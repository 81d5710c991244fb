"""`global_config`: process-wide frontend settings (docs/wire-protocol.md A.11)."""

from __future__ import annotations

from typing import Any


class GlobalConfig:
    """Mutable on purpose: programs flip these at run time, as with SGLang's frontend."""

    def __init__(self) -> None:
        self.verbosity = 0  # 2 logs the final text of every run
        self.default_backend: Any = None  # set by set_default_backend
        self.skip_special_tokens_in_output = True  # sent as sampling_params.skip_special_tokens
        self.spaces_between_special_tokens_in_out = True
        self.enable_precache_with_tracing = True  # run_batch caches the traced constant prefix
        self.enable_parallel_encoding = True  # concate_and_append joins call the backend


global_config = GlobalConfig()
