"""radixlm.runtime: the prefix-sharing inference runtime (server, scheduler, caches, model).

`Engine` is imported lazily so `import radixlm.runtime.sampling.sampling_params` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "ServerArgs"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from radixlm.runtime.engine import Engine

        return Engine
    if name == "ServerArgs":
        from radixlm.runtime.server_args import ServerArgs

        return ServerArgs
    raise AttributeError(name)
