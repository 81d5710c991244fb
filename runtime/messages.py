"""Typed messages that cross a process or thread boundary (DESIGN §2).

Producers and consumers:
  TokenizedRequest, AbortRequest, FlushCacheRequest : tokenizer manager / Engine -> scheduler
  ReqTokenOutput (in a BatchTokenOut)               : scheduler -> detokenizer / Engine
Plain dataclasses, pickled over zmq ipc:// sockets by `ipc.py` (every endpoint is ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.sampling_params import SamplingParams


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
