"""Many concurrent streams, and clients that disconnect mid-stream: the server keeps
serving, counts the aborts, and afterwards every KV slot is accounted for."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

PROMPTS = [f"Write the number {i} in words:" for i in range(8)]


async def stream_once(client: httpx.AsyncClient, prompt: str, max_new: int,
                      leave_after: int | None = None) -> dict | None:
    """Read a /generate stream to the end (returns the last event) or leave early (None)."""
    body = {"text": prompt, "stream": True, "sampling_params": {"max_new_tokens": max_new, "temperature": 0,
                                                               "ignore_eos": True}}
    last, seen = None, 0
    async with client.stream("POST", "/generate", json=body) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            last, seen = json.loads(line[6:]), seen + 1
            if leave_after is not None and seen >= leave_after:
                return None  # closing the stream here disconnects mid-generation
    return last


def client_for(server) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=300, limits=limits)


def aborted_total(server) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("radixlm_requests_aborted_total"):
            return float(line.split()[-1])
    raise AssertionError("radixlm_requests_aborted_total missing from /metrics")


def wait_idle(server, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server.get("/server_info").json()["internal_states"][0]
        if state["running"] == 0 and state["waiting"] == 0:
            return state
        time.sleep(0.5)
    raise AssertionError("the server did not become idle")


def test_64_concurrent_streams_complete_with_the_right_text(server):
    batch = server.generate({"text": PROMPTS, "sampling_params": {"max_new_tokens": 4, "temperature": 0,
                                                                  "ignore_eos": True}})
    expected = {p: out["text"] for p, out in zip(PROMPTS, batch, strict=True)}

    async def run() -> list:
        async with client_for(server) as client:
            return await asyncio.gather(*(stream_once(client, PROMPTS[i % 8], 4) for i in range(64)))

    finals = asyncio.run(run())
    assert all(f["meta_info"]["completion_tokens"] == 4 for f in finals)
    assert [f["text"] for f in finals] == [expected[PROMPTS[i % 8]] for i in range(64)]


def test_disconnected_streams_are_aborted_and_their_kv_freed(server):
    before = aborted_total(server)

    async def run() -> list:
        async with client_for(server) as client:
            tasks = [stream_once(client, PROMPTS[i % 8], 200, leave_after=1) if i % 2 else
                     stream_once(client, PROMPTS[i % 8], 4) for i in range(32)]
            return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    assert all(r is None for r in results[1::2])
    assert all(r["meta_info"]["completion_tokens"] == 4 for r in results[0::2])
    state = wait_idle(server)
    assert aborted_total(server) - before >= 16
    assert state["kv_pool_invariant_ok"] and state["kv_held"] == 0
    assert state["kv_free"] + state["kv_evictable"] + state["kv_protected"] == state["kv_pool_size"]
    # and it still serves
    again = server.generate({"text": "Still there?", "sampling_params": {"max_new_tokens": 2, "ignore_eos": True}})
    assert again["meta_info"]["completion_tokens"] == 2
