"""RuntimeEndpoint speaks SGLang's native protocol exactly (docs/wire-protocol.md Part B).

A scripted HTTP server records every request, so these tests check the bodies, paths and
headers byte for byte without a model.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import radixlm.lang as sgl
from radixlm.lang.ir import REGEX_INT

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


class Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    model_path = "TinyLlama-1.1B-Chat"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, payload, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body) -> None:
        self.requests.append({"method": self.command, "path": self.path, "body": body,
                              "headers": dict(self.headers)})

    def do_GET(self):
        self._record(None)
        if self.path == "/get_model_info":
            self._reply(200, {"model_path": self.model_path})
        else:
            self._reply(200, {"version": "test"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self._record(body)
        if self.path != "/generate":
            self._reply(200, b"ok", "text/plain")
        elif "FAIL" in json.dumps(body):
            self._reply(400, {"error": {"message": "scripted failure"}})
        elif body.get("stream"):
            self._stream()
        elif isinstance(body.get("text"), list) or "input_ids" in body:
            n = len(body.get("text") or body["input_ids"])
            self._reply(200, [self._result(i) for i in range(n)])
        elif body["sampling_params"].get("max_new_tokens") == 0:
            self._reply(200, {"text": "", "meta_info": {"prompt_tokens": 10}})
        else:
            self._reply(200, {"text": " 42", "meta_info": {"prompt_tokens": 10, "completion_tokens": 2}})

    @staticmethod
    def _result(i: int) -> dict:
        # Choice i gets logprob -i for each of its tokens: choice 0 is the best.
        lps = [[None, 1, "x"], [-0.1, 2, "y"], [-float(i) - 0.5, 3, "c"], [-float(i) - 0.5, 4, "d"]]
        return {"text": "", "meta_info": {"prompt_tokens": 12, "input_token_logprobs": lps,
                                          "output_token_logprobs": []}}

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, text in enumerate(["He", "Hello", "Hello!"]):
            event = {"text": text, "meta_info": {"completion_tokens": i + 1,
                                                 "output_token_logprobs": [[-1.0, i, None]]}}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def server():
    Recorder.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Recorder.requests
    httpd.shutdown()


def generate_bodies(requests: list[dict]) -> list[dict]:
    return [r["body"] for r in requests if r["path"] == "/generate"]


def test_constructor_reads_model_info_and_picks_the_template(server):
    url, requests = server
    backend = sgl.RuntimeEndpoint(url)
    assert [(r["method"], r["path"]) for r in requests] == [("GET", "/get_model_info")]
    assert requests[0]["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert backend.get_chat_template().name == "chatml"  # "tinyllama" matches chatml
    assert backend.get_model_name() == "TinyLlama-1.1B-Chat"


def test_api_key_is_sent_as_a_bearer_token(server):
    url, requests = server
    sgl.RuntimeEndpoint(url, api_key="sk-test")
    assert requests[0]["headers"]["Authorization"] == "Bearer sk-test"


def test_gen_sends_the_whole_text_and_exactly_sglangs_keys(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Q: 6*7?\nA:" + sgl.gen("a", max_tokens=5, min_tokens=1, stop="\n", temperature=0)

    state = prog.run(backend=sgl.RuntimeEndpoint(url))
    assert state["a"] == " 42"
    (body,) = generate_bodies(requests)
    assert body == {"text": "Q: 6*7?\nA:", "sampling_params": {
        "skip_special_tokens": True, "spaces_between_special_tokens": True, "max_new_tokens": 5,
        "min_new_tokens": 1, "n": 1, "stop": ["\n", "<|im_end|>"], "stop_token_ids": [],
        "stop_regex": [], "temperature": 0, "top_p": 1.0, "top_k": -1, "min_p": 0.0,
        "frequency_penalty": 0.0, "presence_penalty": 0.0, "ignore_eos": False, "regex": None,
        "json_schema": None}}
    assert state.get_meta_info("a") == {"prompt_tokens": 10, "completion_tokens": 2}


def test_gen_int_sends_the_int_regex_and_space_newline_stops(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Number:" + sgl.gen_int("n", return_logprob=True)

    prog.run(backend=sgl.RuntimeEndpoint(url, chat_template_name="default")).sync()
    (body,) = generate_bodies(requests)
    assert body["sampling_params"]["regex"] == REGEX_INT
    assert body["sampling_params"]["stop"] == [" ", "\n"]
    assert body["return_logprob"] is True and "logprob_start_len" not in body


def test_select_prefills_once_then_scores_all_choices_in_one_batch(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Pick:" + sgl.select("c", choices=[" a", " b", " c"])

    state = prog.run(backend=sgl.RuntimeEndpoint(url))
    assert state["c"] == " a"
    prefill, scoring = generate_bodies(requests)
    assert prefill == {"text": "Pick:", "sampling_params": {"max_new_tokens": 0}}
    assert scoring == {"text": ["Pick: a", "Pick: b", "Pick: c"],
                       "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                       "return_logprob": True, "return_text_in_logprobs": True,
                       "logprob_start_len": 8}
    # mean of the truthy logprobs: (-0.1 - 0.5 - 0.5) / 3
    assert state.get_meta_info("c")["normalized_prompt_logprobs"][0] == pytest.approx(-1.1 / 3)


def test_unconditional_likelihood_sends_a_third_request_with_token_ids(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Pick:" + sgl.select("c", choices=[" a", " b"],
                                  choices_method=sgl.unconditional_likelihood_normalized)

    state = prog.run(backend=sgl.RuntimeEndpoint(url))
    assert state.error() is None
    third = generate_bodies(requests)[2]
    assert third["input_ids"] == [[1, 2, 3, 4], [1, 2, 3, 4]]
    assert "normalized_unconditional_prompt_logprobs" in state.get_meta_info("c")


def test_stream_reconstructs_text_from_cumulative_events(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Say hi:" + sgl.gen("g", max_tokens=3)

    state = prog.run(backend=sgl.RuntimeEndpoint(url), stream=True)
    assert list(state.text_iter("g")) == ["He", "llo", "!"]
    assert generate_bodies(requests)[0]["stream"] is True
    assert state.get_meta_info("g")["completion_tokens"] == 3


def test_cache_prefix_and_commit_are_prefill_only_requests(server):
    url, requests = server
    backend = sgl.RuntimeEndpoint(url)
    backend.cache_prefix("P" * 80)
    assert generate_bodies(requests) == [{"text": "P" * 80, "sampling_params": {"max_new_tokens": 0}}]


def test_concate_and_append_join_calls_the_endpoint_with_executor_ids(server):
    url, requests = server

    @sgl.function
    def prog(s):
        s += "Base."
        forks = s.fork(2)
        forks += [" one", " two"]
        forks.join(mode="concate_and_append")

    state = prog.run(backend=sgl.RuntimeEndpoint(url))
    assert state.text() == "Base. one two"
    (call,) = [r for r in requests if r["path"] == "/concate_and_append_request"]
    assert len(call["body"]["src_rids"]) == 2 and len(call["body"]["dst_rid"]) == 32


def test_flush_cache_is_a_post_without_body_and_server_info_a_get(server):
    url, requests = server
    backend = sgl.RuntimeEndpoint(url)
    sgl.flush_cache(backend)
    assert sgl.get_server_info(backend) == {"version": "test"}
    assert [(r["method"], r["path"], r["body"]) for r in requests[1:]] == [
        ("POST", "/flush_cache", None), ("GET", "/server_info", None)]


def test_a_non_200_answer_becomes_a_runtime_error_in_the_state(server):
    url, _ = server

    @sgl.function
    def prog(s):
        s += "FAIL" + sgl.gen("x")

    state = prog.run(backend=sgl.RuntimeEndpoint(url))
    assert "HTTP 400" in str(state.error()) and "scripted failure" in str(state.error())
    with pytest.raises(KeyError, match="scripted failure"):
        state["x"]


def test_the_frontend_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; import radixlm.lang as sgl; sgl.RuntimeEndpoint; "
            "assert 'torch' not in sys.modules and 'radixlm.runtime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
