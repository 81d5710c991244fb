"""The web view's routes over real HTTP on the session's server (which has an API key):
the page and its files are open and self-contained, every data route needs the key, the
tree shows what requests share, /stats lists what the scheduler holds, streams name the
jump-forwarded tokens, and token pieces rebuild the text. The browser test drives the page
itself (test_web_view_browser.py)."""

from __future__ import annotations

import json
import re
import threading
import uuid

import pytest
import requests

from radixlm.runtime.http.web_view import PAGE_PATHS

from .conftest import API_KEY

DATA_ROUTES = [("GET", "/stats"), ("GET", "/cache/tree"), ("POST", "/token_pieces")]


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def depth_tokens(snapshot: dict) -> dict[int, int]:
    """Each listed node's id -> the tokens on its path from the root, its own included."""
    nodes = {n["id"]: n for n in snapshot["nodes"]}
    out: dict[int, int] = {}

    def tokens(node_id: int) -> int:
        if node_id not in out:
            node = nodes[node_id]
            out[node_id] = node["tokens"] + (tokens(node["parent"]) if node["parent"] is not None else 0)
        return out[node_id]

    for node_id in nodes:
        tokens(node_id)
    return out


def flush(server) -> None:
    assert server.post("/flush_cache").status_code == 200


def test_page_files_are_open_and_self_contained(server):
    page = requests.get(server.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/web_view.js">' in page.text
    for path in sorted(PAGE_PATHS):
        resp = requests.get(server.url + path, timeout=30)
        assert resp.status_code == 200, path
        assert not re.search(r"https?://", resp.text), f"{path} names an outside URL (no CDN)"
        imports = re.findall(r'from "\./([\w.]+)"', resp.text)
        assert all(f"/static/{name}" in PAGE_PATHS for name in imports), (path, imports)


@pytest.mark.parametrize("auth", [None, "Bearer wrong"], ids=["no-key", "wrong-key"])
def test_every_data_route_refuses_requests_without_the_key(server, auth):
    headers = {"Authorization": auth} if auth else {}
    for method, path in DATA_ROUTES:
        resp = requests.request(method, server.url + path, json={"text": "hi"}, headers=headers, timeout=30)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"]["type"] == "authentication_error"
    ok = requests.get(server.url + "/stats", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert ok.status_code == 200


def test_the_tree_shows_the_shared_prefix_with_its_token_count_and_hits(server):
    flush(server)
    prefix = f"Session {uuid.uuid4().hex[:8]}: you answer arithmetic questions in one word. "
    prompts = [prefix + "What is two plus two?", prefix + "What is three plus five?"]
    for p in prompts:
        server.generate({"text": p, "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    ids = [server.post("/encode", {"text": p}).json()["input_ids"] for p in prompts]
    shared = common_prefix_len(*ids)
    snap = server.get("/cache/tree").json()
    (node,) = [n for n in snap["nodes"] if n["depth"] == 1]
    assert node["tokens"] == shared  # root -> the shared prefix -> one branch per question
    assert node["hits"] == 1  # the second request's match passed through it
    assert node["text"].startswith("Session ")
    assert [n["parent"] for n in snap["nodes"] if n["depth"] == 2] == [node["id"]] * 2
    expanded = server.get(f"/cache/tree?node={node['id']}&depth=1").json()
    assert expanded["path"] == [snap["start_id"], node["id"]]
    assert depth_tokens(snap)[node["id"]] == shared


def test_tree_queries_are_checked(server):
    for query, needle in [("depth=0", "depth must be >= 1"), ("depth=x", "depth must be an integer"),
                          ("max_nodes=99999", "max_nodes must be <= 2000"), ("nodes=1", "unknown query parameter")]:
        resp = server.get(f"/cache/tree?{query}")
        assert resp.status_code == 400 and needle in resp.json()["error"]["message"], (query, resp.text)
    gone = server.get("/cache/tree?node=987654321")
    assert gone.status_code == 404 and "not in the radix tree" in gone.json()["error"]["message"]


def test_stats_list_a_running_request_and_account_for_every_kv_slot(server):
    rid = f"web-view-{uuid.uuid4().hex[:8]}"
    body = {"text": "Count slowly:", "rid": rid, "sampling_params": {"max_new_tokens": 96, "ignore_eos": True}}
    done = threading.Thread(target=server.generate, args=(body,))
    done.start()
    try:
        row = None
        for _ in range(200):
            stats = server.get("/stats").json()
            row = next((r for r in stats["requests"] if r["rid"] == rid and r["generated_tokens"] > 0), None)
            if row is not None:
                break
        assert row is not None, "the request never showed as running"
        assert row["state"] == "running" and row["constraint"] is None
        assert row["cached_tokens"] + row["computed_tokens"] == row["prompt_tokens"]
        kv = stats["kv_free"] + stats["kv_evictable"] + stats["kv_protected"] + stats["kv_held"]
        assert kv == stats["kv_pool_size"]
        c = stats["counters"]
        assert c["extend_tokens"] + c["decode_tokens"] == c["forward_tokens"]
    finally:
        done.join()


def test_stream_events_name_the_jump_forwarded_positions(server):
    body = {"text": "Is the sky blue?", "stream": True,
            "sampling_params": {"max_new_tokens": 12, "temperature": 0, "regex": r"Answer: (yes|no)\. Sure\."}}
    events = []
    with server.post("/generate", body, stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: {"):
                events.append(json.loads(line[6:]))
    positions = [p for e in events for p in e["meta_info"]["jump_forward_positions"]]
    final = events[-1]["meta_info"]
    assert final["jump_forward_tokens"] == len(positions) >= 2
    assert positions == sorted(set(positions)) and positions[-1] < final["completion_tokens"]
    result = server.generate({**body, "stream": False})
    assert result["meta_info"]["jump_forward_positions"] == positions


def test_token_pieces_join_to_the_text_and_chat_prompts_match_the_chat_route(server):
    text = "Prefixes: héllo wörld, 日本語 and 🎉 share the cache."
    out = server.post("/token_pieces", {"text": text}).json()
    assert "".join(out["pieces"]) == text
    assert out["input_ids"] == server.post("/encode", {"text": text}).json()["input_ids"]
    messages = [{"role": "user", "content": "Say hi."}]
    chat = server.post("/token_pieces", {"messages": messages}).json()
    usage = server.post("/v1/chat/completions", {"messages": messages, "max_tokens": 1}).json()["usage"]
    assert len(chat["input_ids"]) == usage["prompt_tokens"]
    assert "".join(chat["pieces"]) == chat["text"]


def test_token_pieces_check_their_body(server):
    for body, needle in [({}, "exactly one of"), ({"text": "a", "input_ids": [1]}, "exactly one of"),
                         ({"input_ids": [10**9]}, "vocabulary"), ({"text": None}, "text must be a string"),
                         ({"text": "a", "colour": 1}, "unknown field")]:
        resp = server.post("/token_pieces", body)
        assert resp.status_code == 400 and needle in resp.json()["error"]["message"], (body, resp.text)
