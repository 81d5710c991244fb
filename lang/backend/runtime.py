"""Runtime: launch our server in a subprocess and talk to it through a RuntimeEndpoint.

    runtime = Runtime(model_path=None, max_total_tokens=20000)   # ServerArgs fields
    set_default_backend(runtime)       # programs unwrap `.endpoint`
    ...
    runtime.shutdown()

The child is `python -m radixlm.runtime --<field> <value> ...`, logging to `.log_path`;
readiness is polled on `GET /health_generate` (wire-protocol.md A.9, B.2). Only the
subprocess needs torch.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from radixlm.lang.backend.http import http_request
from radixlm.lang.backend.runtime_endpoint import RuntimeEndpoint

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server_args: dict[str, Any]) -> list[str]:
    """The CLI for ServerArgs fields: `--field-name value`, bools as bare flags when true."""
    cmd = [sys.executable, "-m", "radixlm.runtime"]
    for name, value in server_args.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd


class Runtime:
    def __init__(self, log_level: str = "error", launch_timeout: float = 300.0,
                 **server_args: Any) -> None:
        """Start the server and wait until it generates; raises RuntimeError if it cannot."""
        server_args.setdefault("host", "127.0.0.1")
        if server_args.get("port") is None:
            server_args["port"] = _free_port()
        server_args["log_level"] = log_level
        self.url = f"http://{server_args['host']}:{server_args['port']}"
        self.api_key = server_args.get("api_key")
        # The server's output goes to a log file whose tail explains a failed start.
        with tempfile.NamedTemporaryFile(prefix="radixlm-server-", suffix=".log", delete=False) as log:
            self.log_path = log.name
            self.process = subprocess.Popen(server_command(server_args), env=os.environ.copy(),
                                            stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.shutdown)
        try:
            self._wait_ready(launch_timeout)
            self.endpoint = RuntimeEndpoint(self.url, api_key=self.api_key)
        except BaseException:
            self.shutdown()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode} during "
                                   f"start-up; its log ends with:\n{self._log_tail()}")
            try:
                if http_request(self.url + "/health_generate", api_key=self.api_key, timeout=30).status == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"the server at {self.url} was not ready within {timeout} s; "
                           f"its log ends with:\n{self._log_tail()}")

    def _log_tail(self, chars: int = 3000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def shutdown(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 10 s)."""
        proc = getattr(self, "process", None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cache_prefix(self, prefix: str) -> None:
        self.endpoint.cache_prefix(prefix)

    def get_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.endpoint.model_info["tokenizer_path"])

    def get_server_info(self) -> dict:
        return self.endpoint.get_server_info()

    def generate(self, prompt: str | list[str], sampling_params: dict | None = None,
                 return_logprob: bool = False, logprob_start_len: int | None = None,
                 top_logprobs_num: int | None = None) -> Any:
        """One raw `/generate` call; returns the JSON result."""
        body: dict[str, Any] = {"text": prompt, "sampling_params": sampling_params or {},
                                "return_logprob": return_logprob}
        if logprob_start_len is not None:
            body["logprob_start_len"] = logprob_start_len
        if top_logprobs_num is not None:
            body["top_logprobs_num"] = top_logprobs_num
        return self.endpoint._post_generate(body)

    def encode(self, text: str) -> dict:
        resp = http_request(self.url + "/encode", {"text": text}, api_key=self.api_key)
        return RuntimeEndpoint._checked(resp, "encode").json()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
