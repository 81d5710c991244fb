"""Build a ready Scheduler (model loaded, KV pool sized) from ServerArgs.

Used by the in-process Engine and by the server's scheduler process, so both start the
same way and log the same facts (model, device, dtype, KV pool size in tokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

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


def resolve_context_len(args: ServerArgs, model_config: ModelConfig) -> int:
    if args.context_length is None:
        return model_config.context_len
    if args.context_length > model_config.context_len:
        raise ValueError(
            f"context_length {args.context_length} exceeds the model's {model_config.context_len}"
        )
    return args.context_length


def build_runtime(args: ServerArgs) -> Runtime:
    folder = resolve_model(args.model_path)
    model_config = ModelConfig.from_folder(folder)
    tokenizer = load_tokenizer(folder)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    if device.type == "cpu":
        torch.set_num_threads(max(torch.get_num_threads(), 1))
    runner = ModelRunner(folder, model_config, device, dtype, compile_decode=not args.disable_torch_compile,
                         prepack_weights=not args.disable_weight_prepack)
    mem_fraction = args.mem_fraction or (0.85 if device.type == "cuda" else 0.1)
    slots = kv_pool_capacity(model_config, dtype, device, mem_fraction, args.max_total_tokens)
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
    return Runtime(folder, model_config, tokenizer, scheduler)
