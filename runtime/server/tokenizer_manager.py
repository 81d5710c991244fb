"""TokenizerManager: the main process's side of the pipeline (asyncio).

    [state] = await tm.submit_all([spec], sink)  # tokenize, send TokenizedRequests to the scheduler
    await state.done.wait()                       # or read stream events from `sink`
    state.builder.result()                        # the SGLang-shaped response

It owns one `ReqState` per unfinished request. A single receive task reads BatchTextOut from
the detokenizer (and the scheduler's replies and state snapshots), feeds each request's
ResponseBuilder, pushes stream events and wakes the waiting HTTP handler. A request stays
registered until its final output arrives, so an abort (client disconnect) is counted when
the scheduler confirms it and nothing leaks. Only the event-loop thread touches this object;
work that grows with a request's size runs in `pool` (server/tokenizer_pool.py).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import zmq
import zmq.asyncio

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.generate_input import RequestSpec
from radixlm.runtime.http.metrics import ServerMetrics
from radixlm.runtime.mem_cache.tree_snapshot import TreeQuery, TreeSnapshot
from radixlm.runtime.model.tokenizer import apply_chat_template, load_tokenizer
from radixlm.runtime.output.response import ResponseBuilder
from radixlm.runtime.scheduler.io import ReqTokenOutput
from radixlm.runtime.scheduler.live_stats import LiveStats
from radixlm.runtime.server import ipc
from radixlm.runtime.server.messages import (
    AbortRequest,
    BatchTextOut,
    CacheTreeReply,
    CacheTreeRequest,
    FlushCacheReply,
    FlushCacheRequest,
    LiveStatsRequest,
    ProcessFailed,
    ProcessReady,
    ReqTextOutput,
    SchedulerState,
)
from radixlm.runtime.server.tokenizer_pool import RequestLimits, TokenizerPool
from radixlm.runtime.server_args import ServerArgs
from radixlm.runtime.tools.formats import ToolSetup

logger = logging.getLogger(__name__)
# Prompts and outputs go only here, and only with --log-requests (it sets INFO on this
# logger): at any --log-level, including debug, the server logs no request content.
request_log = logging.getLogger("radixlm.requests")

CHILDREN = ("scheduler", "detokenizer")


class StartupError(RuntimeError):
    pass


class StreamItem(NamedTuple):
    """What a streaming request's sink receives after each of its outputs."""

    index: int  # the request's place in its batch (or the choice index)
    event: dict  # ResponseBuilder.stream_event(): cumulative text, incremental logprobs
    error: RequestError | None  # the failure that ended the request, if one did


class ReqState:
    """One request in flight, as the HTTP handler waiting for it sees it."""

    def __init__(self, spec: RequestSpec, tokenizer, sink: asyncio.Queue | None, index: int) -> None:
        self.rid = spec.rid
        self.builder = ResponseBuilder(spec.rid, spec.return_logprob, tokenizer, spec.return_text_in_logprobs)
        self.sink = sink  # streaming: receives a StreamItem after every output
        self.index = index
        self.done = asyncio.Event()
        self.created = time.monotonic()
        self.last_token_at: float | None = None

    @property
    def error(self) -> RequestError | None:
        """The failure that ended this request (None while running or when it succeeded)."""
        return self.builder.last.error if self.builder.finished else None


class TokenizerManager:
    def __init__(self, args: ServerArgs, model_folder: Path, endpoints: ipc.IpcEndpoints) -> None:
        self.args = args
        self.model_folder = Path(model_folder)
        self.tokenizer = load_tokenizer(self.model_folder)
        self.chat_template = Path(args.chat_template).read_text() if args.chat_template else None
        own = getattr(self.tokenizer, "chat_template", None)
        self.tool_setup = ToolSetup.of(args.tool_call_parser, self.chat_template or (own if isinstance(own, str) else None))
        self.metrics = ServerMetrics(replica=args.replica_name)
        self.states: dict[str, ReqState] = {}
        self.scheduler_info: dict = {}
        self.scheduler_state: SchedulerState | None = None  # the latest snapshot the scheduler pushed
        self.pool: TokenizerPool | None = None  # built once the scheduler's limits are known
        self.is_ready = False
        self._to_scheduler = ipc.push_socket(zmq.Context.instance(), endpoints.scheduler)
        self._inbox = ipc.pull_socket(zmq.asyncio.Context.instance(), endpoints.tokenizer)
        self._flush_waiters: deque[asyncio.Future] = deque()
        self._tree_waiters: deque[asyncio.Future] = deque()
        self._live_waiters: deque[asyncio.Future] = deque()
        self._live_in_flight: asyncio.Future | None = None
        self._recv_task: asyncio.Task | None = None
        request_log.setLevel(logging.INFO if args.log_requests else logging.CRITICAL + 1)

    # ---- start-up -----------------------------------------------------------------------
    async def wait_ready(self, dead_child: Callable[[], str | None], timeout: float) -> dict:
        """Wait for both children's ProcessReady; StartupError if one fails, dies or times out."""
        pending = set(CHILDREN)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise StartupError(f"timed out after {timeout:.0f} s waiting for: {', '.join(sorted(pending))}")
            if await self._inbox.poll(500, zmq.POLLIN):
                msg = pickle.loads(await self._inbox.recv())
                if isinstance(msg, ProcessFailed):
                    raise StartupError(f"the {msg.process} process failed to start: {msg.message}")
                if isinstance(msg, ProcessReady):
                    pending.discard(msg.process)
                    self.scheduler_info.update(msg.info)
                else:  # the scheduler's first state snapshot may come before the detokenizer is ready
                    self._dispatch(msg)
            elif (why := dead_child()) is not None:
                raise StartupError(why)
        self.pool = TokenizerPool(self.tokenizer, RequestLimits.of(self.scheduler_info))
        self.is_ready = True
        self._recv_task = asyncio.create_task(self._receive_loop())
        return self.scheduler_info

    # ---- requests -----------------------------------------------------------------------
    def render_chat(self, messages: list[dict], **template_args: Any) -> str:
        """The prompt text of checked chat messages (http/chat_messages.py). A template that
        refuses them (`raise_exception`: roles out of order, a role it does not know) is the
        client's 400, not our 500."""
        from jinja2 import TemplateError  # transformers' template engine

        try:
            return apply_chat_template(self.tokenizer, messages, chat_template=self.chat_template,
                                       **template_args)
        except TemplateError as exc:
            raise ValueError(f"the chat template refused these messages: {exc}") from None

    async def submit_all(self, specs: list[RequestSpec], sink: asyncio.Queue | None = None) -> list[ReqState]:
        """Tokenize and check every spec first (ValueError -> 400), then send them all. The
        checks of capacity and rids run again after tokenizing: other calls may have been
        admitted while this one was in the worker. Nothing is registered before the last
        await, so a caller cancelled meanwhile (its client left) leaves nothing behind."""
        self._check_admissible(specs)
        prepared = await self.pool.prepare(specs, stream=sink is not None)
        self._check_admissible(specs)
        states = []
        for i, (spec, (tr, payload)) in enumerate(zip(specs, prepared, strict=True)):
            state = ReqState(spec, self.tokenizer, sink, i)
            self.states[spec.rid] = state
            request_log.info("receive %s: %r params=%s", spec.rid,
                             spec.text if spec.text is not None else tr.input_ids, spec.params)
            ipc.send_bytes(self._to_scheduler, payload)
            states.append(state)
        return states

    def _check_admissible(self, specs: list[RequestSpec]) -> None:
        """400 for a call larger than the server can ever hold (retrying cannot help), 503 +
        Retry-After while the server is not ready or its queue is full (it drains)."""
        if not self.is_ready:
            raise RequestError.unavailable("the server is not ready")
        limit, count = self.args.max_queued_requests, len(specs)
        if count > limit:
            raise RequestError.invalid(
                f"this call asks for {count} generations (prompts x n) but the server holds at most "
                f"{limit} requests (--max-queued-requests {limit}); split it into calls of at most {limit}")
        if len(self.states) + count > limit:
            raise RequestError.unavailable(
                f"too many requests in flight ({len(self.states)}; --max-queued-requests "
                f"{limit}); retry later")
        seen = set()
        for spec in specs:
            if spec.rid in self.states or spec.rid in seen:
                raise ValueError(f"rid {spec.rid!r} is already in use by another request")
            seen.add(spec.rid)

    def abort(self, rid: str, message: str = "aborted by the client") -> None:
        """Ask the scheduler to stop `rid`; its final (abort) output unregisters it."""
        if rid in self.states:
            ipc.send(self._to_scheduler, AbortRequest(rid, message))

    def abort_unfinished(self, states: list[ReqState], message: str) -> None:
        for state in states:
            if not state.done.is_set():
                self.abort(state.rid, message)

    def fail_all(self, message: str) -> None:
        """Finish every waiting request with an abort (a child process died)."""
        error = RequestError.unavailable(message)
        for rid, state in list(self.states.items()):
            self._on_output(ReqTextOutput(ReqTokenOutput.rejected(rid, error), state.builder.text))
        self.is_ready = False

    # ---- control ------------------------------------------------------------------------
    async def flush_cache(self, timeout: float = 10.0) -> bool:
        return await self._ask(FlushCacheRequest(), self._flush_waiters, timeout)

    async def cache_tree(self, query: TreeQuery, timeout: float = 10.0) -> TreeSnapshot | None:
        """A bounded snapshot of the radix tree (None: the query's start node is gone)."""
        reply = await self._ask(CacheTreeRequest(query), self._tree_waiters, timeout)
        return reply.snapshot

    async def live_stats(self, timeout: float = 10.0) -> LiveStats:
        """The scheduler's counters and request rows. Callers that ask while a query is in
        flight share its answer, so any number of open pages costs one query per step."""
        if self._live_in_flight is None or self._live_in_flight.done():
            self._live_in_flight = asyncio.ensure_future(
                self._ask(LiveStatsRequest(), self._live_waiters, timeout))
        return await asyncio.shield(self._live_in_flight)

    async def _ask(self, msg: object, waiters: deque, timeout: float):
        # Replies come back in request order on one socket, so a FIFO of futures matches them;
        # a timed-out future stays queued to absorb its late reply.
        fut = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        ipc.send(self._to_scheduler, msg)
        return await asyncio.wait_for(asyncio.shield(fut), timeout)

    # ---- outputs ------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while True:
            msg = pickle.loads(await self._inbox.recv())
            try:
                self._dispatch(msg)
            except Exception:  # one bad message must not stop every request
                logger.exception("failed to handle %s", type(msg).__name__)

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, BatchTextOut):
            for o in msg.outputs:
                self._on_output(o)
        elif isinstance(msg, FlushCacheReply):
            _resolve(self._flush_waiters, msg.success)
        elif isinstance(msg, SchedulerState):  # pushed after steps (scheduler_process.StatePusher)
            self.scheduler_state = msg
            self.metrics.observe_scheduler(msg)
        elif isinstance(msg, CacheTreeReply):
            _resolve(self._tree_waiters, msg)
        elif isinstance(msg, LiveStats):
            _resolve(self._live_waiters, msg)
        elif isinstance(msg, ProcessFailed):
            logger.error("the %s process reported: %s", msg.process, msg.message)

    def _on_output(self, o: ReqTextOutput) -> None:
        state = self.states.get(o.out.rid)
        if state is None:
            return
        now = time.monotonic()
        if o.out.new_token_ids:
            if state.last_token_at is None:
                self.metrics.ttft.observe(now - state.created)
            else:
                self.metrics.itl.observe((now - state.last_token_at) / len(o.out.new_token_ids))
            state.last_token_at = now
        state.builder.add(o.out, o.text)
        if state.sink is not None:
            state.sink.put_nowait(StreamItem(state.index, state.builder.stream_event(), o.out.error))
        if o.out.finished:
            request_log.info("finish %s: %s %r", o.out.rid, o.out.finish_reason, o.text)
            del self.states[o.out.rid]
            self.metrics.on_finish(o.out, now - state.created)
            state.done.set()


def _resolve(waiters: deque, value: object) -> None:
    if not waiters:
        logger.warning("unexpected reply %r", value)
        return
    fut = waiters.popleft()
    if not fut.done():
        fut.set_result(value)
