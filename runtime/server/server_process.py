"""ServerProcess: `radixlm serve` in a subprocess, ready once its health route answers.

The one way tests, the soak, benchmarks and the DSL's `Runtime` start a server:

    with ServerProcess.launch(["--max-total-tokens", "8192"]) as server:
        requests.post(server.url + "/generate", json=...)

The server runs in a session of its own (so `stop` can kill its whole process group if
SIGTERM is not enough) and binds loopback unless told otherwise. Standard library only: the
frontend uses it without the runtime's dependencies, and importing it loads no torch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import IO, Any

START_TIMEOUT_S = 300.0  # the first start converts the bundled GGUF model
POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port nothing listens on now (bound once on loopback, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(args: Sequence[str], host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "radixlm.runtime", "--host", host, "--port", str(port), *args]


class ServerProcess:
    def __init__(self, args: Sequence[str] = (), *, host: str = "127.0.0.1", port: int | None = None,
                 stdout: IO | int | None = None, stderr: IO | int | None = None,
                 env: dict[str, str] | None = None, text: bool = False) -> None:
        """Start the process (not waiting for it): `args` are `radixlm serve` flags."""
        self.port = port or free_port()
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"
        self.proc = subprocess.Popen(server_command(args, host, self.port), stdout=stdout, stderr=stderr,
                                     env=env, text=text, start_new_session=True)

    @classmethod
    def launch(cls, args: Sequence[str] = (), timeout: float = START_TIMEOUT_S, ready_path: str = "/health",
               api_key: str | None = None, **kwargs: Any) -> ServerProcess:
        """Start and wait until ready; on any failure the process is stopped before raising."""
        server = cls(args, **kwargs)
        try:
            server.wait_ready(timeout, ready_path, api_key)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = START_TIMEOUT_S, path: str = "/health",
                   api_key: str | None = None) -> ServerProcess:
        """Poll `path` until it answers 200. RuntimeError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode} while starting")
            if self._answers(path, api_key):
                return self
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"the server at {self.url} was not ready within {timeout:.0f} s")

    def _answers(self, path: str, api_key: str | None) -> bool:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers),
                                        timeout=30) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):  # not listening yet, or still loading (503)
            return False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (the server stops its children), then SIGKILL to the whole process group
        if it lingers. Returns the exit code."""
        return stop_process_group(self.proc, timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def stop_process_group(proc: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM to a process that leads its own group, then SIGKILL to the group if it
    lingers past `timeout`; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
