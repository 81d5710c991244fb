"""RuntimeEndpoint: a server that speaks SGLang's native protocol (ours or SGLang's), over HTTP.

    backend = RuntimeEndpoint("http://127.0.0.1:30000", api_key=None)

Imports no torch and no radixlm.runtime. The constructor reads `GET /get_model_info` (it must
answer 200) and picks the chat template from `model_path` (docs/wire-protocol.md A.9, A.10).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from radixlm.lang.backend.http import HttpResponse, http_request, sse_events
from radixlm.lang.backend.native import NativeBackend
from radixlm.lang.chat_template import get_chat_template, get_chat_template_by_model_path


class RuntimeEndpoint(NativeBackend):
    support_concate_and_append = True

    def __init__(self, base_url: str, api_key: str | None = None, verify: Any = None,
                 chat_template_name: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.verify = verify
        self.model_info = self._checked(self._call("/get_model_info"), "get_model_info").json()
        if chat_template_name:
            self.chat_template = get_chat_template(chat_template_name)
        else:
            self.chat_template = get_chat_template_by_model_path(self.model_info["model_path"])

    def get_model_name(self) -> str:
        return self.model_info["model_path"]

    def flush_cache(self) -> None:
        self._checked(self._call("/flush_cache", method="POST"), "flush_cache")

    def get_server_info(self) -> dict:
        return self._checked(self._call("/server_info"), "server_info").json()

    def start_profile(self) -> None:
        self._checked(self._call("/start_profile"), "start_profile")

    def stop_profile(self) -> None:
        self._checked(self._call("/stop_profile"), "stop_profile")

    def concatenate_and_append(self, src_rids: list[str], dst_rid: str) -> None:
        body = {"src_rids": src_rids, "dst_rid": dst_rid}
        self._checked(self._call("/concate_and_append_request", body), "concate_and_append_request")

    # ---- transport -----------------------------------------------------------------------
    def _post_generate(self, body: dict) -> dict | list[dict]:
        return self._checked(self._call("/generate", body), "generate").json()

    def _post_generate_stream(self, body: dict) -> Iterator[dict]:
        yield from sse_events(self.base_url + "/generate", body, self.api_key, self.verify)

    def _call(self, path: str, body: Any = None, method: str | None = None) -> HttpResponse:
        return http_request(self.base_url + path, body, method, self.api_key, self.verify)

    @staticmethod
    def _checked(resp: HttpResponse, what: str) -> HttpResponse:
        # Any status but 200 is an error, with the server's body as the message (B.1).
        if resp.status != 200:
            raise RuntimeError(f"{what} failed with HTTP {resp.status}: {resp.error_text()}")
        return resp
