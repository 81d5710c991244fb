"""Two replicas behind sglang-router: cache-aware routing vs round-robin, in one run.

Workload: P distinct shared prefixes (~400 tokens each, default 4) x R requests each
(default 16), each request its prefix plus a distinct question, in a seeded random order
(a fixed interleaving p0 p1 p2 p3 p0 ... would hand round-robin each prefix to one replica
by accident) and sent C at a time (default 8), 16 greedy output tokens each (eos ignored). The same two replicas (runtime/server/replicas.py: one CPU core set
each) serve both policies; each policy gets its own router (router_process.py) and starts
from flushed caches. Per policy: requests each replica served (X-Radixlm-Replica), the
radix cache hit rate of each replica and overall (cached / prompt tokens, from the deltas
of each replica's /metrics counters), wall time, request and output-token throughput, p50
latency.

    python benchmarks/bench_router.py
    python benchmarks/bench_router.py --prefixes 4 --requests-per-prefix 16 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import time
from dataclasses import dataclass

import httpx

from radixlm.runtime.server.replicas import Replica, plan_placements
from radixlm.runtime.server.router import RouterConfig
from radixlm.runtime.server.router_process import RouterProcess
from radixlm.runtime.server.server_process import free_port

POLICIES = ("cache_aware", "round_robin")
HEADER = "X-Radixlm-Replica"
COUNTER = re.compile(r'^radixlm_(prompt|cached_prompt)_tokens_total\{replica="([^"]+)"\} ([0-9.e+]+)$', re.M)


@dataclass
class PolicyResult:
    policy: str
    served: dict[str, int]
    hit_rate: dict[str, float]  # by replica, and "all"
    wall_s: float
    latencies: list[float]
    output_tokens: int

    def row(self, names: list[str]) -> str:
        served = " / ".join(str(self.served.get(n, 0)) for n in names)
        hits = " / ".join(f"{self.hit_rate.get(n, float('nan')):.1%}" for n in names)
        n = len(self.latencies)
        return (f"| {self.policy} | {served} | {hits} | {self.hit_rate['all']:.1%} | {self.wall_s:.1f} | "
                f"{n / self.wall_s:.2f} | {self.output_tokens / self.wall_s:.1f} | "
                f"{statistics.median(self.latencies):.2f} |")


def build_prompts(prefixes: int, per_prefix: int, prefix_tokens: int) -> list[str]:
    from workloads import TOPICS, few_shot_prefix

    from radixlm.runtime.model.loader import resolve_model
    from radixlm.runtime.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(resolve_model(None))
    shared = few_shot_prefix(tokenizer, prefix_tokens)
    heads = [f"Booklet {k} of the {TOPICS[k % len(TOPICS)]} society.\n" for k in range(prefixes)]
    prompts = [f"{heads[k]}{shared}Question {100 + i}: Name one idea of {TOPICS[(i + k) % len(TOPICS)]}.\n"
               f"Answer {100 + i}:" for i in range(per_prefix) for k in range(prefixes)]
    random.Random(0).shuffle(prompts)
    return prompts


def token_counters(replicas: list[Replica]) -> dict[str, dict[str, float]]:
    """replica name -> {"prompt": n, "cached_prompt": n} from its /metrics."""
    out: dict[str, dict[str, float]] = {}
    for r in replicas:
        for kind, name, value in COUNTER.findall(httpx.get(r.url + "/metrics", timeout=30).text):
            out.setdefault(name, {})[kind] = float(value)
    return out


def hit_rates(before: dict, after: dict) -> dict[str, float]:
    delta = {n: {k: after[n][k] - before[n][k] for k in after[n]} for n in after}
    rates = {n: d["cached_prompt"] / d["prompt"] if d["prompt"] else float("nan") for n, d in delta.items()}
    total = sum(d["prompt"] for d in delta.values())
    rates["all"] = sum(d["cached_prompt"] for d in delta.values()) / total
    return rates


async def send_all(url: str, prompts: list[str], concurrency: int, max_new: int):
    sem = asyncio.Semaphore(concurrency)
    served, latencies, tokens = {}, [], 0
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def one(prompt: str) -> None:
            nonlocal tokens
            async with sem:
                start = time.perf_counter()
                resp = await client.post("/generate", json={"text": prompt, "sampling_params": {
                    "max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}})
                resp.raise_for_status()
                latencies.append(time.perf_counter() - start)
                name = resp.headers[HEADER]
                served[name] = served.get(name, 0) + 1
                tokens += resp.json()["meta_info"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in prompts))
        wall = time.perf_counter() - start
    return served, latencies, tokens, wall


def run_policy(policy: str, replicas: list[Replica], prompts: list[str], args) -> PolicyResult:
    config = RouterConfig(port=free_port(), prometheus_port=free_port(), policy=policy,
                          worker_urls=tuple(r.url for r in replicas), log_level="warning")
    with RouterProcess(config) as router:
        router.wait_ready(60)
        httpx.post(router.url + "/flush_cache", timeout=30).raise_for_status()
        before = token_counters(replicas)
        served, latencies, tokens, wall = asyncio.run(
            send_all(router.url, prompts, args.concurrency, args.max_new_tokens))
        rates = hit_rates(before, token_counters(replicas))
    return PolicyResult(policy, served, rates, wall, latencies, tokens)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=4)
    ap.add_argument("--requests-per-prefix", type=int, default=16)
    ap.add_argument("--prefix-tokens", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-total-tokens", type=int, default=4096, help="KV pool of each replica")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each policy, in the order A B B A ...")
    args = ap.parse_args()
    order = [p for i in range(args.rounds) for p in (POLICIES if i % 2 == 0 else POLICIES[::-1])]

    prompts = build_prompts(args.prefixes, args.requests_per_prefix, args.prefix_tokens)
    placements = plan_placements(2, sorted(os.sched_getaffinity(0)), gpus=0)
    flags = ["--max-total-tokens", str(args.max_total_tokens), "--log-level", "warning"]
    replicas = [Replica(p, flags, free_port(), api_key=None) for p in placements]
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        results = [run_policy(policy, replicas, prompts, args) for policy in order]
    finally:
        for r in replicas:
            r.stop()
    names = [r.name for r in replicas]
    print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores; {len(prompts)} requests "
          f"({args.prefixes} prefixes x {args.requests_per_prefix}), concurrency {args.concurrency}, "
          f"{args.max_new_tokens} output tokens, KV pool {args.max_total_tokens} tokens per replica\n")
    print(f"| policy | requests served ({' / '.join(names)}) | hit rate ({' / '.join(names)}) | hit rate, all | "
          "wall s | req/s | out tok/s | p50 latency s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row(names))


if __name__ == "__main__":
    main()
