"""One real server for the whole test session: `python -m radixlm.runtime` on the bundled
SmolLM2 model, on a free loopback port, with small settings and an API key (so the 401
tests need no second server). Tests talk to it over HTTP only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

API_KEY = "test-key"
BODY_LIMIT = 65536
START_TIMEOUT_S = 300


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "radixlm.runtime", "--port", str(port), "--max-total-tokens", "8192",
           "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} while starting")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not become healthy within {START_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children too
            proc.wait()


@pytest.fixture(scope="session")
def server() -> Server:
    proc, url = start_server("--api-key", API_KEY, "--max-body-size", str(BODY_LIMIT))
    try:
        wait_healthy(proc, url)
        yield Server(url, proc, {"Authorization": f"Bearer {API_KEY}"})
    finally:
        stop_server(proc)
