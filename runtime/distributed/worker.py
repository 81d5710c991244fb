"""A tensor-parallel rank's life: join the group, load its shard, then (ranks 1..N-1) run
every forward rank 0 broadcasts.

    tp = join_tp_group(args, rank, store, pin=True)          # every rank
    slots, facts = exchange_start_info(tp, slots, runner)    # every rank, after loading
    run_tp_rank(args, rank, store, parent_pid)               # the entry point of ranks 1..N-1

A follower owns a model shard and a KV pool with the same slot count as rank 0's (the
smallest any rank can afford), and nothing else: no requests, no cache, no sampler. It
exits 0 when rank 0 says stop or its parent process is gone, and 1 (after FAILURE_GRACE_S)
when the group breaks.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import torch

from radixlm.runtime.distributed.batch_sync import receive_batch
from radixlm.runtime.distributed.group import (
    FAILURE_GRACE_S,
    TensorParallelError,
    TPGroup,
    init_tp_group,
)
from radixlm.runtime.distributed.ranks import rank_cpus
from radixlm.runtime.server.child_process import exit_now, parent_is_gone, setup_child

logger = logging.getLogger(__name__)

PARENT_POLL_S = 0.5


def join_tp_group(args, rank: int, store: str, pin: bool, explain_failure=None) -> TPGroup:
    """Place this rank (its cores and torch threads, or its CUDA device) and join the group."""
    from radixlm.runtime.model.runner import pick_device

    device = pick_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank)  # CUDA_VISIBLE_DEVICES holds this group's devices
    else:
        _place_on_cpus(rank, args.tp, args.scheduler_threads, pin)
    return init_tp_group(rank, args.tp, store, device, explain_failure)


def _place_on_cpus(rank: int, size: int, max_threads: int | None, pin: bool) -> None:
    cpus, own = rank_cpus(rank, size, sorted(os.sched_getaffinity(0)))
    if pin and own:
        os.sched_setaffinity(0, cpus)
    threads = len(cpus) if own else max(1, len(cpus) // size)
    torch.set_num_threads(min(threads, max_threads or threads))
    logger.info("tp rank %d: %s cores %s, %d torch thread(s)", rank, "pinned to" if pin and own else "on",
                list(cpus), torch.get_num_threads())


def exchange_start_info(tp: TPGroup, kv_slots: int, runner) -> tuple[int, list[dict]]:
    """Every rank's facts (pid, device, parameter bytes, affordable KV slots); returns the
    slot count all ranks use (the smallest) and the facts in rank order."""
    facts = tp.all_gather_object({"rank": tp.rank, "pid": os.getpid(), "device": str(tp.device),
                                  "param_bytes": runner.param_bytes(), "kv_slots": kv_slots})
    return min(f["kv_slots"] for f in facts), facts


def run_tp_rank(args, rank: int, store: str, parent_pid: int) -> None:
    """Entry point of a spawned follower rank (`args.model_path` is a resolved HF folder)."""
    setup_child(args.log_level)
    # No Python handler: one would run only after the gloo call this rank blocks in returns.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        tp = join_tp_group(args, rank, store, pin=True)
        runner, pool = _load_shard(args, tp)
        serve_batches(tp, runner, pool)
    except TensorParallelError as exc:
        logger.error("%s; exiting", exc)
        time.sleep(FAILURE_GRACE_S)
        exit_now(1)
    except Exception:
        logger.exception("tp rank %d failed", rank)
        exit_now(1)
    tp.close()
    exit_now(0)


def _load_shard(args, tp: TPGroup):
    from radixlm.runtime.bootstrap import kv_slots
    from radixlm.runtime.mem_cache.memory_pool import KVPool
    from radixlm.runtime.model.config import ModelConfig
    from radixlm.runtime.model.runner import ModelRunner, pick_dtype

    folder = Path(args.model_path)
    cfg = ModelConfig.from_folder(folder)
    runner = ModelRunner(folder, cfg, tp.device, pick_dtype(args.dtype, tp.device), paths=args.path_request(), tp=tp)
    slots, _ = exchange_start_info(tp, kv_slots(args, cfg, runner), runner)
    return runner, KVPool(slots, cfg.num_layers, runner.kv_heads, cfg.head_dim, runner.dtype, tp.device)


def serve_batches(tp: TPGroup, runner, pool) -> None:
    """Run every forward rank 0 broadcasts, until it says stop."""
    while (fb := receive_batch(tp, pool.k_buffers, pool.v_buffers, tp.device)) is not None:
        runner.model(fb.input_ids, fb.positions, fb)


def _exit_with_parent(parent_pid: int) -> None:
    while not parent_is_gone(parent_pid):
        time.sleep(PARENT_POLL_S)
    logger.warning("the process that started this rank is gone; exiting")
    exit_now(0)
