"""The messages between the server's three processes (launch.py wires the sockets).

Producers and consumers:
  TokenizedRequest (scheduler/io.py), AbortRequest, FlushCacheRequest,
  CacheTreeRequest, LiveStatsRequest         : tokenizer manager -> scheduler
  DetokenizeParams, BatchTokenOut (of scheduler/io.py's ReqTokenOutput)
                                             : scheduler -> detokenizer
  BatchTextOut (of ReqTextOutput)            : detokenizer -> tokenizer manager
  ProcessReady / ProcessFailed / replies     : children -> tokenizer manager
    (FlushCacheReply, CacheTreeReply, LiveStats of scheduler/live_stats.py)
  SchedulerState                             : scheduler -> tokenizer manager, pushed after steps
Plain dataclasses, pickled over zmq ipc:// sockets by `ipc.py` (every endpoint is ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.mem_cache.tree_snapshot import TreeQuery, TreeSnapshot
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import ReqTokenOutput


@dataclass
class AbortRequest:
    rid: str
    message: str = "aborted by the client"


@dataclass
class FlushCacheRequest:
    pass


@dataclass
class BatchTokenOut:
    outputs: list[ReqTokenOutput]


# scheduler -> detokenizer, before the first output of `rid` (same socket, so it arrives first)
@dataclass
class DetokenizeParams:
    """Registers `rid` with the detokenizer: its stop strings and decoding options."""

    rid: str
    params: SamplingParams


@dataclass
class ReqTextOutput:
    """A scheduler output plus the request's cumulative visible text after it."""

    out: ReqTokenOutput
    text: str


@dataclass
class BatchTextOut:  # detokenizer -> tokenizer manager
    outputs: list[ReqTextOutput]


@dataclass
class ProcessReady:  # scheduler / detokenizer -> tokenizer manager, once, after start-up
    process: str
    info: dict[str, Any] = field(default_factory=dict)  # scheduler: model and KV pool facts


@dataclass
class ProcessFailed:  # a child that could not start says why before exiting
    process: str
    message: str


@dataclass
class FlushCacheReply:  # scheduler -> tokenizer manager, answers FlushCacheRequest in order
    success: bool


@dataclass
class SchedulerState:
    """Scheduler -> tokenizer manager, pushed after steps (at most every 100 ms while busy, at
    once when it turns idle: scheduler_process.StatePusher), served by /metrics and
    /server_info without waiting for a step in progress."""

    running: int
    waiting: int
    kv_pool_size: int
    kv_free: int
    kv_evictable: int
    kv_protected: int
    kv_held: int
    kv_pool_invariant_ok: bool  # when idle, also the radix tree's and free list's own checks
    kv_structure_checked: bool  # those structural checks ran (only when idle)
    steps: int
    forward_tokens: int
    prompt_tokens: int
    cached_tokens: int
    cache_hit_rate: float
    retractions: int
    taken_at: float  # time.time() in the scheduler when the snapshot was taken


# The web view (http/web_view.py): asked for, answered between two steps, in order.
@dataclass
class CacheTreeRequest:  # tokenizer manager -> scheduler
    query: TreeQuery


@dataclass
class CacheTreeReply:  # scheduler -> tokenizer manager
    snapshot: TreeSnapshot | None  # None: the query's start node is not in the tree


@dataclass
class LiveStatsRequest:  # tokenizer manager -> scheduler; answered with a LiveStats
    pass
