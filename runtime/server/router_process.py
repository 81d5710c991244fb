"""RouterProcess: SGLang's router (router.py) in a subprocess, ready once it lists its workers.

    router = RouterProcess(config)          # starts it (its own session)
    router.wait_ready(timeout=60)           # until GET /workers lists every config.worker_urls
    ...
    router.stop()                           # SIGTERM, then SIGKILL to its group

The router says it is ready before its workers are registered (registration runs in the
background), so readiness here is `GET /workers` listing each URL of the config as healthy;
with service discovery, any one healthy worker. `run_router` is `radixlm router`.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import IO, Any

from radixlm.runtime.server.child_process import LOG_FORMAT
from radixlm.runtime.server.launch import exposure_warning, ignore_stop_signals, raise_interrupt
from radixlm.runtime.server.router import RouterConfig, router_command, router_env
from radixlm.runtime.server.server_process import stop_process_group

logger = logging.getLogger("radixlm.router")

POLL_INTERVAL_S = 0.25
STOP_TIMEOUT_S = 15.0


class RouterProcess:
    def __init__(self, config: RouterConfig, *, stdout: IO | int | None = None,
                 stderr: IO | int | None = None) -> None:
        """Start the router (not waiting for it)."""
        self.config = config
        self.url = config.url
        self.proc = subprocess.Popen(router_command(config), env=router_env(config), stdout=stdout,
                                     stderr=stderr, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[dict[str, Any]]:
        """The router's `GET /workers` list ([] while it does not answer)."""
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + "/workers", headers=headers),
                                        timeout=5) as resp:
                return json.loads(resp.read()).get("workers", [])
        except (urllib.error.URLError, OSError, ValueError):
            return []

    def healthy_worker_urls(self) -> set[str]:
        return {w["url"] for w in self.workers() if w.get("is_healthy")}

    def wait_ready(self, timeout: float) -> RouterProcess:
        """Poll until the workers are registered. RuntimeError if it exits or time runs out."""
        wanted = set(self.config.worker_urls)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the router exited with code {self.proc.returncode} while starting")
            healthy = self.healthy_worker_urls()
            if (wanted and wanted <= healthy) or (not wanted and healthy):
                return self
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"the router at {self.url} did not register its workers within {timeout:.0f} s "
                           f"(registered and healthy: {sorted(self.healthy_worker_urls()) or 'none'})")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (it drains for --shutdown-grace-period-secs), then SIGKILL to its group."""
        return stop_process_group(self.proc, timeout)

    def __enter__(self) -> RouterProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_router(config: RouterConfig, ready_timeout: float = 60.0) -> int:
    """`radixlm router`: run the router in the foreground until it exits or a signal stops it.
    Workers that are not healthy within `ready_timeout` get a warning: the router keeps
    serving with the others and takes them in once their health checks pass."""
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT, force=True)
    signal.signal(signal.SIGTERM, raise_interrupt)
    if (warning := exposure_warning(config.host, config.api_key)) is not None:
        logger.warning(warning)
    router = RouterProcess(config)
    try:
        try:
            router.wait_ready(ready_timeout)
            logger.info("router ready at %s (%s policy) with workers %s", config.url, config.policy,
                        ", ".join(sorted(router.healthy_worker_urls())))
        except RuntimeError as exc:
            if router.proc.poll() is not None:
                logger.error("%s", exc)
                return 1
            logger.warning("%s; serving with the workers it has", exc)
        return router.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        ignore_stop_signals()
        router.stop()
