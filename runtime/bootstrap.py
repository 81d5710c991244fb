"""Build a ready Scheduler (model loaded, KV pool sized) from ServerArgs.

Used by the in-process Engine and by the server's scheduler process, so both start the
same way and log the same facts (model, device, dtype, KV pool size in tokens).

With --tp N this process is rank 0 of a tensor-parallel group (runtime/distributed/): it
joins the group (the server's launcher started the other ranks; for the Engine it starts
them here), loads its shard, and agrees with the other ranks on one KV pool size.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from radixlm.runtime.distributed.sharding import check_folder_fits
from radixlm.runtime.model.config import ModelConfig
from radixlm.runtime.model.loader import resolve_model
from radixlm.runtime.model.runner import ModelRunner, kv_pool_capacity, pick_device, pick_dtype
from radixlm.runtime.model.tokenizer import load_tokenizer
from radixlm.runtime.scheduler.config import SchedulerConfig
from radixlm.runtime.scheduler.scheduler import Scheduler
from radixlm.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    folder: Path
    model_config: ModelConfig
    tokenizer: object
    scheduler: Scheduler
    spawned_ranks: object | None = None  # the Engine's tp ranks 1..N-1 (distributed/ranks.py)

    def close(self) -> None:
        """Stop the tensor-parallel ranks (tp > 1); nothing to do on one device."""
        tp = self.scheduler.runner.tp
        if tp is None:
            return
        from radixlm.runtime.distributed.batch_sync import send_stop
        from radixlm.runtime.distributed.group import TensorParallelError

        # A broken group needs no stop message: its followers are gone or leaving.
        with contextlib.suppress(TensorParallelError):
            send_stop(tp)
        tp.close()
        if self.spawned_ranks is not None:
            self.spawned_ranks.stop()


def resolve_context_len(args: ServerArgs, model_config: ModelConfig) -> int:
    if args.context_length is None:
        return model_config.context_len
    if args.context_length > model_config.context_len:
        raise ValueError(
            f"context_length {args.context_length} exceeds the model's {model_config.context_len}"
        )
    return args.context_length


def kv_slots(args: ServerArgs, model_config: ModelConfig, runner: ModelRunner) -> int:
    """The KV slots this process can afford for its runner (its KV heads, under tp)."""
    device = runner.device
    mem_fraction = args.mem_fraction or (0.85 if device.type == "cuda" else 0.1)
    if device.type == "cpu":
        mem_fraction /= args.tp  # the ranks share this memory; each sizes its own pool
    return kv_pool_capacity(model_config, runner.dtype, device, mem_fraction, args.max_total_tokens,
                            runner.kv_heads)


def build_runtime(args: ServerArgs, tp_store: str | None = None) -> Runtime:
    """`tp_store`: with --tp N, the rendezvous file of ranks the caller started (the server's
    launcher); None starts them here (the Engine)."""
    folder = resolve_model(args.model_path)
    model_config = ModelConfig.from_folder(folder)
    if args.tp == 1:
        return _build(args, folder, model_config, None, None)
    tp, spawned = _join_tp(args, folder, tp_store)
    try:
        return _build(args, folder, model_config, tp, spawned)
    except BaseException:
        tp.close()  # the other ranks see the group break and exit
        if spawned is not None:
            spawned.stop()
        raise


def _build(args: ServerArgs, folder: Path, model_config: ModelConfig, tp, spawned) -> Runtime:
    tokenizer = load_tokenizer(folder)
    device = pick_device(args.device) if tp is None else tp.device
    dtype = pick_dtype(args.dtype, device)
    if device.type == "cpu":
        torch.set_num_threads(max(torch.get_num_threads(), 1))
    runner = ModelRunner(folder, model_config, device, dtype, paths=args.path_request(), tp=tp)
    slots = kv_slots(args, model_config, runner)
    if tp is not None:
        slots = _agree_with_ranks(tp, slots, runner)
    context_len = resolve_context_len(args, model_config)
    cfg = SchedulerConfig(
        max_running_requests=args.max_running_requests,
        max_total_tokens=slots,
        context_len=context_len,
        chunked_prefill_size=args.chunked_prefill_size,
        disable_radix_cache=args.disable_radix_cache,
        schedule_policy=args.schedule_policy,
        random_seed=args.random_seed,
        enable_jump_forward=not args.disable_jump_forward,
        grammar_compile_timeout_s=args.grammar_compile_timeout,
        grammar_workers=args.grammar_workers,
        grammar_memory_limit_bytes=args.grammar_memory_limit << 20,
        grammar_queue_timeout_s=args.grammar_queue_timeout,
        budget_completion=not args.disable_budget_completion,
    )
    scheduler = Scheduler(runner, tokenizer, cfg)
    logger.info(
        "KV pool: %d tokens (%s, %s); context %d; radix cache %s",
        slots, device, dtype, context_len, "off" if args.disable_radix_cache else "on",
    )
    return Runtime(folder, model_config, tokenizer, scheduler, spawned)


def _join_tp(args: ServerArgs, folder: Path, store: str | None):
    """Rank 0's group (and, for the Engine, the ranks it started)."""
    from radixlm.runtime.distributed.ranks import SpawnedRanks
    from radixlm.runtime.distributed.worker import join_tp_group

    check_folder_fits(folder, args.tp)  # before starting anything: the common mistake, said at once
    spawned = None
    if store is None:
        spawned = SpawnedRanks(args.replace(model_path=str(folder)))
        store = spawned.store
    try:
        tp = join_tp_group(args, 0, store, pin=spawned is None,
                           explain_failure=spawned.explain_failure if spawned else None)
    except BaseException:
        if spawned is not None:
            spawned.stop()
        raise
    return tp, spawned


def _agree_with_ranks(tp, slots: int, runner: ModelRunner) -> int:
    from radixlm.runtime.distributed.worker import exchange_start_info

    slots, facts = exchange_start_info(tp, slots, runner)
    runner.tp_ranks = facts
    logger.info("tp %d: %s", tp.size, "; ".join(
        f"rank {f['rank']} pid {f['pid']} on {f['device']}, {f['param_bytes'] / 2**20:.1f} MiB of weights"
        for f in facts))
    return slots
