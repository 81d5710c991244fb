"""What goes into the scheduler and what comes out of it, per request.

  TokenizedRequest : tokenizer manager / Engine -> scheduler (a prompt as token ids)
  ReqTokenOutput   : scheduler -> detokenizer / Engine (new token ids since the last output)
  FinishReason     : why a request ended, inside its last ReqTokenOutput

Plain dataclasses: the server pickles them across its zmq sockets (server/ipc.py), the
Engine hands them between threads. A failed request carries a `RequestError` in its
FinishReason, so the status a client sees is decided once, where the failure is found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radixlm.runtime.errors import RequestError
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
class FinishReason:
    """Why a request ended, rendered as SGLang's meta_info.finish_reason by `to_json`."""

    type: str  # "stop" | "length" | "abort"
    matched: int | str | None = None  # stop token id or stop string (type == "stop")
    length: int | None = None  # (type == "length")
    message: str | None = None  # (type == "abort")
    error: RequestError | None = None  # (type == "abort") a failure; None: a client's abort

    @classmethod
    def aborted(cls, message: str) -> FinishReason:
        """Stopped on request (a client disconnect, /abort_request): an ordinary result."""
        return cls("abort", message=message)

    @classmethod
    def failed(cls, error: RequestError) -> FinishReason:
        return cls("abort", message=error.message, error=error)

    def to_json(self) -> dict[str, Any]:
        if self.type == "stop":
            return {"type": "stop", "matched": self.matched}
        if self.type == "length":
            return {"type": "length", "length": self.length}
        err = self.error
        return {"type": "abort", "message": self.message, "status_code": err.status if err else None,
                "err_type": err.type if err else None}


@dataclass
class ReqTokenOutput:
    """What one scheduler step produced for one request (token ids, not text yet)."""

    rid: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    num_retractions: int = 0
    # indices in the request's output ids of this output's tokens that jump-forward appended
    # (not sampled); the web view's playground marks them
    jump_forward_positions: list[int] = field(default_factory=list)
    # logprob increments since the previous output for this request: (logprob | None, id)
    output_token_logprobs: list[tuple[float | None, int]] = field(default_factory=list)
    output_top_logprobs: list[list[tuple[float, int]] | None] = field(default_factory=list)
    # prompt logprobs, sent once when the prompt has been processed
    input_token_logprobs: list[tuple[float | None, int]] | None = None
    input_top_logprobs: list[list[tuple[float, int]] | None] | None = None

    @property
    def matched_stop(self) -> int | str | None:
        fr = self.finish_reason
        return fr.matched if fr is not None and fr.type == "stop" else None

    @property
    def error(self) -> RequestError | None:
        """The failure that ended this request, if one did."""
        return self.finish_reason.error if self.finish_reason is not None else None

    @classmethod
    def rejected(cls, rid: str, error: RequestError, prompt_tokens: int = 0) -> ReqTokenOutput:
        """The one output of a request that failed before it ran, or whose state is lost."""
        return cls(rid=rid, new_token_ids=[], finished=True, finish_reason=FinishReason.failed(error),
                   prompt_tokens=prompt_tokens, completion_tokens=0, cached_tokens=0)
