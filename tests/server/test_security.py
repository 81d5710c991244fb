"""Security: the API key guards every route but the health checks; loopback by default and a
warning when exposed without a key; no request field reaches the filesystem; logs carry
neither the key nor prompts unless --log-requests.

Decisions, documented here and in `runtime/http/common.py`:
  * open without the key: `/health` and `/ready` (probes from load balancers and
    orchestrators carry no secret, and they cost nothing), and the web view's page and its
    static files (`web_view.PAGE_PATHS`: a browser cannot send a header when it navigates;
    they hold no data, and the page sends the key on its data routes). `/health_generate`
    runs a real generation, so it needs the key like everything else (issue 22). The key is
    sent as `Authorization: Bearer <key>`, compared with `hmac.compare_digest` (constant time) and
    checked before routing, so unknown routes do not reveal what exists either.
  * fields that name a file, URL, adapter or code to load (`model_path`, `tokenizer_path`,
    `chat_template`, `lora_path`, `image_data`, ...) are a 400 in every body, not ignored;
    OpenAI's `model` is a name the server never uses to open anything (any value is served
    by the one loaded model; responses name the served model).
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid

import pytest
import requests

from radixlm.runtime.cli import build_parser
from radixlm.runtime.http.common import OPEN_PATHS
from radixlm.runtime.http.native_api import build_app
from radixlm.runtime.http.web_view import PAGE_PATHS
from radixlm.runtime.server.launch import exposure_warning
from radixlm.runtime.server.server_process import ServerProcess
from radixlm.runtime.server_args import ServerArgs

from .conftest import API_KEY

HEALTH_CHECKS = {"/health", "/ready"}


def all_routes() -> list[tuple[str, str]]:
    """(method, path) for every route the app serves, path parameters filled in."""
    app = build_app(None, ServerArgs())  # the route table only: no request reaches a handler
    pairs = []
    for route in app.routes:
        path = route.path.replace("{model:path}", "some-model")
        assert "{" not in path, f"fill in the parameter of {route.path}"
        pairs += [(method, path) for method in sorted(route.methods)]
    return pairs


ROUTES = all_routes()
GUARDED = [(m, p) for m, p in ROUTES if p not in HEALTH_CHECKS | PAGE_PATHS]


def call(server, method: str, path: str, auth: str | None) -> requests.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    body = {} if method == "POST" else None
    return requests.request(method, server.url + path, json=body, headers=headers, timeout=60)


def test_only_the_health_checks_are_open():
    assert OPEN_PATHS == HEALTH_CHECKS
    assert {p for _, p in ROUTES} >= HEALTH_CHECKS | {"/generate", "/v1/chat/completions", "/metrics",
                                                       "/flush_cache", "/get_model_info", "/health_generate"}


@pytest.mark.parametrize("auth", [
    None, "Bearer wrong", f"Bearer {API_KEY[:-1]}", f"Bearer {API_KEY}x", API_KEY, f"bearer {API_KEY}",
    f"Basic {API_KEY}", "",
], ids=["none", "wrong", "prefix", "longer", "no-scheme", "lower-case", "basic", "empty"])
def test_every_guarded_route_is_401_without_the_right_key(server, auth):
    for method, path in GUARDED + [("GET", "/no/such/route")]:
        resp = call(server, method, path, auth)
        assert resp.status_code == 401, (method, path, resp.status_code)
        if method != "HEAD":
            assert resp.json()["error"]["type"] == "authentication_error"


def test_every_route_works_with_the_right_key(server):
    for method, path in GUARDED:
        resp = call(server, method, path, f"Bearer {API_KEY}")
        # an empty POST body is a 400: the key was accepted, the request then judged
        assert resp.status_code not in (401, 403) and resp.status_code < 500, (method, path, resp.text)


def test_health_checks_need_no_key(server):
    for path in sorted(HEALTH_CHECKS):
        assert requests.get(server.url + path, timeout=60).status_code == 200, path


def test_the_only_other_open_paths_are_the_pages_static_files():
    assert {"/"} | {p for p in PAGE_PATHS if p.startswith("/static/")} == PAGE_PATHS
    assert {m for m, p in ROUTES if p in PAGE_PATHS} <= {"GET", "HEAD"}


def test_the_default_bind_address_is_loopback():
    assert ServerArgs().host == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"


def test_the_key_can_come_from_the_environment_out_of_sight_of_ps(monkeypatch):
    monkeypatch.setenv("RADIXLM_API_KEY", "from-env")
    assert ServerArgs.from_cli(build_parser().parse_args(["serve"])).api_key == "from-env"
    flag = build_parser().parse_args(["serve", "--api-key", "from-flag"])
    assert ServerArgs.from_cli(flag).api_key == "from-flag"  # the flag wins
    monkeypatch.setenv("RADIXLM_API_KEY", "")
    assert ServerArgs.from_cli(build_parser().parse_args(["serve"])).api_key is None


@pytest.mark.parametrize(("host", "key", "warns"), [
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False),
    ("0.0.0.0", "k", False), ("0.0.0.0", None, True), ("::", None, True), ("10.1.2.3", None, True),
])
def test_exposure_warning_only_without_a_key_off_loopback(host, key, warns):
    assert (exposure_warning(host, key) is not None) == warns


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_binding_all_interfaces_without_a_key_warns_at_once(host):
    server = ServerProcess(["--log-level", "warning"], host=host, stderr=subprocess.PIPE, text=True)
    try:
        line = server.proc.stderr.readline()  # the warning comes first, before the model loads
    finally:
        server.stop()
    assert "WARNING" in line and "all network interfaces without --api-key" in line, line


@pytest.mark.parametrize("path", ["/generate", "/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize(("field", "value"), [
    ("model_path", "/etc/passwd"), ("tokenizer_path", "/etc"), ("chat_template", "/etc/passwd"),
    ("chat_template", "{{ 7 * 7 }}"), ("lora_path", "/tmp/adapter"), ("image_data", "file:///etc/passwd"),
    ("custom_logit_processor", "gASV"),
])
def test_a_field_naming_a_file_is_400(server, path, field, value):
    body = {"text": "hi", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}],
            "model": "m", "max_tokens": 1, "sampling_params": {"max_new_tokens": 1}, field: value}
    if path != "/generate":
        del body["text"], body["sampling_params"]
    resp = server.post(path, body)
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["error"]["message"]


def test_null_file_fields_from_sglang_clients_are_accepted(server):
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 1}, "lora_path": None, "image_data": None}
    assert server.post("/generate", body).status_code == 200


def test_the_openai_model_field_is_only_a_name(server):
    for name in ("/etc/passwd", "../../weights", "gpt-4o"):
        resp = server.post("/v1/chat/completions", {"model": name, "max_tokens": 1,
                                                    "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == server.get("/v1/models").json()["data"][0]["id"]
    resp = server.get("/v1/models/..%2F..%2Fetc%2Fpasswd")  # encoded: clients collapse a bare ../
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


def run_and_capture(*flags: str, key: str, marker: str) -> str:
    """Start a server with `flags`, send the marker through every kind of request, stop it;
    everything it printed (all three processes share the captured stdout/stderr)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        with ServerProcess.launch(["--max-total-tokens", "2048", "--api-key", key, *flags],
                                  stdout=out, stderr=subprocess.STDOUT) as server:
            send_marker(server.url, key, marker)
        out.seek(0)
        return out.read()


def send_marker(url: str, key: str, marker: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    prompt = f"Repeat after me: {marker}"
    sp = {"max_new_tokens": 2}
    for body in ({"text": prompt, "sampling_params": sp}, {"text": prompt, "sampling_params": sp, "stream": True},
                 {"text": prompt, "sampling_params": {"max_new_tokens": 10**6}},  # a 400
                 {"text": prompt, "sampling_params": {"bogus": 1}}):  # a 400 from parsing
        requests.post(url + "/generate", json=body, headers=auth, timeout=60)
    chat = {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": prompt}]}
    assert requests.post(url + "/v1/chat/completions", json=chat, headers=auth, timeout=60).status_code == 200
    requests.post(url + "/generate", json={"text": prompt}, headers={"Authorization": f"Bearer {marker}"},
                  timeout=60)  # a wrong key (it is no secret, but must not be logged either)
    # Instead of sleeping for the children's log lines: each process handles its messages in
    # order, so once this last request is answered all three have handled (and logged what
    # they log about) every request before it.
    last = requests.post(url + "/generate", json={"text": "last", "sampling_params": sp}, headers=auth, timeout=60)
    assert last.status_code == 200, last.text


def test_debug_logs_contain_neither_the_key_nor_prompts():
    key, marker = f"key-{uuid.uuid4().hex}", f"marker-{uuid.uuid4().hex}"
    log = run_and_capture("--log-level", "debug", key=key, marker=marker)
    assert "DEBUG" in log  # debug logging really was on
    assert key not in log
    assert marker not in log


@pytest.mark.slow
def test_log_requests_logs_prompts_but_never_the_key():
    key, marker = f"key-{uuid.uuid4().hex}", f"marker-{uuid.uuid4().hex}"
    log = run_and_capture("--log-level", "warning", "--log-requests", key=key, marker=marker)
    assert marker in log
    assert key not in log

