"""SchedulerConfig: the scheduler's settings, derived from ServerArgs by bootstrap.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerConfig:
    max_running_requests: int
    max_total_tokens: int
    context_len: int
    chunked_prefill_size: int
    disable_radix_cache: bool = False
    schedule_policy: str = "lpm"
    check_invariant_when_idle: bool = True
    random_seed: int | None = None
    enable_jump_forward: bool = True
    jump_forward_drafts: bool = True  # run the back-off token speculatively (_settle_draft)
    grammar_compile_timeout_s: float = 30.0
    grammar_workers: int = 2
    grammar_memory_limit_bytes: int = 2 << 30
    grammar_queue_timeout_s: float = 30.0
    budget_completion: bool = True
    json_whitespace_pattern: str = ""
