"""HTTP load generator for a radixlm (or any SGLang-compatible) server on 127.0.0.1.

Measures, per workload x concurrency x radix cache on/off: request throughput, output
tokens/s, time to first token (TTFT) and inter-token latency (ITL) p50/p99, and the radix
cache hit rate the server reports. Also compares the per-token decode latency at
concurrency 1 through the server with the in-process `runtime.Engine` (HTTP + IPC overhead).

Workloads (bounded request counts):
  * chat     -- multi-turn chat: each conversation sends its growing history every turn
                (turns run in order inside a conversation, conversations run concurrently;
                max(concurrency, num_requests / turns) conversations of 4 turns);
  * fewshot  -- shared-prefix few-shot: one long few-shot prefix + a different question.

    python benchmarks/bench_serving.py                       # launches its own servers
    python benchmarks/bench_serving.py --concurrency 1,8 --num-requests 16 --output docs/benchmarks.md
    python benchmarks/bench_serving.py --url http://127.0.0.1:30000 --workloads fewshot
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx

from radixlm.runtime.server.server_process import ServerProcess

FEWSHOT_EXAMPLES = [
    ("What is the capital of France?", "Paris"), ("What is 12 times 3?", "36"),
    ("Which planet is known as the red planet?", "Mars"), ("What color is the sky on a clear day?", "Blue"),
    ("How many legs does a spider have?", "Eight"), ("What is the boiling point of water in Celsius?", "100"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"), ("What is the largest ocean?", "The Pacific"),
]
QUESTIONS = [
    "What is the capital of Italy?", "What is 7 plus 8?", "Which animal is the largest mammal?",
    "What gas do plants breathe in?", "How many days are in a week?", "What is frozen water called?",
    "Which star is closest to Earth?", "What is the opposite of hot?",
]
CHAT_TURNS = ["Hi! Can you suggest a name for a cat?", "Why that name?", "Give me one more idea.",
              "Which of the two do you prefer?"]


@dataclass
class RequestResult:
    ttft: float
    itls: list[float]
    e2e: float
    output_tokens: int
    text: str
    prompt_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class RunResult:
    results: list[RequestResult] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict:
        rs = self.results
        itls = sorted(x for r in rs for x in r.itls)
        ttfts = sorted(r.ttft for r in rs)
        tokens = sum(r.output_tokens for r in rs)
        prompt = sum(r.prompt_tokens for r in rs)
        return {
            "hit_rate": sum(r.cached_tokens for r in rs) / prompt if prompt else float("nan"),
            "requests": len(rs),
            "req_per_s": len(rs) / self.wall,
            "out_tok_per_s": tokens / self.wall,
            "ttft_p50_ms": 1e3 * pct(ttfts, 50), "ttft_p99_ms": 1e3 * pct(ttfts, 99),
            "itl_p50_ms": 1e3 * pct(itls, 50), "itl_p99_ms": 1e3 * pct(itls, 99),
        }


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ---- one streamed request ---------------------------------------------------------------
async def stream_generate(client: httpx.AsyncClient, text: str, max_new: int) -> RequestResult:
    body = {"text": text, "stream": True,
            "sampling_params": {"max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}}
    start = time.perf_counter()
    ttft, last, itls, tokens, out, meta = None, None, [], 0, "", {}
    async with client.stream("POST", "/generate", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            now = time.perf_counter()
            meta = event["meta_info"]
            new = meta["completion_tokens"] - tokens
            if new <= 0:
                continue
            if ttft is None:
                ttft = now - start
            else:
                itls.extend([(now - last) / new] * new)
            last, tokens, out = now, event["meta_info"]["completion_tokens"], event["text"]
    return RequestResult(ttft or 0.0, itls, time.perf_counter() - start, tokens, out,
                         meta.get("prompt_tokens", 0), meta.get("cached_tokens", 0))


# ---- workloads --------------------------------------------------------------------------
def fewshot_prompts(n: int) -> list[str]:
    prefix = "Answer each question in a few words.\n\n" + "".join(
        f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEWSHOT_EXAMPLES * 3)
    return [f"{prefix}Question: {QUESTIONS[i % len(QUESTIONS)]} (#{i})\nAnswer:" for i in range(n)]


def chatml(messages: list[dict]) -> str:
    # SmolLM2's template, rendered here so the client needs no tokenizer
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
        "<|im_start|>assistant\n"


async def run_fewshot(url: str, headers: dict, n: int, concurrency: int, max_new: int) -> RunResult:
    prompts = fewshot_prompts(n)
    sem = asyncio.Semaphore(concurrency)
    run = RunResult()
    async with _client(url, headers, concurrency) as client:
        async def one(p: str) -> None:
            async with sem:
                run.results.append(await stream_generate(client, p, max_new))

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in prompts))
        run.wall = time.perf_counter() - start
    return run


async def run_chat(url: str, headers: dict, n: int, concurrency: int, max_new: int) -> RunResult:
    # at least one conversation per concurrent slot, so high concurrency is really reached
    conversations = max(concurrency, -(-n // len(CHAT_TURNS)))
    sem = asyncio.Semaphore(concurrency)
    run = RunResult()
    async with _client(url, headers, concurrency) as client:
        async def conversation(i: int) -> None:
            async with sem:
                messages = [{"role": "system", "content": f"You are assistant #{i}. Be brief."}]
                for turn in CHAT_TURNS:
                    messages.append({"role": "user", "content": turn})
                    result = await stream_generate(client, chatml(messages), max_new)
                    run.results.append(result)
                    messages.append({"role": "assistant", "content": result.text})

        start = time.perf_counter()
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
        run.wall = time.perf_counter() - start
    return run


WORKLOADS = {"chat": run_chat, "fewshot": run_fewshot}


def _client(url: str, headers: dict, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency + 4)
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits)


# ---- servers ----------------------------------------------------------------------------
def launch_server(extra: list[str]) -> ServerProcess:
    """`radixlm serve` on a free loopback port (stopped with `.stop()`)."""
    return ServerProcess.launch(["--log-level", "warning", *extra], timeout=600)


# ---- engine comparison ------------------------------------------------------------------
def engine_per_token_ms(prompts: list[str], max_new: int, server_args: dict) -> float:
    """Median decode latency per token of runtime.Engine at concurrency 1 (same prompts)."""
    from radixlm.runtime import Engine

    itls = []
    with Engine(**server_args) as engine:
        engine.generate(prompts[0], {"max_new_tokens": 2})  # warm-up
        for p in prompts:
            last = None
            for _ in engine.generate_stream(p, {"max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}):
                now = time.perf_counter()
                if last is not None:
                    itls.append(now - last)
                last = now
    return 1e3 * statistics.median(itls)


# ---- main -------------------------------------------------------------------------------
def run_matrix(url: str, headers: dict, args, cache: str) -> list[dict]:
    rows = []
    for workload in args.workloads.split(","):
        for c in [int(x) for x in args.concurrency.split(",")]:
            httpx.post(url + "/flush_cache", headers=headers, timeout=60)
            run = asyncio.run(WORKLOADS[workload](url, headers, args.num_requests, c, args.max_new_tokens))
            row = {"workload": workload, "radix_cache": cache, "concurrency": c, **run.summary()}
            print(format_row(row), flush=True)
            rows.append(row)
    return rows


HEADER = ("| workload | radix cache | conc. | requests | req/s | out tok/s | TTFT p50 ms | TTFT p99 ms "
          "| ITL p50 ms | ITL p99 ms | cached prompt share |\n|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(r: dict) -> str:
    return (f"| {r['workload']} | {r['radix_cache']} | {r['concurrency']} | {r['requests']} | "
            f"{r['req_per_s']:.2f} | {r['out_tok_per_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | "
            f"{r['itl_p50_ms']:.0f} | {r['itl_p99_ms']:.0f} | {r['hit_rate']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="benchmark this running server instead of launching radixlm")
    ap.add_argument("--api-key")
    ap.add_argument("--workloads", default="chat,fewshot")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--num-requests", type=int, default=16, help="requests per (workload, concurrency)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-total-tokens", type=int, default=16384)
    ap.add_argument("--skip-engine", action="store_true", help="skip the server-vs-Engine latency check")
    ap.add_argument("--output", help="write the results as markdown to this file")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the `finally`s: stop our servers
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"machine: {machine}\nmodel: bundled SmolLM2-135M-Instruct\n{HEADER}", flush=True)
    rows: list[dict] = []
    if args.url:
        rows += run_matrix(args.url, headers, args, "as configured")
    else:
        for cache, extra in (("on", []), ("off", ["--disable-radix-cache"])):
            server = launch_server(["--max-total-tokens", str(args.max_total_tokens), *extra])
            try:
                rows += run_matrix(server.url, headers, args, cache)
            finally:
                server.stop()
    overhead = None if args.skip_engine or args.url else compare_with_engine(args)
    if args.output:
        write_markdown(args.output, machine, args, rows, overhead)


def compare_with_engine(args) -> dict:
    """Per-token decode latency at concurrency 1: server (HTTP + zmq) vs in-process Engine."""
    prompts = fewshot_prompts(4)
    server = launch_server(["--max-total-tokens", str(args.max_total_tokens)])
    try:
        asyncio.run(run_fewshot(server.url, {}, 1, 1, 2))  # warm-up
        run = asyncio.run(run_fewshot(server.url, {}, len(prompts), 1, args.max_new_tokens))
    finally:
        server.stop()
    server_ms = 1e3 * statistics.median(x for r in run.results for x in r.itls)
    engine_ms = engine_per_token_ms(prompts, args.max_new_tokens, {"max_total_tokens": args.max_total_tokens})
    result = {"server_ms": server_ms, "engine_ms": engine_ms, "ratio": server_ms / engine_ms}
    print(f"concurrency 1 per-token latency: server {server_ms:.1f} ms, Engine {engine_ms:.1f} ms, "
          f"ratio {result['ratio']:.3f}", flush=True)
    return result


def write_markdown(path: str, machine: str, args, rows: list[dict], overhead: dict | None) -> None:
    lines = [
        "# Serving benchmark (`benchmarks/bench_serving.py`)", "",
        f"- machine: {machine}", "- model: bundled SmolLM2-135M-Instruct (float32 on CPU)",
        f"- workloads: {args.workloads}; {args.num_requests} requests per cell; "
        f"{args.max_new_tokens} output tokens each (ignore_eos, greedy); streaming `/generate`",
        f"- command: `python benchmarks/bench_serving.py {' '.join(sys.argv[1:])}`", "",
        HEADER, *[format_row(r) for r in rows], "",
    ]
    if overhead:
        lines += [
            "## HTTP + IPC overhead at concurrency 1", "",
            "| server per-token ms | Engine per-token ms | server / Engine |", "|---|---|---|",
            f"| {overhead['server_ms']:.1f} | {overhead['engine_ms']:.1f} | {overhead['ratio']:.3f} |", "",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
