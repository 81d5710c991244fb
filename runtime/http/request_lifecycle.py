"""Wait for submitted requests on behalf of an HTTP handler, aborting them if the client leaves.

Shared by the native and OpenAI routes:
  * `collect` submits and races the requests against the client's disconnect (non-streaming);
  * `stream_response` submits them as one stream whose status the first event decides;
  * `sse_stream` turns stream events into `data: ...` chunks, one write per event, ending
    with `data: [DONE]`; when the client disconnects the response task is cancelled and the
    generator's `finally` aborts whatever is unfinished, so the scheduler frees its KV.
The disconnect is watched from the moment the body is read, through tokenizing, queueing and
prefill (`unless_disconnected`): a stream's first event can be seconds of prefill away, and
until it comes there is no StreamingResponse listening for `http.disconnect`.
A request that failed carries its `RequestError` (ReqState.error, StreamItem.error): before
any byte is sent it becomes the response's status, after that an `{"error": ...}` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from radixlm.runtime.errors import RequestError
from radixlm.runtime.http.generate_input import RequestSpec
from radixlm.runtime.server.tokenizer_manager import ReqState, StreamItem, TokenizerManager

T = TypeVar("T")
DONE = b"data: [DONE]\n\n"
DISCONNECT_MESSAGE = "client disconnected"


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def raise_first_error(states: list[ReqState]) -> None:
    for state in states:
        if state.error is not None:
            raise state.error


def error_event(error: RequestError) -> dict:
    """The SSE event of a stream that failed after it started."""
    body = error.body()
    body["error"]["retryable"] = error.retryable
    return body


class ClientGone(Exception):
    """The client closed the connection before the answer started."""


async def _client_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientGone (with `work` cancelled) if the client leaves first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        raise ClientGone
    return task.result()


async def _all_done(states: list[ReqState]) -> None:
    for state in states:
        await state.done.wait()


async def collect(request: Request, tm: TokenizerManager, specs: list[RequestSpec]) -> list[ReqState] | None:
    """Submit `specs` and wait for all of them: their states, or None if the client left
    (they are aborted). Raises the first request's error, if one failed."""
    states: list[ReqState] = []

    async def submit_and_wait() -> None:
        states.extend(await tm.submit_all(specs))
        await _all_done(states)

    try:
        await unless_disconnected(request, submit_and_wait())
    except ClientGone:
        return None
    finally:
        tm.abort_unfinished(states, DISCONNECT_MESSAGE)
    raise_first_error(states)
    return states


async def stream_response(request: Request, tm: TokenizerManager, specs: list[RequestSpec],
                          renderer: Callable[[list[ReqState]], StreamRenderer]) -> Response:
    """Submit `specs` as one SSE stream. A request rejected before its first event makes the
    whole call fail with its status (nothing has been sent yet), aborting the others; a client
    that leaves before the first event aborts them all at once (an empty 499)."""
    sink: asyncio.Queue = asyncio.Queue()
    states: list[ReqState] = []

    async def submit_and_first() -> StreamItem:
        states.extend(await tm.submit_all(specs, sink))
        return await first_event(sink)

    try:
        first = await unless_disconnected(request, submit_and_first())
    except ClientGone:
        tm.abort_unfinished(states, DISCONNECT_MESSAGE)
        return Response(status_code=499)
    except BaseException:
        tm.abort_unfinished(states, "another request of the same call was rejected")
        raise
    events = sse_stream(tm, states, sink, first, renderer(states))
    return StreamingResponse(events, media_type="text/event-stream")


class StreamRenderer(Protocol):
    def event(self, index: int, event: dict) -> list[Any]: ...  # payloads for one event
    def tail(self) -> list[Any]: ...  # payloads after the last event (e.g. usage)


async def first_event(sink: asyncio.Queue) -> StreamItem:
    """The first stream item; raises its error (before any byte is sent) if the request was
    rejected, so a bad streaming request still gets a 400 status."""
    item = await sink.get()
    if item.error is not None:
        raise item.error
    return item


async def sse_stream(tm: TokenizerManager, states: list[ReqState], sink: asyncio.Queue,
                     first: StreamItem, renderer: StreamRenderer) -> AsyncIterator[bytes]:
    remaining = len(states)
    item = first
    try:
        while True:
            if item.error is not None:  # e.g. NaN logits (500) or a dead child process (503)
                yield sse(error_event(item.error))
            else:
                for payload in renderer.event(item.index, item.event):
                    yield sse(payload)
            if item.event["meta_info"]["finish_reason"] is not None:
                remaining -= 1
                if remaining == 0:
                    break
            item = await sink.get()
        for payload in renderer.tail():
            yield sse(payload)
        yield DONE
    finally:
        tm.abort_unfinished(states, DISCONNECT_MESSAGE)
