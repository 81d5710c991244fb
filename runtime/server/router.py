"""RouterConfig: how radixlm runs SGLang's router (`sglang-router`, pinned to ROUTER_VERSION).

We do not route: the Rust router from the `sglang-router` wheel does (cache-aware policy: an
approximate radix tree per worker over the text it routed, load-balance thresholds, health
checks, retries, `/flush_cache` fan-out, Kubernetes service discovery). This module turns a
frozen RouterConfig into its command line, with every setting we rely on passed explicitly,
so an upgrade of the router cannot silently change our defaults:

    argv = router_command(RouterConfig(port=30000, worker_urls=("http://127.0.0.1:31001",)))

It is an optional extra (`pip install "radixlm[router]"`); `require_router()` fails at once
with the install command when it is missing. Facts measured on 0.3.2 (docs/scale-out.md):
it binds 0.0.0.0 unless told otherwise, and so does its Prometheus endpoint (both get our
host here); it registers workers in the background after it says ready
(`router_process.py` waits for `GET /workers`); it rewrites request bodies, adding fields at
their defaults (`model: null` on /generate, `separate_reasoning: true` on chat), which our
routes accept (`runtime/http/request_fields.py`); it rejects a batch (`text` as a list) on
/generate.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from radixlm.runtime.server_args import API_KEY_ENV, add_field_flags, field_values

ROUTER_VERSION = "0.3.2"
# `python -m sglang_router.launch_router FLAGS...`, except that the API key (for clients and
# workers alike) comes from the environment, so it never shows in `ps`.
ROUTER_MAIN = ("import os, sys; from sglang_router.launch_router import main; "
               f"key = os.environ.pop({API_KEY_ENV!r}, None); "
               "sys.argv[1:] += ['--api-key', key] if key else []; main()")
INSTALL_HINT = f'pip install "radixlm[router]"  (sglang-router=={ROUTER_VERSION})'
# The router reaches for a hub to fetch a tokenizer of the workers' model; it never needs one
# for HTTP routing, and nothing may download at run time.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "warn": "warn", "error": "error",
              "critical": "error"}


@dataclass(frozen=True)
class RouterConfig:
    host: str = "127.0.0.1"
    port: int = 30000
    worker_urls: tuple[str, ...] = ()
    policy: str = "cache_aware"  # or round_robin, random, power_of_two
    cache_threshold: float = 0.3  # match ratio above which the worker with the match is chosen
    balance_abs_threshold: int = 64  # rebalance by load when max - min load exceeds this ...
    balance_rel_threshold: float = 1.5  # ... and max load exceeds min load times this
    eviction_interval_secs: int = 60  # how often the router prunes its approximate trees
    max_tree_size: int = 2**26  # characters kept per approximate tree
    max_payload_size: int = 16 * 1024 * 1024  # bytes; the replicas' --max-body-size default
    request_timeout_secs: int = 1800
    worker_startup_timeout_secs: int = 900  # a first start converts the model
    worker_startup_check_interval: int = 1
    health_check_endpoint: str = "/health"
    # Below uvicorn's 5 s keep-alive: at 5 s a health check once failed with "connection reset"
    # (0.3.2), as when a pooled connection is reused the moment the replica closes it.
    health_check_interval_secs: int = 3
    health_check_timeout_secs: int = 5
    health_failure_threshold: int = 2
    health_success_threshold: int = 1
    # A request whose worker is gone (connection refused) is retried, with the same choice of
    # worker, until that worker's circuit breaker opens; only then does a retry go elsewhere.
    # So retries must outnumber the breaker's threshold, or the first request after a replica
    # dies fails (measured on 0.3.2: 3 retries, breaker at 3 -> one 500).
    retry_max_retries: int = 4
    cb_failure_threshold: int = 2  # failures that open a worker's circuit breaker
    cb_timeout_duration_secs: int = 10  # then it is tried again
    shutdown_grace_period_secs: int = 5
    prometheus_host: str | None = None  # default: the router's host
    prometheus_port: int = 29000
    log_level: str = "info"
    api_key: str | None = None  # clients must send it; the router sends it to the workers
    service_discovery: bool = False  # Kubernetes: find workers by --selector instead of URLs
    selector: tuple[str, ...] = ()  # key=value labels of the worker pods
    service_discovery_port: int = 30000
    service_discovery_namespace: str | None = None

    def __post_init__(self) -> None:
        if not (self.worker_urls or self.service_discovery):
            raise ValueError("the router needs --worker-urls URL... or --service-discovery --selector k=v")
        if self.service_discovery and not self.selector:
            raise ValueError("--service-discovery needs --selector key=value (the worker pods' labels)")
        if self.policy not in ("cache_aware", "round_robin", "random", "power_of_two"):
            raise ValueError(f"policy must be cache_aware, round_robin, random or power_of_two (got {self.policy!r})")
        if not 0.0 <= self.cache_threshold <= 1.0:
            raise ValueError(f"cache_threshold must be in [0, 1] (got {self.cache_threshold})")
        if self.retry_max_retries <= self.cb_failure_threshold:
            raise ValueError(f"retry_max_retries ({self.retry_max_retries}) must exceed cb_failure_threshold "
                             f"({self.cb_failure_threshold}), or a request to a dead worker is never "
                             "retried on another one")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)} (got {self.log_level!r})")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def add_cli_args(cls, parser: argparse.ArgumentParser) -> None:
        add_field_flags(cls, parser)

    @classmethod
    def from_cli(cls, ns: argparse.Namespace) -> RouterConfig:
        values = field_values(cls, ns)
        values["api_key"] = values["api_key"] or os.environ.get(API_KEY_ENV) or None
        return cls(**values)


def router_command(config: RouterConfig) -> list[str]:
    """The router's command line, every setting of `config` spelled out (the flags are
    `python -m sglang_router.launch_router`'s; the key travels in `router_env`)."""
    c = config
    argv = [sys.executable, "-c", ROUTER_MAIN,
            "--host", c.host, "--port", str(c.port),
            "--policy", c.policy, "--cache-threshold", str(c.cache_threshold),
            "--balance-abs-threshold", str(c.balance_abs_threshold),
            "--balance-rel-threshold", str(c.balance_rel_threshold),
            "--eviction-interval-secs", str(c.eviction_interval_secs),
            "--max-tree-size", str(c.max_tree_size),
            "--max-payload-size", str(c.max_payload_size),
            "--request-timeout-secs", str(c.request_timeout_secs),
            "--worker-startup-timeout-secs", str(c.worker_startup_timeout_secs),
            "--worker-startup-check-interval", str(c.worker_startup_check_interval),
            "--health-check-endpoint", c.health_check_endpoint,
            "--health-check-interval-secs", str(c.health_check_interval_secs),
            "--health-check-timeout-secs", str(c.health_check_timeout_secs),
            "--health-failure-threshold", str(c.health_failure_threshold),
            "--health-success-threshold", str(c.health_success_threshold),
            "--retry-max-retries", str(c.retry_max_retries),
            "--cb-failure-threshold", str(c.cb_failure_threshold),
            "--cb-timeout-duration-secs", str(c.cb_timeout_duration_secs),
            "--shutdown-grace-period-secs", str(c.shutdown_grace_period_secs),
            "--prometheus-host", c.prometheus_host or c.host,
            "--prometheus-port", str(c.prometheus_port),
            "--log-level", LOG_LEVELS[c.log_level.lower()]]
    if c.worker_urls:
        argv += ["--worker-urls", *c.worker_urls]
    if c.service_discovery:
        argv += ["--service-discovery", "--selector", *c.selector,
                 "--service-discovery-port", str(c.service_discovery_port)]
        if c.service_discovery_namespace:
            argv += ["--service-discovery-namespace", c.service_discovery_namespace]
    return argv


def router_env(config: RouterConfig) -> dict[str, str]:
    """The router's environment: ours, offline, with the config's API key or none."""
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    return {**env, **OFFLINE_ENV, **({API_KEY_ENV: config.api_key} if config.api_key else {})}


def require_router() -> None:
    """RuntimeError with the install command unless sglang-router is importable at the pinned
    version (another version is refused too: its flags and defaults may differ)."""
    try:
        from sglang_router.version import __version__
    except ImportError:
        raise RuntimeError(f"--dp and `radixlm router` need SGLang's router: {INSTALL_HINT}") from None
    if __version__ != ROUTER_VERSION:
        raise RuntimeError(f"sglang-router {__version__} is installed; radixlm is tested with "
                           f"{ROUTER_VERSION} only: {INSTALL_HINT}")
