"""LiveStats: what the web view's `GET /stats` shows, read from the scheduler between steps.

    stats = live_stats(scheduler)   # scheduler thread (scheduler_process.py, LiveStatsRequest)

Cumulative counters (a client takes differences between two polls for rates), the KV pool
split by owner, and one row per request the scheduler holds: waiting for its grammar,
queued, retracted (queued again after a retraction) or running. Bounded: at most
`MAX_ROWS` rows (running ones first), so a long queue costs the scheduler thread tens of
microseconds, not a walk over thousands of requests. Plain data, pickled over zmq.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from radixlm.runtime.scheduler.request import Req

MAX_ROWS = 256


@dataclass
class RequestRow:
    rid: str
    state: str  # "grammar" (waiting for its grammar) | "queued" | "retracted" | "running"
    prompt_tokens: int
    cached_tokens: int  # prompt tokens the radix cache served at first admission
    computed_tokens: int  # prompt tokens computed so far beyond the cached ones
    constraint: str | None  # regex | json_schema | choices | ... (the SamplingParams field)
    generated_tokens: int  # output tokens so far, jump-forwarded ones included
    jump_forward_tokens: int
    retractions: int
    age_s: float  # since the scheduler received it


@dataclass
class LiveStats:
    time_s: float  # time.monotonic() of the scheduler process when taken
    running: int
    waiting: int
    grammar_pending: int
    kv_pool_size: int
    kv_free: int
    kv_evictable: int
    kv_protected: int
    kv_held: int  # slots running requests hold outside the tree
    counters: dict[str, int]  # cumulative: steps, prompt/cached/extend/decode/jump-forward tokens, ...
    cache_hit_rate: float  # cumulative cached / prompt tokens
    radix_cache: bool
    tree_nodes: int
    took_s: float  # time spent on the scheduler thread to take this
    requests: list[RequestRow] = field(default_factory=list)  # at most MAX_ROWS


def live_stats(sched) -> LiveStats:
    """Counters, KV use and the request rows of `sched` (a Scheduler) now."""
    start = time.perf_counter()
    now = time.monotonic()
    stats = sched.stats
    cache = sched.cache
    running = [_row(r, "running", now) for r in sched.running[:MAX_ROWS]]
    room = MAX_ROWS - len(running)
    queued = [_row(r, "retracted" if r.num_retractions else "queued", now)
              for r in itertools.islice(sched.waiting, room)]
    room -= len(queued)
    pending = [_row(r, "grammar", now) for r in sched.grammars.pending[:room]]
    return LiveStats(
        time_s=now, running=len(sched.running), waiting=len(sched.waiting),
        grammar_pending=len(sched.grammars.pending), kv_pool_size=sched.kv_pool.size,
        kv_free=sched.kv_pool.available_size(), kv_evictable=cache.evictable_size(),
        kv_protected=cache.protected_size(), kv_held=sched.held_by_requests(),
        counters={
            "steps": stats.steps, "forward_tokens": stats.forward_tokens,
            "extend_tokens": stats.extend_tokens, "decode_tokens": stats.decode_tokens,
            "jump_forward_tokens": stats.jumped_tokens, "prompt_tokens": stats.prompt_tokens,
            "cached_tokens": stats.cached_tokens, "retractions": stats.retractions,
        },
        cache_hit_rate=stats.cache_hit_rate, radix_cache=not cache.disabled,
        tree_nodes=cache.num_nodes(), took_s=time.perf_counter() - start, requests=running + queued + pending,
    )


def _row(req: Req, state: str, now: float) -> RequestRow:
    prompt = len(req.input_ids)
    constraint = req.sampling_params.constraint
    return RequestRow(
        rid=req.rid, state=state, prompt_tokens=prompt, cached_tokens=req.cached_tokens,
        computed_tokens=max(0, min(req.prefix_len, prompt) - req.cached_tokens) if req.admitted else 0,
        constraint=constraint[0] if constraint is not None else None,
        generated_tokens=len(req.output_ids), jump_forward_tokens=req.jumped_tokens,
        retractions=req.num_retractions, age_s=now - req.created_at,
    )
