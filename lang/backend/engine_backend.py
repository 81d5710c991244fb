"""EngineBackend: run programs on an in-process radixlm.runtime.Engine (no HTTP).

    backend = EngineBackend(max_total_tokens=20000)   # builds an Engine (ServerArgs fields)
    backend = EngineBackend(engine)                   # or wraps one you own

It sends the same /generate bodies as RuntimeEndpoint (NativeBackend) straight to
`Engine.generate` / `Engine.generate_stream`, whose results have the server's shape. The
chat template is matched from the model path, else recognised from the HF tokenizer's own
template (SmolLM2's ChatML markup -> `chatml`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from radixlm.lang.backend.native import NativeBackend
from radixlm.lang.chat_template import get_chat_template, template_from_hf

_LOGPROB_KEYS = ("return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs")
_wrapped: dict[int, EngineBackend] = {}
_wrapped_lock = threading.Lock()


class EngineBackend(NativeBackend):
    # The in-process engine has no concate-and-append; joins concatenate text client-side.
    support_concate_and_append = False

    def __init__(self, engine: Any = None, chat_template_name: str | None = None,
                 **server_args: Any) -> None:
        """Wrap `engine`, or build one from ServerArgs fields (then `shutdown()` stops it)."""
        super().__init__()
        if engine is None:
            from radixlm.runtime.engine import Engine

            engine = Engine(**server_args)
            self._owns_engine = True
        else:
            if server_args:
                raise ValueError("pass either an engine or server args, not both")
            self._owns_engine = False
        self.engine = engine
        self.model_path = str(engine.args.model_path or engine.model_folder)
        if chat_template_name is not None:
            self.chat_template = get_chat_template(chat_template_name)
        else:
            hf_template = getattr(engine.tokenizer, "chat_template", None)
            self.chat_template = template_from_hf(self.model_path, hf_template)

    @classmethod
    def for_engine(cls, engine: Any) -> EngineBackend:
        """The one EngineBackend of `engine` (so that set_default_backend(engine) is cheap)."""
        with _wrapped_lock:
            backend = _wrapped.get(id(engine))
            if backend is None or backend.engine is not engine:
                backend = _wrapped[id(engine)] = cls(engine)
            return backend

    def get_model_name(self) -> str:
        return self.model_path

    def flush_cache(self) -> bool:
        return self.engine.flush_cache()

    def get_server_info(self) -> dict:
        info = dataclasses.asdict(self.engine.args)
        info["model_folder"] = str(self.engine.model_folder)
        return info

    def shutdown(self) -> None:
        if self._owns_engine:
            self.engine.shutdown()

    def _post_generate(self, body: dict) -> dict | list[dict]:
        return self.engine.generate(
            body.get("text"), body["sampling_params"], input_ids=body.get("input_ids"),
            **self._extra_kwargs(body),
        )

    def _post_generate_stream(self, body: dict) -> Iterator[dict]:
        yield from self.engine.generate_stream(body["text"], body["sampling_params"],
                                               **self._extra_kwargs(body))

    @staticmethod
    def _extra_kwargs(body: dict) -> dict:
        if body.get("image_data") is not None:
            raise NotImplementedError("the in-process engine serves text-only models; images are not supported")
        return {k: body[k] for k in _LOGPROB_KEYS if k in body}
