"""`radixlm serve --dp N`: N replicas on this machine behind SGLang's cache-aware router.

    exit_code = launch_dp(ServerArgs(dp=2, port=30000))

Order: check that sglang-router is installed (router.py; fails at once otherwise); plan where
each replica runs (replicas.py: its own CUDA device, or its share of the CPU cores) and log
it; resolve (and if needed convert) the model once, so the replicas never race on the
conversion cache; start every replica on its own loopback port and wait for its /health;
start the router on the host and port the user asked for and wait until `GET /workers`
lists every replica; log the URL. Then watch: a replica that dies is restarted on the same
port (the router routes around it meanwhile and takes it back once healthy), up to
MAX_RESTARTS within RESTART_WINDOW_S, after which everything stops with exit code 1; so does
a router that dies. SIGINT / SIGTERM stop the router, then every replica (exit code 0).
With --tp K every replica is a tensor-parallel group: K CUDA devices, or its share of the
cores split again among its K ranks (replicas.py); a model that cannot be split over K is
refused before any replica starts.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from radixlm.runtime.server.child_process import LOG_FORMAT
from radixlm.runtime.server.launch import (
    exposure_warning,
    ignore_stop_signals,
    raise_interrupt,
    tp_problem,
)
from radixlm.runtime.server.replicas import (
    MAX_RESTARTS,
    RESTART_WINDOW_S,
    Replica,
    describe,
    plan_placements,
)
from radixlm.runtime.server.router import RouterConfig
from radixlm.runtime.server.router_process import RouterProcess
from radixlm.runtime.server.server_process import START_TIMEOUT_S, free_port
from radixlm.runtime.server_args import ServerArgs, field_flags

logger = logging.getLogger("radixlm.dp")

ROUTER_READY_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 0.5
# The router logs every request and registration step at info: keep it to warnings unless
# the user asks for debug output.
ROUTER_LOG_LEVEL = {"info": "warning"}
# Set per replica by the launcher, not copied from the user's flags.
LAUNCHER_FIELDS = frozenset({"host", "port", "dp", "replica_name", "api_key"})


def launch_dp(args: ServerArgs) -> int:
    """Run until a signal (returns 0) or a failed start / a replica past its restarts (1)."""
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, force=True)
    signal.signal(signal.SIGTERM, raise_interrupt)
    if (warning := exposure_warning(args.host, args.api_key)) is not None:
        logger.warning(warning)
    replicas: list[Replica] = []
    router: list[RouterProcess] = []
    try:
        replicas += _plan_replicas(args)
        _resolve_model_once(args)
        _start_replicas(replicas)
        router.append(_start_router(args, replicas))
        return _supervise(router[0], replicas)
    except KeyboardInterrupt:
        logger.info("interrupted; stopping the router and %d replicas", len(replicas))
        return 0
    except (RuntimeError, ValueError) as exc:
        logger.error("--dp %d failed: %s", args.dp, exc)
        return 1
    finally:
        ignore_stop_signals()
        for r in router:
            r.stop()
        with ThreadPoolExecutor(max(1, len(replicas))) as pool:  # in parallel: each takes seconds
            list(pool.map(Replica.stop, replicas))


def _plan_replicas(args: ServerArgs) -> list[Replica]:
    cpus = sorted(os.sched_getaffinity(0))
    placements = plan_placements(args.dp, cpus, _cuda_devices(args.device), gpus_per_replica=args.tp)
    flags = field_flags(args, exclude=LAUNCHER_FIELDS)
    replicas = [Replica(p, flags, free_port(), args.api_key) for p in placements]
    split = "" if placements[0].gpu is not None else f" ({len(cpus)} cores split evenly)"
    logger.info("starting %d replicas%s: %s", len(replicas), split,
                "; ".join(f"{r.name} on {describe(r.placement)} at {r.url}" for r in replicas))
    return replicas


def _cuda_devices(device: str) -> int:
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def _resolve_model_once(args: ServerArgs) -> None:
    """Also refuses, before any replica starts, a model that cannot be split over --tp."""
    from radixlm.runtime.model.loader import resolve_model

    folder = resolve_model(args.model_path)
    if (problem := tp_problem(str(folder), args.tp)) is not None:
        raise ValueError(problem)


def _start_replicas(replicas: list[Replica]) -> None:
    for r in replicas:
        r.start()
    for r in replicas:
        r.wait_ready(START_TIMEOUT_S)
        logger.info("%s ready (pid %d)", r.name, r.pid)


def _start_router(args: ServerArgs, replicas: list[Replica]) -> RouterProcess:
    config = RouterConfig(host=args.host, port=args.port, worker_urls=tuple(r.url for r in replicas),
                          prometheus_port=free_port(), max_payload_size=args.max_body_size,
                          log_level=ROUTER_LOG_LEVEL.get(args.log_level.lower(), args.log_level),
                          api_key=args.api_key)
    router = RouterProcess(config)
    router.wait_ready(ROUTER_READY_TIMEOUT_S)
    logger.info("radixlm ready: %d replicas behind sglang-router (%s policy, pid %d); serving at "
                "http://%s:%d (router metrics on port %d)", len(replicas), config.policy, router.pid,
                args.host, args.port, config.prometheus_port)
    return router


def _supervise(router: RouterProcess, replicas: list[Replica]) -> int:
    while True:
        if (code := router.proc.poll()) is not None:
            logger.error("the router exited unexpectedly (exit code %s); stopping every replica", code)
            return 1
        for r in replicas:
            if (failure := _check(r)) is not None:
                logger.error("%s; stopping the router and every replica", failure)
                return 1
        time.sleep(WATCH_INTERVAL_S)


def _check(r: Replica) -> str | None:
    """Restart `r` if it died or never came up; a message when its restarts are spent."""
    code = r.exit_code()
    if code is None and not r.start_timed_out():
        if not r.ready and r.check_ready():
            logger.info("%s is serving again (pid %d)", r.name, r.pid)
        return None
    why = (f"exited with code {code}" if code is not None
           else f"was not ready within {START_TIMEOUT_S:.0f} s")
    if not r.record_death():
        return (f"{r.name} {why}, more than {MAX_RESTARTS} times within "
                f"{RESTART_WINDOW_S / 60:.0f} min")
    logger.warning("%s (pid %d) %s; restarting it on the same port (%d of %d restarts within %.0f min)",
                   r.name, r.pid, why, len(r.deaths), MAX_RESTARTS, RESTART_WINDOW_S / 60)
    r.stop()
    r.start()
    return None
