"""Start the server: scheduler + detokenizer child processes, then HTTP (docs/architecture.md §2).

    exit_code = launch_server(ServerArgs(port=30000))

Order: resolve (and if needed convert) the model once here, so children never race on the
conversion cache; spawn the children; load the tokenizer and bind the main process's socket
meanwhile; wait for both ready messages (model loaded, KV pool sized); only then open the
port and log the URL. While serving, a watcher checks the children: if one dies, in-flight
requests fail, the server stops with a clear log line and the exit code is 1. SIGINT/SIGTERM stop everything (exit 0);
children are terminated in `finally` and also exit by themselves if this process vanishes.

With --tp N the children also include tensor-parallel ranks 1..N-1 ("tp-rank-i", siblings of
the scheduler, which is rank 0; runtime/distributed/), so the same watcher names a rank that
dies; their rendezvous file is in the private IPC folder. A model whose heads do not divide
by N is refused here, before anything starts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import multiprocessing as mp
import os
import signal
import sys

from radixlm.runtime.server.child_process import LOG_FORMAT
from radixlm.runtime.server.ipc import IpcEndpoints
from radixlm.runtime.server_args import ServerArgs

logger = logging.getLogger("radixlm.server")

READY_TIMEOUT_S = 900.0  # first start converts the GGUF model (tens of seconds on a CPU)
WATCH_INTERVAL_S = 0.5


class ChildProcesses:
    """The scheduler and detokenizer processes (spawned: no forked torch/zmq state)."""

    def __init__(self, args: ServerArgs, model_folder: str, endpoints: IpcEndpoints) -> None:
        from radixlm.runtime.distributed.ranks import follower_processes, store_path
        from radixlm.runtime.server.detokenizer_process import run_detokenizer_process
        from radixlm.runtime.server.scheduler_process import run_scheduler_process

        ctx = mp.get_context("spawn")
        pid = os.getpid()
        child_args = args.replace(model_path=model_folder)
        self.procs = {
            # Not a daemon: it starts grammar compile workers of its own (multiprocessing
            # forbids children to daemons). stop() ends it; it also exits when we vanish.
            "scheduler": ctx.Process(target=run_scheduler_process, args=(child_args, endpoints, pid),
                                     name="scheduler", daemon=False),
            "detokenizer": ctx.Process(target=run_detokenizer_process,
                                       args=(model_folder, endpoints, pid, args.log_level),
                                       name="detokenizer", daemon=True),
        }
        if args.tp > 1:
            self.procs.update(follower_processes(child_args, store_path(endpoints.folder), pid, ctx))

    def start(self) -> None:
        for p in self.procs.values():
            p.start()

    def dead_child(self) -> str | None:
        """A message naming the first child that exited, or None while all run."""
        for name, p in self.procs.items():
            if not p.is_alive():
                return f"the {name} process exited unexpectedly (exit code {p.exitcode})"
        return None

    def stop(self, timeout: float = 5.0) -> None:
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
        for p in self.procs.values():
            p.join(timeout)
            if p.is_alive():
                logger.warning("the %s process ignored SIGTERM; killing it", p.name)
                p.kill()
                p.join(timeout)


def launch_server(args: ServerArgs) -> int:
    """Run until a signal (returns 0) or a dead child / failed start (returns 1)."""
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, force=True)
    signal.signal(signal.SIGTERM, raise_interrupt)  # SIGTERM stops cleanly, like Ctrl-C
    if (warning := exposure_warning(args.host, args.api_key)) is not None:
        logger.warning(warning)  # first, before the model loads: the operator sees it at once
    from radixlm.runtime.model.loader import resolve_model

    endpoints = IpcEndpoints.in_new_dir()
    children: list[ChildProcesses] = []
    try:
        folder = str(resolve_model(args.model_path))
        if (problem := tp_problem(folder, args.tp)) is not None:
            logger.error("server start-up failed: %s", problem)
            return 1
        return asyncio.run(_serve(args, folder, endpoints, children))
    except KeyboardInterrupt:
        logger.info("interrupted; shutting down")
        return 0
    finally:
        for c in children:
            c.stop()
        endpoints.remove()


def tp_problem(folder: str, tp: int) -> str | None:
    """Why the model in `folder` cannot be split over `tp` ranks, or None (also dp_launch.py)."""
    from radixlm.runtime.distributed.sharding import check_folder_fits

    try:
        check_folder_fits(folder, tp)
    except ValueError as exc:
        return str(exc)
    return None


def raise_interrupt(signum, frame) -> None:
    """A SIGTERM handler that stops like Ctrl-C (also used by dp_launch.py, router_process.py)."""
    raise KeyboardInterrupt


def ignore_stop_signals() -> None:
    """While shutting down: a second Ctrl-C or SIGTERM must not cut the cleanup short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server is reachable beyond this machine with no --api-key."""
    if api_key or _is_loopback(host):
        return None
    where = "on all network interfaces" if host in ("", "0.0.0.0", "::", "[::]") else f"on {host}"
    return (f"listening {where} without --api-key: anyone who can reach this port can run "
            "generations and flush the cache; pass --api-key KEY or bind --host 127.0.0.1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: assume it is reachable
        return False


async def _serve(args: ServerArgs, folder: str, endpoints: IpcEndpoints,
                 children: list[ChildProcesses]) -> int:
    import uvicorn

    from radixlm.runtime.http.common import REPLICA_HEADER, replica_label
    from radixlm.runtime.http.native_api import build_app
    from radixlm.runtime.server.tokenizer_manager import StartupError, TokenizerManager

    procs = ChildProcesses(args, folder, endpoints)
    children.append(procs)
    procs.start()  # first, so their model loading overlaps ours; zmq queues until we bind
    tm = TokenizerManager(args, folder, endpoints)
    try:
        info = await tm.wait_ready(procs.dead_child, READY_TIMEOUT_S)
    except StartupError as exc:
        logger.error("server start-up failed: %s", exc)
        return 1
    # REPLICA_HEADER as a default header: on every response, a 500 of an unhandled error too.
    replica = (REPLICA_HEADER, replica_label(args.replica_name, args.host, args.port))
    config = uvicorn.Config(build_app(tm, args), host=args.host, port=args.port,
                            log_level=args.log_level.lower(), access_log=args.log_requests,
                            timeout_graceful_shutdown=5, headers=[replica])
    server = uvicorn.Server(config)
    failure: list[str] = []
    watcher = asyncio.create_task(_watch(server, procs, tm, failure, info, args))
    await server.serve()
    watcher.cancel()
    if failure:
        logger.error("server stopped: %s", failure[0])
        return 1
    return 0


async def _watch(server, procs: ChildProcesses, tm, failure: list[str], info: dict,
                 args: ServerArgs) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    logger.info("radixlm ready: KV pool %d tokens, context %d; serving at http://%s:%d",
                info["kv_pool_size"], info["context_len"], args.host, args.port)
    while not server.should_exit:
        if (why := procs.dead_child()) is not None:
            failure.append(why)
            logger.error("%s; stopping the server", why)
            tm.fail_all(why)
            server.should_exit = True
            return
        await asyncio.sleep(WATCH_INTERVAL_S)
    # A signal is stopping uvicorn: answer the requests still waiting now (503) instead of
    # letting the graceful-shutdown timeout cancel them.
    tm.fail_all("the server is shutting down")


if __name__ == "__main__":  # pragma: no cover - use `radixlm serve`
    sys.exit(launch_server(ServerArgs()))
