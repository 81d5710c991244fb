"""ResponseBuilder: turns a request's token outputs plus its text into SGLang-shaped results.

Shared by `runtime.Engine` and the server's TokenizerManager, so both return the same JSON
(docs/wire-protocol.md B.5-B.7): `text` is the completion only; `meta_info` holds the counters,
the finish reason and, when asked, logprob lists of [logprob | null, token_id, text | null].
Streaming events carry cumulative text, *incremental* logprob lists and cumulative counters
(B.6, the format SGLang's frontend needs); jump-forward positions are reported the same way
(`jump_forward_positions` incremental in events, `jump_forward_tokens` cumulative).
"""

from __future__ import annotations

import time
from typing import Any

from radixlm.runtime.scheduler.io import ReqTokenOutput


class ResponseBuilder:
    def __init__(self, rid: str, return_logprob: bool, tokenizer=None, return_text_in_logprobs: bool = False) -> None:
        self.rid = rid
        self.return_logprob = return_logprob
        self.tokenizer = tokenizer if return_text_in_logprobs else None
        self.start = time.monotonic()
        self.output_ids: list[int] = []
        self.text = ""
        self.last: ReqTokenOutput | None = None
        self.output_token_logprobs: list = []
        self.output_top_logprobs: list = []
        self.input_token_logprobs: list | None = None
        self.input_top_logprobs: list | None = None
        self._new_lp: list = []
        self._new_top: list = []
        self.jump_positions: list[int] = []  # output indices of jump-forwarded tokens
        self._new_jump: list[int] = []

    def add(self, out: ReqTokenOutput, text: str) -> None:
        """Record one scheduler output and the cumulative visible text after it."""
        self.last = out
        self.output_ids.extend(out.new_token_ids)
        self.text = text
        self.jump_positions += out.jump_forward_positions
        self._new_jump += out.jump_forward_positions
        if self.return_logprob:
            lp = [self._entry(v, t) for v, t in out.output_token_logprobs]
            top = [self._top(x) for x in out.output_top_logprobs]
            self.output_token_logprobs += lp
            self.output_top_logprobs += top
            self._new_lp += lp
            self._new_top += top
            if out.input_token_logprobs is not None:
                self.input_token_logprobs = [self._entry(v, t) for v, t in out.input_token_logprobs]
                self.input_top_logprobs = [self._top(x) for x in (out.input_top_logprobs or [])]

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finished

    def _entry(self, logprob: float | None, token_id: int) -> list:
        text = self.tokenizer.decode([token_id]) if self.tokenizer is not None else None
        return [logprob, token_id, text]

    def _top(self, entries) -> list | None:
        return None if entries is None else [self._entry(v, t) for v, t in entries]

    def _meta(self, incremental: bool) -> dict[str, Any]:
        o = self.last
        meta: dict[str, Any] = {
            "id": self.rid,
            "finish_reason": o.finish_reason.to_json() if o and o.finish_reason else None,
            "prompt_tokens": o.prompt_tokens if o else 0,
            "completion_tokens": o.completion_tokens if o else 0,
            "cached_tokens": o.cached_tokens if o else 0,
            "num_retractions": o.num_retractions if o else 0,
            "jump_forward_tokens": len(self.jump_positions),
            "jump_forward_positions": self._new_jump if incremental else list(self.jump_positions),
        }
        if self.finished:
            meta["e2e_latency"] = time.monotonic() - self.start
        if self.return_logprob:
            meta["output_token_logprobs"] = self._new_lp if incremental else self.output_token_logprobs
            meta["output_token_logprobs_length"] = len(self.output_token_logprobs)
            if self.output_top_logprobs:
                meta["output_top_logprobs"] = self._new_top if incremental else self.output_top_logprobs
            meta["input_token_logprobs"] = self.input_token_logprobs or []
            if self.input_top_logprobs:
                meta["input_top_logprobs"] = self.input_top_logprobs
        return meta

    def result(self) -> dict[str, Any]:
        """The final (non-streaming) response object."""
        return {"text": self.text, "output_ids": list(self.output_ids), "meta_info": self._meta(False)}

    def stream_event(self) -> dict[str, Any]:
        """One SSE event: cumulative text, logprob lists since the previous event."""
        event = {"text": self.text, "output_ids": list(self.output_ids), "meta_info": self._meta(True)}
        self._new_lp, self._new_top, self._new_jump = [], [], []
        return event
