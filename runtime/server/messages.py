"""Typed messages that cross a process or thread boundary (DESIGN §2).

Producers and consumers:
  TokenizedRequest, AbortRequest, FlushCacheRequest : tokenizer manager / Engine -> scheduler
  ReqTokenOutput (in a BatchTokenOut)               : scheduler -> detokenizer / Engine
  ReqTextOutput (in a BatchTextOut)                 : detokenizer -> tokenizer manager
  ProcessReady / ProcessFailed / replies            : children -> tokenizer manager
Plain dataclasses, pickled over zmq ipc:// sockets by `ipc.py` (every endpoint is ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.sampling.sampling_params import SamplingParams


@dataclass
class TokenizedRequest:
    rid: str
    input_ids: list[int]
    sampling_params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    stream: bool = False


@dataclass
class AbortRequest:
    rid: str
    message: str = "aborted by the client"


@dataclass
class FlushCacheRequest:
    pass


@dataclass
class ReqTokenOutput:
    """What one scheduler step produced for one request (token ids, not text yet)."""

    rid: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    num_retractions: int = 0
    # logprob increments since the previous output for this request: (logprob | None, id)
    output_token_logprobs: list[tuple[float | None, int]] = field(default_factory=list)
    output_top_logprobs: list[list[tuple[float, int]] | None] = field(default_factory=list)
    # prompt logprobs, sent once when the prompt has been processed
    input_token_logprobs: list[tuple[float | None, int]] | None = None
    input_top_logprobs: list[list[tuple[float, int]] | None] | None = None

    @property
    def matched_stop(self) -> int | str | None:
        fr = self.finish_reason
        return fr.get("matched") if fr and fr.get("type") == "stop" else None


@dataclass
class BatchTokenOut:
    outputs: list[ReqTokenOutput]


# ---- server process messages (runtime/server/launch.py wires them; DESIGN §2) ------------------
# scheduler -> detokenizer, before the first output of `rid` (same socket, so it arrives first)
@dataclass
class DetokenizeParams:
    rid: str
    stop: list[str] = field(default_factory=list)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False


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
class GetStateRequest:  # tokenizer manager -> scheduler
    pass


@dataclass
class SchedulerState:  # scheduler -> tokenizer manager, answers GetStateRequest in order
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
