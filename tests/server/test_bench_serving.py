"""benchmarks/bench_serving.py against the session's server: every workload runs through the
OpenAI routes, counts what came back and renders its table (vLLM is not needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .conftest import API_KEY

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serving.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_serving", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_serving_drives_every_workload_and_counts_equal_work(server, tmp_path):
    bench = load_bench()
    report = tmp_path / "report.md"
    result = bench.main(["--server", f"radixlm={server.url}", "--api-key", API_KEY, "--concurrency", "2",
                         "--num-requests", "2", "--max-tokens", "3", "--json-max-tokens", "64",
                         "--repeats", "1", "--output", str(report)])
    runs = {r["workload"]: r for r in result["runs"]}
    assert set(runs) == {"fewshot", "random", "chat", "json"}
    assert all(r["failed"] == 0 for r in runs.values()), runs
    for name in ("fewshot", "random", "chat"):  # ignore_eos: exactly max_tokens per request
        assert runs[name]["output_tokens"] == 3 * runs[name]["requests"], runs[name]
        assert runs[name]["ttft_p50_ms"] > 0
    assert runs["chat"]["requests"] == 4  # two users, two turns each
    assert runs["fewshot"]["prompt_tokens"] > 2 * 400  # the shared ~400-token prefix
    assert runs["json"]["valid_json"] == runs["json"]["requests"]
    text = report.read_text()
    assert "| fewshot | 2 | radixlm |" in text
    assert "cores" in text.splitlines()[1]  # the machine line names the CPU and its features
