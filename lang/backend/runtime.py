"""Runtime: launch our server in a subprocess and talk to it through a RuntimeEndpoint.

    runtime = Runtime(model_path=None, max_total_tokens=20000)   # ServerArgs fields
    set_default_backend(runtime)       # programs unwrap `.endpoint`
    ...
    runtime.shutdown()

The child is `radixlm serve --<field> <value> ...` started by the runtime's `ServerProcess`,
logging to `.log_path`; readiness is polled on `GET /health_generate` (docs/wire-protocol.md
A.9, B.2). Only the subprocess needs torch: nothing here imports the runtime until a
`Runtime` is built.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import tempfile
from typing import Any

from radixlm.lang.backend.http import http_request
from radixlm.lang.backend.runtime_endpoint import RuntimeEndpoint

logger = logging.getLogger(__name__)


def server_flags(server_args: dict[str, Any]) -> list[str]:
    """The CLI for ServerArgs fields: `--field-name value`, bools as bare flags when true."""
    cmd = []
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
        from radixlm.runtime.server.server_process import ServerProcess

        host = server_args.pop("host", None) or "127.0.0.1"
        port = server_args.pop("port", None)
        server_args["log_level"] = log_level
        self.api_key = server_args.get("api_key")
        # The server's output goes to a log file whose tail explains a failed start.
        with tempfile.NamedTemporaryFile(prefix="radixlm-server-", suffix=".log", delete=False) as log:
            self.log_path = log.name
            self.server = ServerProcess(server_flags(server_args), host=host, port=port,
                                        stdout=log, stderr=subprocess.STDOUT)
        self.url = self.server.url
        atexit.register(self.shutdown)
        try:
            self.server.wait_ready(launch_timeout, "/health_generate", self.api_key)
            self.endpoint = RuntimeEndpoint(self.url, api_key=self.api_key)
        except RuntimeError as exc:
            self.shutdown()
            raise RuntimeError(f"{exc}; its log ends with:\n{self._log_tail()}") from None
        except BaseException:
            self.shutdown()
            raise

    def _log_tail(self, chars: int = 3000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    @property
    def process(self) -> subprocess.Popen:
        return self.server.proc

    def shutdown(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL to its process group after 10 s)."""
        server = getattr(self, "server", None)
        if server is not None:
            server.stop(timeout=10)

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
