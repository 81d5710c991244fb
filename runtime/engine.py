"""Engine: the in-process, offline driver of the runtime (no HTTP, no zmq; DESIGN §2).

The scheduler loop runs in one background thread; any thread may submit. Results have the
same shape as the server's `/generate` responses:

    engine = Engine()                                   # bundled SmolLM2-135M-Instruct
    out = engine.generate("The capital of France is", {"max_new_tokens": 8, "temperature": 0})
    for event in engine.generate_stream("Tell me a story", {"max_new_tokens": 64}): ...
    engine.shutdown()

Threads: callers tokenize and validate in their own thread (errors are raised there), then
hand a TokenizedRequest to the loop thread through a queue; the loop steps the scheduler
and routes each output to its request's handle (a queue of events).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.output.detokenizer import RequestDetokenizer
from radixlm.runtime.output.response import ResponseBuilder
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.server.messages import ReqTokenOutput, TokenizedRequest
from radixlm.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)


class EngineClosedError(RuntimeError):
    pass


class _Handle:
    """One request as seen by its caller: detokenizer, response builder, event queue."""

    def __init__(self, rid: str, params: SamplingParams, tokenizer, return_logprob: bool,
                 return_text_in_logprobs: bool) -> None:
        self.rid = rid
        self.detok = RequestDetokenizer(
            tokenizer, stop=params.stop, skip_special_tokens=params.skip_special_tokens,
            spaces_between_special_tokens=params.spaces_between_special_tokens,
            no_stop_trim=params.no_stop_trim,
        )
        self.builder = ResponseBuilder(rid, return_logprob, tokenizer, return_text_in_logprobs)
        self.events: queue.Queue = queue.Queue()
        self.future: Future = Future()

    def on_output(self, out: ReqTokenOutput) -> None:
        fr = out.finish_reason or {}
        if fr.get("type") == "abort" and fr.get("status_code") == 400:
            self.fail(ValueError(fr.get("message")))  # e.g. a constraint that does not compile
            return
        self.detok.update(out.new_token_ids, out.finished, out.matched_stop)
        self.builder.add(out, self.detok.visible_text(out.finished))
        self.events.put(self.builder.stream_event())
        if out.finished:
            self.events.put(None)
            self.future.set_result(self.builder.result())

    def fail(self, exc: BaseException) -> None:
        self.events.put(exc)
        if not self.future.done():
            self.future.set_exception(exc)


class Engine:
    def __init__(self, args: ServerArgs | None = None, **kwargs: Any) -> None:
        self.args = (args or ServerArgs()).replace(**kwargs) if kwargs else (args or ServerArgs())
        rt = build_runtime(self.args)
        self.tokenizer = rt.tokenizer
        self.model_config = rt.model_config
        self.model_folder = rt.folder
        self.scheduler = rt.scheduler
        self._inbox: queue.Queue = queue.Queue()
        self._handles: dict[str, _Handle] = {}
        self._tok_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="radixlm-engine", daemon=True)
        self._thread.start()

    # ---- public API ---------------------------------------------------------------------
    def generate(
        self,
        prompt: str | list[str] | None = None,
        sampling_params: dict | list[dict] | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        return_logprob: bool = False,
        logprob_start_len: int = -1,
        top_logprobs_num: int = 0,
        return_text_in_logprobs: bool = False,
    ) -> dict | list[dict]:
        """Generate for one prompt (returns a dict) or a batch (returns a list, in order)."""
        prompts, batched = self._normalize_inputs(prompt, input_ids)
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} sampling_params for {len(prompts)} prompts")
        handles = [
            self.submit(p, sp, return_logprob, logprob_start_len, top_logprobs_num, return_text_in_logprobs)
            for p, sp in zip(prompts, params)
        ]
        results = [h.future.result() for h in handles]
        return results if batched else results[0]

    def generate_stream(self, prompt: str | list[int], sampling_params: dict | None = None,
                        **kwargs: Any) -> Iterator[dict]:
        """Yield one event per scheduler output (cumulative text, incremental logprobs)."""
        handle = self.submit(prompt, sampling_params, **kwargs)
        try:
            while True:
                event = handle.events.get()
                if event is None:
                    return
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            if not handle.future.done():
                self.abort(handle.rid)

    def submit(
        self,
        prompt: str | list[int],
        sampling_params: dict | None = None,
        return_logprob: bool = False,
        logprob_start_len: int = -1,
        top_logprobs_num: int = 0,
        return_text_in_logprobs: bool = False,
        rid: str | None = None,
    ) -> _Handle:
        """Validate and queue one request; returns its handle (`.future`, `.events`)."""
        if self._closed:
            raise EngineClosedError("the engine has been shut down")
        params = SamplingParams.from_dict(sampling_params)
        if params.n != 1:
            raise ValueError("n > 1 is not supported by Engine.generate; submit the prompt n times")
        ids = self._encode(prompt)
        rid = rid or uuid.uuid4().hex
        tr = TokenizedRequest(rid, ids, params, return_logprob, logprob_start_len, top_logprobs_num)
        self.scheduler.validate(tr)
        handle = _Handle(rid, params, self.tokenizer, return_logprob, return_text_in_logprobs)
        self._inbox.put(("add", tr, handle))
        return handle

    def abort(self, rid: str) -> None:
        self._inbox.put(("abort", rid, None))

    def flush_cache(self) -> bool:
        fut: Future = Future()
        self._inbox.put(("flush", None, fut))
        return fut.result()

    def call_in_loop(self, fn) -> Any:
        """Run fn(scheduler) on the loop thread between steps (for tests and stats)."""
        fut: Future = Future()
        self._inbox.put(("call", fn, fut))
        return fut.result()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(("stop", None, None))
        self._thread.join(timeout=30)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # ---- internals ----------------------------------------------------------------------
    def _normalize_inputs(self, prompt, input_ids) -> tuple[list, bool]:
        if (prompt is None) == (input_ids is None):
            raise ValueError("pass exactly one of prompt or input_ids")
        if prompt is not None:
            if isinstance(prompt, str):
                return [prompt], False
            if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
                return list(prompt), True
            raise ValueError("prompt must be a string or a list of strings")
        if isinstance(input_ids, list) and input_ids and all(isinstance(x, list) for x in input_ids):
            return list(input_ids), True
        if isinstance(input_ids, list) and all(isinstance(x, int) for x in input_ids):
            return [input_ids], False
        raise ValueError("input_ids must be a list of token ids or a list of such lists")

    def _encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty: send at least one character")
            with self._tok_lock:
                return self.tokenizer(prompt).input_ids
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise ValueError("input_ids must be integers")
        return list(prompt)

    def _loop(self) -> None:
        sched = self.scheduler
        while True:
            try:
                block = sched.is_idle
                while True:
                    cmd = self._inbox.get(block=block)
                    block = False
                    if self._handle_command(cmd):
                        self._fail_all(EngineClosedError("the engine has been shut down"))
                        return
                    if self._inbox.empty():
                        break
            except queue.Empty:
                pass
            try:
                for out in sched.step():
                    self._route(out)
            except Exception as exc:  # a bug must not hang callers: fail everything in flight
                logger.exception("scheduler step failed")
                self._fail_all(RuntimeError(f"scheduler step failed: {exc!r}"))
                sched.fail_in_flight("internal error")

    def _handle_command(self, cmd) -> bool:
        kind, arg, extra = cmd
        if kind == "add":
            self._handles[arg.rid] = extra
            try:
                self.scheduler.add_request(arg)
            except ValueError as exc:
                self._handles.pop(arg.rid).fail(exc)
        elif kind == "abort":
            self.scheduler.abort(arg, "aborted by the caller")
        elif kind == "flush":
            extra.set_result(self.scheduler.flush_cache())
        elif kind == "call":
            try:
                extra.set_result(arg(self.scheduler))
            except Exception as exc:
                extra.set_exception(exc)
        elif kind == "stop":
            return True
        return False

    def _route(self, out: ReqTokenOutput) -> None:
        handle = self._handles.get(out.rid)
        if handle is None:
            return
        handle.on_output(out)
        if out.finished:
            del self._handles[out.rid]

    def _fail_all(self, exc: BaseException) -> None:
        for handle in self._handles.values():
            handle.fail(exc)
        self._handles.clear()
