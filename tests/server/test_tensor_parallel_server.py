"""`radixlm serve --tp 2` on the CPU: real server, real ranks, real faults.

* It serves, reports every rank (pid, weight bytes) in /get_server_info, and its greedy
  output equals the in-process tp 1 engine's.
* A SIGKILLed rank under load: every request in flight ends with a 5xx naming the dead
  rank (JSON body, or an error event then `[DONE]` for a stream), never a hang; the server
  exits with code 1 within seconds and leaves no orphan.
* A model whose heads do not divide by --tp: the server exits 1 at once, saying so.
* (slow) `--dp 2 --tp 2`: two replicas, each a tensor-parallel group, behind the router.

The model is tests/conftest.py's small random-weight Llama (4 query / 2 KV heads).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from radixlm.runtime.server.server_process import ServerProcess

from .test_faults import CLIENT_TIMEOUT_S, EXIT_WITHIN_S, post, stream_events, wait_in_flight

LONG = {"max_new_tokens": 900, "ignore_eos": True}  # still decoding when the rank is killed
GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(small_tp_model):
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed below
    flags = ["--model-path", str(small_tp_model("llama")), "--tp", "2", "--max-total-tokens", "8000",
             "--log-level", "warning"]
    srv = ServerProcess.launch(flags, stderr=log)
    srv.log = log
    try:
        yield srv
    finally:
        srv.stop()
        log.close()


def stderr_of(srv) -> str:
    srv.log.seek(0)
    return srv.log.read()


def test_serve_tp2_reports_every_rank_and_equals_tp1(server, small_tp_model):
    from radixlm.runtime import Engine

    info = requests.get(server.url + "/get_server_info", timeout=30).json()
    assert info["tp_size"] == 2
    assert [r["rank"] for r in info["tp_ranks"]] == [0, 1]
    assert info["tp_ranks"][0]["param_bytes"] == info["tp_ranks"][1]["param_bytes"]
    prompt = "The capital of France is"
    served = post(server.url, "/generate", {"text": prompt, "sampling_params": GREEDY})
    assert served.status_code == 200, served.text
    with Engine(model_path=str(small_tp_model("llama")), max_total_tokens=2000, disable_torch_compile=True) as one:
        assert served.json()["output_ids"] == one.generate(prompt, GREEDY)["output_ids"]


def test_a_killed_rank_fails_requests_in_flight_and_stops_the_server(server):
    ranks = requests.get(server.url + "/get_server_info", timeout=30).json()["tp_ranks"]
    procs = [psutil.Process(r["pid"]) for r in ranks]
    started = [threading.Event(), threading.Event()]
    chat = [{"role": "user", "content": "Tell me a long story."}]
    with ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(post, server.url, "/generate", {"text": "Once upon a time", "sampling_params": LONG}),
            pool.submit(post, server.url, "/v1/chat/completions", {"model": "m", "messages": chat, "max_tokens": 900}),
        ]
        streams = [
            pool.submit(stream_events, server.url, "/generate", {"text": "A poem:", "sampling_params": LONG},
                        started[0]),
            pool.submit(stream_events, server.url, "/v1/chat/completions",
                        {"model": "m", "messages": chat, "max_tokens": 900}, started[1]),
        ]
        wait_in_flight(server.url, 4)
        assert all(e.wait(CLIENT_TIMEOUT_S) for e in started)
        procs[1].kill()
        killed_at = time.monotonic()
        for job in jobs:
            resp = job.result(CLIENT_TIMEOUT_S)
            assert 500 <= resp.status_code < 600, resp.text
            assert "tp-rank-1 process exited unexpectedly" in resp.json()["error"]["message"]
        for job in streams:
            events = job.result(CLIENT_TIMEOUT_S)
            assert events[-1] == "[DONE]", events[-3:]
            err = events[-2]["error"]
            assert 500 <= err["code"] < 600 and "tp-rank-1 process exited unexpectedly" in err["message"]
    assert server.proc.wait(EXIT_WITHIN_S) == 1
    assert time.monotonic() - killed_at < EXIT_WITHIN_S
    assert "the tp-rank-1 process exited unexpectedly (exit code -9)" in stderr_of(server)
    _, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive, f"orphans left: {alive}"


def test_serve_refuses_a_model_whose_heads_do_not_divide():
    """The bundled SmolLM2-135M has 9 query heads."""
    out = subprocess.run([sys.executable, "-m", "radixlm.runtime", "--tp", "2", "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "--tp 2 does not divide the model's 9 attention heads" in out.stderr


@pytest.mark.slow
def test_dp2_tp2_serves_through_the_router(small_tp_model):
    pytest.importorskip("sglang_router", reason='needs the router extra: pip install "radixlm[router]"')
    flags = ["--model-path", str(small_tp_model("llama")), "--dp", "2", "--tp", "2", "--max-total-tokens", "4000",
             "--log-level", "warning"]
    with ServerProcess.launch(flags, timeout=600) as srv:
        replicas = set()
        for i in range(6):
            resp = post(srv.url, "/generate", {"text": f"Request {i} says", "sampling_params": GREEDY})
            assert resp.status_code == 200, resp.text
            replicas.add(resp.json()["meta_info"]["replica"])
        assert replicas <= {"replica-0", "replica-1"}
        kids = psutil.Process(srv.proc.pid).children(recursive=True)
        # per replica: its server, scheduler (rank 0), detokenizer and rank 1, plus the router
        assert sum("spawn_main" in " ".join(p.cmdline()) for p in kids) == 6
