"""Every error class has a status code and a JSON body whose message names the problem."""

from __future__ import annotations

import asyncio

import pytest
import requests
from starlette.testclient import TestClient

from .conftest import BODY_LIMIT


def error_of(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    return err["message"]


def test_unknown_sampling_param_is_400_naming_the_key(server):
    msg = error_of(server.post("/generate", {"text": "hi", "sampling_params": {"max_new_tokenz": 3}}), 400)
    assert "max_new_tokenz" in msg


@pytest.mark.parametrize("path, body, named", [
    ("/generate", {"text": "hi", "max_new_tokens": 3}, "max_new_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_token": 3}, "max_token"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temprature": 0}, "temprature"),
])
def test_unknown_top_level_field_is_400_naming_it(server, path, body, named):
    """A typo must not be silently ignored: the answer would not be what the user asked for."""
    msg = error_of(server.post(path, body), 400)
    assert f"unknown field '{named}'" in msg and "accepted fields" in msg


def test_inert_and_empty_protocol_fields_are_accepted(server):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "user": "u1",
            "metadata": {"k": "v"}, "modalities": ["text"], "chat_template_kwargs": None}
    assert server.post("/v1/chat/completions", body).status_code == 200
    body = {"prompt": "hi", "max_tokens": 1, "best_of": 1, "user": "u1", "model": "anything"}
    assert server.post("/v1/completions", body).status_code == 200
    msg = error_of(server.post("/v1/completions", {**body, "best_of": 3}), 400)
    assert "best_of is not supported" in msg


# Bodies exactly as sglang-router 0.3.2 forwards them (captured from the router): it adds
# fields at their defaults, so a radixlm replica behind it must accept them (docs/scale-out.md).
ROUTER_FORWARDED = [
    ("/generate", {"text": "Hello", "model": None, "sampling_params": {"max_new_tokens": 1},
                   "return_text_in_logprobs": False, "stream": False, "log_metrics": True,
                   "return_hidden_states": False, "background": False, "no_logs": False,
                   "return_bytes": False, "return_entropy": False}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "model": "x", "logprobs": False,
                              "max_completion_tokens": 1, "stream": False, "no_stop_trim": False,
                              "ignore_eos": False, "continue_final_message": False,
                              "skip_special_tokens": True, "separate_reasoning": True,
                              "stream_reasoning": True, "return_hidden_states": False}),
    ("/v1/completions", {"model": "x", "prompt": "hi", "max_tokens": 1, "stream": False, "echo": False,
                         "no_stop_trim": False, "ignore_eos": False, "skip_special_tokens": True,
                         "return_hidden_states": False}),
]


@pytest.mark.parametrize("path, body", ROUTER_FORWARDED, ids=[p for p, _ in ROUTER_FORWARDED])
def test_bodies_as_sglang_router_forwards_them_are_accepted(server, path, body):
    assert server.post(path, body).status_code == 200


def test_reasoning_fields_other_than_their_defaults_are_400(server):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "separate_reasoning": "yes"}
    assert "separate_reasoning is not supported" in error_of(server.post("/v1/chat/completions", body), 400)


def test_bad_sampling_value_is_400_naming_the_field(server):
    msg = error_of(server.post("/generate", {"text": "hi", "sampling_params": {"top_p": 3}}), 400)
    assert "top_p" in msg


def test_wrong_type_is_400(server):
    assert "text" in error_of(server.post("/generate", {"text": 5}), 400)


def test_invalid_json_is_400(server):
    resp = server.post("/generate", data=b"{not json", headers={"Content-Type": "application/json"})
    assert "JSON" in error_of(resp, 400)


def test_prompt_over_the_context_is_400_from_the_scheduler(server):
    body = {"input_ids": [1] * 10, "sampling_params": {"max_new_tokens": 9000}}
    assert "max_new_tokens" in error_of(server.post("/generate", body), 400)
    body["stream"] = True  # rejected before the stream starts, so still a real 400
    assert "max_new_tokens" in error_of(server.post("/generate", body), 400)


def test_openai_bad_value_is_400(server):
    resp = server.post("/v1/completions", {"model": "m", "prompt": "hi", "temperature": -1})
    assert "temperature" in error_of(resp, 400)


def test_missing_or_wrong_api_key_is_401(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = requests.post(server.url + "/generate", json={"text": "hi"}, headers=headers, timeout=30)
        assert "API key" in error_of(resp, 401)
    assert requests.get(server.url + "/v1/models", timeout=30).status_code == 401


def test_health_is_open_without_the_api_key(server):
    assert requests.get(server.url + "/health", timeout=30).status_code == 200


def test_unknown_route_is_404(server):
    assert "/no/such/route" in error_of(server.get("/no/such/route"), 404)


def test_oversize_body_is_413(server):
    body = {"text": "x" * (BODY_LIMIT + 10), "sampling_params": {"max_new_tokens": 1}}
    assert "limit" in error_of(server.post("/generate", body), 413)


@pytest.fixture
def starting_app():
    """The app in front of a TokenizerManager whose children never reported ready."""
    from radixlm.runtime.http.native_api import build_app
    from radixlm.runtime.model.loader import resolve_model
    from radixlm.runtime.server.ipc import IpcEndpoints
    from radixlm.runtime.server.tokenizer_manager import TokenizerManager
    from radixlm.runtime.server_args import ServerArgs

    endpoints = IpcEndpoints.in_new_dir()
    args = ServerArgs()
    asyncio.set_event_loop(asyncio.new_event_loop())
    tm = TokenizerManager(args, resolve_model(None), endpoints)
    yield build_app(tm, args)
    endpoints.remove()


def test_every_route_is_503_while_starting(starting_app):
    client = TestClient(starting_app)
    for method, path in (("get", "/health"), ("post", "/generate"), ("get", "/v1/models")):
        resp = getattr(client, method)(path)
        assert resp.status_code == 503
        assert "starting" in resp.json()["error"]["message"]
