"""TokenizerPool: the main process's work that grows with a request's size, off the event loop.

    pool = TokenizerPool(tokenizer, RequestLimits.of(scheduler_info))
    value = await pool.run(heavy, fn, *args)        # fn(*args): inline, or in the worker if heavy
    prepared = await pool.prepare(specs, stream)    # ValueError (-> 400) says what to fix

Tokenization, chat templating, JSON decoding and the checks of a request run inline when they
are small (INLINE_CHARS here, http/common.py's INLINE_JSON_BYTES: below those the work costs
less than a thread hand-off, ~0.5 ms here) and otherwise in one worker thread, so the event loop keeps answering
(`/health`, streams) while a 15 MB body is parsed and tokenized. One thread, because the main
process should not take more than one core from the scheduler; the Rust tokenizer releases
the GIL while it encodes, and the Python parts yield it every few milliseconds.

What the GIL still holds in one piece is proportional to the prompt's tokens (building and
freeing the id list: ~0.15 us per token). Prompts are bounded before they are tokenized:
with no normalizer, one token covers at most `max_token_chars` characters of text (the
longest token string; 81 for SmolLM2), so a text longer than that times the context length
can never fit and is refused at once, without tokenizing it (a 15 MB text cost 19 s of CPU
before). `check_request` (scheduler/request_checks.py) runs here too, in the worker, so a
prompt the scheduler would refuse never crosses the IPC; the scheduler checks it again.
Requests are pickled here as well: a batch of long input_ids would hold the loop otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from radixlm.runtime.http.generate_input import RequestSpec
from radixlm.runtime.scheduler.io import TokenizedRequest
from radixlm.runtime.scheduler.request_checks import check_request
from radixlm.runtime.server import ipc

T = TypeVar("T")

INLINE_CHARS = 1000  # tokenizing 1,000 characters takes ~0.4 ms, about one thread hand-off


class RequestLimits(NamedTuple):
    """The scheduler's facts a request is checked against (from its ready message)."""

    vocab_size: int
    context_len: int
    pool_size: int

    @classmethod
    def of(cls, scheduler_info: dict) -> RequestLimits:
        return cls(scheduler_info["vocab_size"], scheduler_info["context_len"], scheduler_info["kv_pool_size"])


class Prepared(NamedTuple):
    request: TokenizedRequest
    payload: bytes  # the request as ipc.encode made it, for ipc.send_bytes


def max_token_chars(tokenizer: Any) -> int | None:
    """The most characters of text one token can stand for, or None where no sound bound is
    known (a normalizer may shrink the text; a slow tokenizer's vocabulary is not its pieces)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.normalizer is not None:
        return None
    # A byte-level token string has one character per byte, a SentencePiece one per character
    # ("▁" for a space, "<0x0A>" for one byte): either way no fewer than the text it covers.
    return max(len(piece) for piece in backend.get_vocab(with_added_tokens=True))


class TokenizerPool:
    def __init__(self, tokenizer: Any, limits: RequestLimits) -> None:
        self.tokenizer = tokenizer
        self.limits = limits
        self.max_token_chars = max_token_chars(tokenizer)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radixlm-tokenize")

    async def run(self, heavy: bool, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`: in the worker thread if `heavy`, else at once on the caller's thread.
        Cancelling the await does not stop a call already running in the worker."""
        if not heavy:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def prepare(self, specs: list[RequestSpec], stream: bool) -> list[Prepared]:
        """Tokenize, check and pickle every spec; ValueError for the first that can never be served."""
        size = sum(len(s.text) if s.text is not None else len(s.input_ids or ()) for s in specs)
        return await self.run(size > INLINE_CHARS, self._prepare_all, specs, stream)

    def token_ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """`text` tokenized, refused first if it is too long to ever be a prompt."""
        self.check_text_length(text)
        return self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids

    def check_text_length(self, text: str) -> None:
        chars, context = len(text), self.limits.context_len
        if self.max_token_chars is None or chars <= self.max_token_chars * context:
            return
        at_least = -(-chars // self.max_token_chars)
        raise ValueError(
            f"the text ({chars} characters) is at least {at_least} tokens (a token covers at most "
            f"{self.max_token_chars} characters), more than the context length of {context} tokens; "
            "shorten it")

    def _prepare_all(self, specs: list[RequestSpec], stream: bool) -> list[Prepared]:
        out = []
        for spec in specs:
            ids = spec.input_ids if spec.input_ids is not None else self.token_ids(spec.text, spec.add_special_tokens)
            tr = TokenizedRequest(spec.rid, ids, spec.params, spec.return_logprob, spec.logprob_start_len,
                                  spec.top_logprobs_num, stream=stream)
            check_request(tr, *self.limits, names=spec.field_names)
            out.append(Prepared(tr, ipc.encode(tr)))
        return out
