"""Send one `Plan` over HTTP and record what came back, raw (checks.py judges it).

The client behaves as the plan says: read to the end, close a stream after a few events
(the server must notice and abort), or give up after a timeout (the same, before or during
the answer). Anything unplanned (a refused connection, a non-200 status, bytes after
`[DONE]`, a stream that ends without it) is recorded as an error, never raised.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .workload import LEAVE_STREAM, TIMEOUT, Plan

OK, DISCONNECTED, ERROR = "ok", "disconnected", "error"
HOSTILE_ANSWERS = (200, 400, 503)  # what a hostile request may get: served, refused, or busy


@dataclass
class Outcome:
    plan: Plan
    status: str = OK  # OK | DISCONNECTED (as planned) | ERROR
    http_status: int = 0
    latency_s: float = 0.0
    body: Any = None  # non-streaming: the parsed JSON response
    events: list[dict] = field(default_factory=list)  # streaming: parsed `data:` events
    error: str = ""


def new_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    # No keep-alive: a stream the client leaves must close its connection, so the server sees it.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(None))


async def send(client: httpx.AsyncClient, plan: Plan, hang_timeout_s: float) -> Outcome:
    """Run one plan; a request still unanswered after `hang_timeout_s` is an error (a hang)."""
    out = Outcome(plan)
    planned_timeout = plan.timeout_s if plan.behaviour == TIMEOUT else None
    start = time.monotonic()
    try:
        await asyncio.wait_for(_exchange(client, plan, out), planned_timeout or hang_timeout_s)
    except TimeoutError:
        if planned_timeout:
            out.status = DISCONNECTED
        else:
            out.status, out.error = ERROR, f"no answer within {hang_timeout_s} s"
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: malformed JSON
        out.status, out.error = ERROR, f"{type(exc).__name__}: {exc}"
    out.latency_s = time.monotonic() - start
    return out


async def _exchange(client: httpx.AsyncClient, plan: Plan, out: Outcome) -> None:
    if not plan.stream:
        resp = await client.post(plan.path, json=plan.body())
        out.http_status = resp.status_code
        out.body = resp.json()
        if plan.hostile and resp.status_code in HOSTILE_ANSWERS:
            return
        if resp.status_code != 200:
            out.status, out.error = ERROR, f"HTTP {resp.status_code}: {resp.text[:300]}"
        return
    async with client.stream("POST", plan.path, json=plan.body()) as resp:
        out.http_status = resp.status_code
        if plan.hostile and resp.status_code in HOSTILE_ANSWERS and resp.status_code != 200:
            await resp.aread()
            return
        if resp.status_code != 200:
            out.status, out.error = ERROR, f"HTTP {resp.status_code}: {(await resp.aread())[:300]!r}"
            return
        await _read_events(resp, plan, out)


async def _read_events(resp: httpx.Response, plan: Plan, out: Outcome) -> None:
    done = False
    async for line in resp.aiter_lines():
        if not line:
            continue
        if done or not line.startswith("data: "):
            out.status, out.error = ERROR, f"unexpected line {line[:200]!r} (after [DONE]: {done})"
            return
        if line == "data: [DONE]":
            done = True
            continue
        event = json.loads(line[len("data: "):])
        if isinstance(event, dict) and "error" in event:  # the server failed mid-stream
            out.status, out.error = ERROR, f"error event {event['error']}"
            return
        out.events.append(event)
        if plan.behaviour == LEAVE_STREAM and len(out.events) >= plan.leave_after_events:
            out.status = DISCONNECTED  # leaving the `async with` closes the connection
            return
    if not done:
        out.status, out.error = ERROR, "the stream ended without data: [DONE]"
