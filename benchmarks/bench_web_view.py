"""Serving throughput with the web view open vs closed, on one server in one run.

"Open" is a separate process that polls exactly as the page does while it is visible
(`GET /stats` every 333 ms, `GET /cache/tree` with the page's default query every 1000 ms,
each parsed as JSON); "closed" is nothing polling. The load is bench_serving.py's streamed
workloads. Rounds alternate in ABBA order (closed, open, open, closed, ...) on the same
warmed-up server, so a drift of this shared machine hits both sides alike; medians are
compared. Two measures: output tokens per second (what a client sees; on a shared machine it
moves with the neighbours' load) and the server's CPU time per output token, all three
processes summed (psutil; what the page really costs the server, and much less sensitive to
the neighbours). Also reported: the latency of the polls and the tree snapshot's own time
on the scheduler thread (`took_s`), and the CPU the polling costs each server process on an
idle server (the quietest measure of what an open page costs). Before all that the tree is
filled with `--fill` short prompts (prefill only), so the page's default snapshot lists its
full 256 nodes.

    python benchmarks/bench_web_view.py [--rounds 4] [--workload fewshot] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_serving import WORKLOADS, run_workload  # noqa: E402
from machine import machine_line  # noqa: E402

from radixlm.runtime.server.server_process import ServerProcess  # noqa: E402

STATS_EVERY_S = 0.333  # static/web_view.js STATS_EVERY_MS
TREE_EVERY_S = 1.0  # static/web_view.js TREE_EVERY_MS


def poll_like_the_page(url: str, out_path: str) -> None:
    """The poller process: poll until killed, appending one JSON line per poll to `out_path`."""
    next_stats = next_tree = time.monotonic()
    with open(out_path, "a", buffering=1) as out:
        while True:
            now = time.monotonic()
            for route, due in (("/stats", next_stats), ("/cache/tree", next_tree)):
                if now >= due:
                    start = time.perf_counter()
                    with urllib.request.urlopen(url + route, timeout=30) as resp:
                        body = json.loads(resp.read())
                    out.write(json.dumps({"route": route, "at": time.monotonic(),
                                          "latency_s": time.perf_counter() - start,
                                          "scheduler_s": body["took_s"], "nodes": len(body.get("nodes", []))}) + "\n")
            if now >= next_stats:
                next_stats = now + STATS_EVERY_S
            if now >= next_tree:
                next_tree = now + TREE_EVERY_S
            time.sleep(max(0.0, min(next_stats, next_tree) - time.monotonic()))


def server_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the server process and its children (scheduler, detokenizer)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def fill_tree(url: str, n: int) -> None:
    """`n` prompt-only requests under 8 shared prefixes: a tree of about 2n nodes."""
    texts = [f"Topic {i % 8}: notes for the web view benchmark. Entry {i} of {n} says {i * 7919 % 10007}."
             for i in range(n)]
    body = json.dumps({"text": texts, "sampling_params": {"max_new_tokens": 0}}).encode()
    request = urllib.request.Request(url + "/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as resp:
        resp.read()


def cpu_by_process(pid: int) -> dict[str, float]:
    root = psutil.Process(pid)
    out = {"main": sum(root.cpu_times()[:2])}
    out["children"] = sum(sum(c.cpu_times()[:2]) for c in root.children(recursive=True))
    return out


def idle_cost(server, log_path: str, seconds: float) -> dict[str, float]:
    """CPU per second of each server process on an idle server, page closed vs open (percent of a core)."""
    out = {}
    for page_open in (False, True):
        poller = None
        if page_open:
            poller = subprocess.Popen([sys.executable, __file__, "--poll", server.url, "--poll-log", log_path])
            time.sleep(1.0)
        before = cpu_by_process(server.pid)
        time.sleep(seconds)
        after = cpu_by_process(server.pid)
        if poller is not None:
            poller.terminate()
            poller.wait()
        for name in before:
            out[f"{name}_{'open' if page_open else 'closed'}"] = 100 * (after[name] - before[name]) / seconds
    return out


def run_round(server, args, page_open: bool, log_path: str) -> dict:
    poller = None
    if page_open:
        poller = subprocess.Popen([sys.executable, __file__, "--poll", server.url, "--poll-log", log_path])
        time.sleep(0.5)  # polling before the load starts, as a page left open would be
    cpu = server_cpu_s(server.pid)
    try:
        run = run_workload(server.url, args.workload, args.num_requests, args.concurrency,
                           args.max_new_tokens)
        cpu = server_cpu_s(server.pid) - cpu
    finally:
        if poller is not None:
            poller.terminate()
            poller.wait()
    summary = run.summary()
    tokens = sum(r.output_tokens for r in run.results)
    summary["cpu_ms_per_token"] = 1e3 * cpu / tokens
    print(f"  page {'open  ' if page_open else 'closed'}: {summary['out_tok_per_s']:.1f} out tok/s, "
          f"{summary['req_per_s']:.2f} req/s, ITL p50 {summary['itl_p50_ms']:.0f} ms, "
          f"server CPU {summary['cpu_ms_per_token']:.1f} ms/token", flush=True)
    return summary


def poll_summary(log_path: str) -> dict:
    lines = [json.loads(x) for x in Path(log_path).read_text().splitlines()]

    def p(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    stats = [x["latency_s"] for x in lines if x["route"] == "/stats"]
    tree = [x["latency_s"] for x in lines if x["route"] == "/cache/tree"]
    live = [x["scheduler_s"] for x in lines if x["route"] == "/stats"]
    snap = [x["scheduler_s"] for x in lines if x["route"] == "/cache/tree"]
    return {"stats_polls": len(stats), "tree_polls": len(tree),
            "stats_p50_ms": 1e3 * p(stats, 0.5), "stats_p99_ms": 1e3 * p(stats, 0.99),
            "tree_p50_ms": 1e3 * p(tree, 0.5), "tree_p99_ms": 1e3 * p(tree, 0.99),
            "live_p50_ms": 1e3 * p(live, 0.5), "snapshot_p50_ms": 1e3 * p(snap, 0.5),
            "snapshot_max_ms": 1e3 * max(snap, default=float("nan")),
            # scheduler-thread time spent answering the page, per second of polling
            "scheduler_ms_per_s": 1e3 * (sum(live) / STATS_EVERY_S / max(1, len(live))
                                         + sum(snap) / TREE_EVERY_S / max(1, len(snap))),
            "max_nodes_listed": max((x["nodes"] for x in lines), default=0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each side, alternating")
    ap.add_argument("--workload", default="fewshot", choices=sorted(WORKLOADS))
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--num-requests", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-total-tokens", type=int, default=16384)
    ap.add_argument("--fill", type=int, default=300, help="prompt-only requests that fill the tree first")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--poll", help=argparse.SUPPRESS)  # internal: run as the poller of this URL
    ap.add_argument("--poll-log", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.poll:
        return poll_like_the_page(args.poll, args.poll_log)
    log_path = str(Path(f"/tmp/bench_web_view_{int(time.time())}.jsonl"))
    print(f"machine: {machine_line()}\ndate: {datetime.date.today()}\n"
          f"command: python benchmarks/bench_web_view.py {' '.join(sys.argv[1:])}", flush=True)
    server = ServerProcess.launch(["--log-level", "warning", "--max-total-tokens", str(args.max_total_tokens)],
                                  timeout=600)
    try:
        run_workload(server.url, args.workload, 4, 4, 4)  # warm-up
        fill_tree(server.url, args.fill)
        idle = idle_cost(server, log_path, args.idle_seconds)
        closed, opened = [], []
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", flush=True)
            for page_open in ((False, True) if i % 2 == 0 else (True, False)):  # ABBA
                (opened if page_open else closed).append(run_round(server, args, page_open, log_path))
    finally:
        server.stop()
    report(args, closed, opened, poll_summary(log_path), idle)


def report(args, closed: list[dict], opened: list[dict], polls: dict, idle: dict) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\nworkload {args.workload}, concurrency {args.concurrency}, {args.num_requests} requests x "
          f"{args.max_new_tokens} tokens per round, {args.rounds} rounds per side (medians)")
    print("| page | out tok/s | req/s | ITL p50 ms | TTFT p50 ms | server CPU ms / token | rounds (out tok/s) "
          "| rounds (CPU ms / token) |\n|---|---:|---:|---:|---:|---:|---|---|")
    for name, rows in (("closed", closed), ("open", opened)):
        each = ", ".join(f"{r['out_tok_per_s']:.1f}" for r in rows)
        cpu = ", ".join(f"{r['cpu_ms_per_token']:.1f}" for r in rows)
        print(f"| {name} | {med(rows, 'out_tok_per_s'):.1f} | {med(rows, 'req_per_s'):.2f} | "
              f"{med(rows, 'itl_p50_ms'):.0f} | {med(rows, 'ttft_p50_ms'):.0f} | {med(rows, 'cpu_ms_per_token'):.2f} "
              f"| {each} | {cpu} |")
    ratio = med(opened, "out_tok_per_s") / med(closed, "out_tok_per_s")
    cpu_ratio = med(opened, "cpu_ms_per_token") / med(closed, "cpu_ms_per_token")
    print(f"\nopen / closed: output throughput {ratio:.3f}, server CPU per output token {cpu_ratio:.3f}")
    print(f"polls while open: {polls['stats_polls']} /stats (p50 {polls['stats_p50_ms']:.1f} ms, p99 "
          f"{polls['stats_p99_ms']:.1f} ms), {polls['tree_polls']} /cache/tree (p50 {polls['tree_p50_ms']:.1f} ms, "
          f"p99 {polls['tree_p99_ms']:.1f} ms); on the scheduler thread: /stats p50 {polls['live_p50_ms']:.3f} ms, "
          f"tree snapshot p50 {polls['snapshot_p50_ms']:.3f} ms, max {polls['snapshot_max_ms']:.3f} ms, "
          f"{polls['scheduler_ms_per_s']:.2f} ms per second of an open page "
          f"({polls['scheduler_ms_per_s'] / 10:.3f}% of the scheduler's time); "
          f"at most {polls['max_nodes_listed']} nodes listed")
    print(f"idle server, % of a core: main process {idle['main_closed']:.2f} closed / {idle['main_open']:.2f} open; "
          f"scheduler + detokenizer {idle['children_closed']:.2f} closed / {idle['children_open']:.2f} open")


if __name__ == "__main__":
    main()
