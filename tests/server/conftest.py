"""One real server for the whole test session: `radixlm serve` on the bundled SmolLM2 model
(runtime/server/server_process.py), on a free loopback port, with small settings and an API
key (so the 401 tests need no second server). Tests talk to it over HTTP only."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests

from radixlm.runtime.server.server_process import ServerProcess

API_KEY = "test-key"
BODY_LIMIT = 65536


@dataclass
class Server:
    url: str
    proc: ServerProcess
    headers: dict

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=120, **kw)

    def post(self, path: str, json=None, **kw) -> requests.Response:
        return requests.post(self.url + path, json=json, headers={**self.headers, **kw.pop("headers", {})},
                             timeout=120, **kw)

    def generate(self, body: dict) -> dict | list:
        resp = self.post("/generate", body)
        assert resp.status_code == 200, resp.text
        return resp.json()


def start_server(*extra: str) -> ServerProcess:
    """A server with the session's small settings plus `extra` flags, once it is healthy."""
    return ServerProcess.launch(["--max-total-tokens", "8192", "--log-level", "warning", *extra])


@pytest.fixture(scope="session")
def server() -> Server:
    with start_server("--api-key", API_KEY, "--max-body-size", str(BODY_LIMIT)) as proc:
        yield Server(proc.url, proc, {"Authorization": f"Bearer {API_KEY}"})
