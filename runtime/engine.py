"""Engine: the in-process, offline driver of the runtime (no HTTP, no zmq).

The runtime is built and the scheduler loop runs in one background thread (see
`_build_and_loop` for why both there); any thread may submit. Results have the
same shape as the server's `/generate` responses:

    engine = Engine()                                   # bundled SmolLM2-135M-Instruct
    out = engine.generate("The capital of France is", {"max_new_tokens": 8, "temperature": 0})
    for event in engine.generate_stream("Tell me a story", {"max_new_tokens": 64}): ...
    engine.shutdown()

Threads: callers tokenize and validate in their own thread (errors are raised there), then
hand the loop thread a typed command (`_Add`, `_Abort`, `_Flush`, `_Call`, `_Stop`) through a
queue; the loop steps the scheduler and routes each output to its request's handle (a queue
of events and a future).

Failures reach the caller as the server's `RequestError`s: a request the scheduler refuses
raises its 400 (a `ValueError`) or, for any other exception while adding it, its 500 (a
`RuntimeError`), and the loop keeps serving; a failed step fails every request in flight
with a 500. A request the model fails on mid-way (NaN/inf logits) returns its partial
result with an abort finish_reason, status_code 500. Nothing waits forever: when the loop
stops (shutdown, or a bug in the loop itself) every pending future is failed, and the
model and KV pool are released (`engine.scheduler` is None from then on).

With `tp=N` this process is rank 0 of a tensor-parallel group and starts ranks 1..N-1 as
child processes (runtime/distributed/); a rank that dies stops the engine: every pending
future fails with an `EngineClosedError` naming the rank and its exit code. The ranks are
spawned processes, so a script that creates such an engine needs `if __name__ == "__main__":`.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.distributed.group import TensorParallelError
from radixlm.runtime.errors import RequestError
from radixlm.runtime.model.host_memory import keep_freed_memory, release_free_memory
from radixlm.runtime.model.runner import pick_device
from radixlm.runtime.output.detokenizer import RequestDetokenizer
from radixlm.runtime.output.response import ResponseBuilder
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import ReqTokenOutput, TokenizedRequest
from radixlm.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)


class EngineClosedError(RuntimeError):
    pass


@dataclass
class _Add:
    request: TokenizedRequest
    handle: _Handle


@dataclass
class _Abort:
    rid: str


@dataclass
class _Flush:
    reply: Future


@dataclass
class _Call:
    fn: Callable[[Any], Any]
    reply: Future


@dataclass
class _Stop:
    pass


_Command = _Add | _Abort | _Flush | _Call | _Stop


class _Handle:
    """One request as seen by its caller: detokenizer, response builder, event queue."""

    def __init__(self, rid: str, params: SamplingParams, tokenizer, return_logprob: bool,
                 return_text_in_logprobs: bool) -> None:
        self.rid = rid
        self.detok = RequestDetokenizer.for_params(tokenizer, params)
        self.builder = ResponseBuilder(rid, return_logprob, tokenizer, return_text_in_logprobs)
        self.events: queue.Queue = queue.Queue()
        self.future: Future = Future()

    def on_output(self, out: ReqTokenOutput) -> None:
        if out.error is not None and out.error.status < 500:  # e.g. a constraint that does not compile
            self.fail(out.error)
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
        self._inbox: queue.Queue = queue.Queue()
        self._handles: dict[str, _Handle] = {}
        self._tok_lock = threading.Lock()
        self._closed = False
        self._loop_done = False
        built: Future = Future()
        if pick_device(self.args.device).type == "cpu":
            keep_freed_memory()  # before the loop thread's first malloc picks its arena
        self._thread = threading.Thread(target=self._build_and_loop, args=(built,), name="radixlm-engine",
                                        daemon=True)
        self._thread.start()
        rt = built.result()  # raises what building raised (a bad model folder, too little memory)
        self.tokenizer = rt.tokenizer
        self.model_config = rt.model_config
        self.model_folder = rt.folder

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
        timeout: float | None = None,
    ) -> dict | list[dict]:
        """Generate for one prompt (returns a dict) or a batch (returns a list, in order).
        `timeout`: seconds to wait for the results (TimeoutError past it; None: until done
        or the engine stops)."""
        prompts, batched = self._normalize_inputs(prompt, input_ids)
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} sampling_params for {len(prompts)} prompts")
        handles = [
            self.submit(p, sp, return_logprob, logprob_start_len, top_logprobs_num, return_text_in_logprobs)
            for p, sp in zip(prompts, params)
        ]
        results = [h.future.result(timeout) for h in handles]
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
        self._put(_Add(tr, handle))
        return handle

    def abort(self, rid: str) -> None:
        self._put(_Abort(rid))

    def flush_cache(self, timeout: float | None = None) -> bool:
        cmd = _Flush(Future())
        self._put(cmd)
        return cmd.reply.result(timeout)

    def call_in_loop(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        """Run fn(scheduler) on the loop thread between steps (for tests and stats)."""
        cmd = _Call(fn, Future())
        self._put(cmd)
        return cmd.reply.result(timeout)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_Stop())
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

    def _put(self, cmd: _Command) -> None:
        self._inbox.put(cmd)
        if self._loop_done:  # nobody would ever answer it (the loop drained before this put)
            self._drain(EngineClosedError("the engine has been shut down"))

    def _build_and_loop(self, built: Future) -> None:
        """Build the runtime on this thread, then run the loop. Why here and not in the
        caller's thread: OpenMP keeps one worker team per thread that starts parallel work,
        and with a second team (the caller's, from loading and compiling) on a small machine
        libgomp stops spinning and puts its workers to sleep between regions; a decode step
        has hundreds, so it ran 30 ms instead of 17 (docs/benchmarks.md, "Engine thread")."""
        try:
            rt = build_runtime(self.args)
        except BaseException as exc:
            self._closed = self._loop_done = True
            built.set_exception(exc)
            return
        self._runtime, self.scheduler = rt, rt.scheduler  # the loop needs them before __init__ resumes
        built.set_result(rt)
        self._loop()

    def _loop(self) -> None:
        error = EngineClosedError("the engine has been shut down")
        try:
            while self._run_once():
                pass
        except BaseException as exc:  # a bug in the loop itself: callers must not hang
            logger.exception("the engine loop stopped")
            error = EngineClosedError(f"the engine loop stopped: {exc!r}")
        self._closed = self._loop_done = True  # before the drain: see _put
        self._fail_all(error)
        self._drain(error)
        self.scheduler.grammars.shutdown()
        self._runtime.close()
        self._runtime = self.scheduler = None  # the model and KV pool go now, not with the Engine object
        release_free_memory()

    def _run_once(self) -> bool:
        """Handle the queued commands (waiting for one only when idle), then one step."""
        block = self.scheduler.is_idle
        while True:
            try:
                cmd = self._inbox.get(block=block)
            except queue.Empty:
                break
            if isinstance(cmd, _Stop):
                return False
            self._handle(cmd)
            block = False
        self._step()
        return True

    def _handle(self, cmd: _Command) -> None:
        """One command; whatever it raises fails that command only."""
        try:
            if isinstance(cmd, _Add):
                self._add(cmd)
            elif isinstance(cmd, _Abort):
                self.scheduler.abort(cmd.rid, "aborted by the caller")
            elif isinstance(cmd, _Flush):
                cmd.reply.set_result(self.scheduler.flush_cache())
            elif isinstance(cmd, _Call):
                cmd.reply.set_result(cmd.fn(self.scheduler))
        except Exception as exc:
            if isinstance(cmd, _Add):
                logger.exception("adding request %s failed", cmd.request.rid)
            _reject(cmd, exc)

    def _add(self, cmd: _Add) -> None:
        rid = cmd.request.rid
        self._handles[rid] = cmd.handle
        if (rejection := self.scheduler.try_add_request(cmd.request)) is not None:
            self._handles.pop(rid).fail(rejection.error)  # the same error the server answers

    def _step(self) -> None:
        try:
            outputs = self.scheduler.step()
        except TensorParallelError:
            raise  # no forward can run any more: stop the loop (it fails every caller)
        except Exception as exc:  # fail everything in flight, as the server does, and go on
            logger.exception("scheduler step failed")
            error = RequestError.internal(f"internal error in the scheduler: {exc!r}")
            self._fail_all(error)
            self.scheduler.fail_in_flight(error)
            return
        for out in outputs:
            self._route(out)

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

    def _drain(self, exc: BaseException) -> None:
        """Fail every command still queued (the loop will not run them)."""
        while True:
            try:
                _reject(self._inbox.get_nowait(), exc)
            except queue.Empty:
                return


def _reject(cmd: _Command, exc: BaseException) -> None:
    if isinstance(cmd, _Add):
        cmd.handle.fail(exc)
    elif isinstance(cmd, (_Flush, _Call)) and not cmd.reply.done():
        cmd.reply.set_exception(exc)
