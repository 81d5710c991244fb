"""Cost of the web view's radix-tree snapshot on real RadixCache trees of 1k, 10k and 100k nodes.

The snapshot runs on the scheduler thread between two steps (scheduler_process.py), so what
it costs is a stall of the scheduler: it must stay near a millisecond at any tree size.
Measured per tree size and shape, p50 / p99 / max over `--repeats` snapshots:
  * `root`: the page's default query (the root, 4 levels, at most 256 nodes);
  * `expand`: the same query from a random node (a click on a collapsed node);
  * `snapshot + pickle`: the root snapshot and its serialization for the zmq reply (both on
    the scheduler thread);
and what the per-node subtree counters cost the cache's own mutations: insert and evict time
per node, against the radix cache of another git revision (`--compare-ref`, e.g. the one
before the counters) on the same token sequences.

Shapes (token ids are random; KV slots come from a real KVPool of 1-layer, 1-dim entries):
  * `fewshot`: 8 system prompts x 50 few-shot blocks x distinct questions: a wide tree;
  * `agent`: 10-turn paths where every turn picks one of 12 replies: a deep tree;
  * `distinct`: prompts that share nothing: every node a child of the root (the widest).

    python benchmarks/bench_tree_snapshot.py [--sizes 1000,10000,100000] [--compare-ref HEAD~5]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool
from radixlm.runtime.mem_cache.radix_cache import RadixCache
from radixlm.runtime.mem_cache.tree_snapshot import TreeQuery, take_snapshot

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402

VOCAB = 49152  # SmolLM2's
POOL_SLOTS = 1 << 24  # room for every tree here; alloc is a slice, so size costs nothing per call
MUTATION_REPEATS = 3


def fewshot_sequences(rng: random.Random) -> Iterator[list[int]]:
    systems = [[rng.randrange(VOCAB) for _ in range(64)] for _ in range(8)]
    blocks = [[rng.randrange(VOCAB) for _ in range(32)] for _ in range(50)]
    while True:
        question = [rng.randrange(VOCAB) for _ in range(16)]
        yield rng.choice(systems) + rng.choice(blocks) + question


def agent_sequences(rng: random.Random) -> Iterator[list[int]]:
    replies = [[[rng.randrange(VOCAB) for _ in range(8)] for _ in range(12)] for _ in range(10)]
    while True:
        turns = rng.randint(2, 10)
        yield [t for turn in range(turns) for t in rng.choice(replies[turn])]


def distinct_sequences(rng: random.Random) -> Iterator[list[int]]:
    while True:
        yield [rng.randrange(VOCAB) for _ in range(24)]


SHAPES = {"fewshot": fewshot_sequences, "agent": agent_sequences, "distinct": distinct_sequences}


def build(cache_cls, shape: str, num_nodes: int, seed: int = 0) -> tuple[object, list[list[int]], float]:
    """A cache of at least `num_nodes` nodes, the sequences inserted, the insert time per node."""
    cache = cache_cls(KVPool(POOL_SLOTS, 1, 1, 1, torch.float32))
    seqs, spent = [], 0.0
    for seq in SHAPES[shape](random.Random(seed)):
        if cache.num_nodes() >= num_nodes:
            break
        start = time.perf_counter()
        _insert(cache, seq)
        spent += time.perf_counter() - start
        seqs.append(seq)
    return cache, seqs, spent / cache.num_nodes()


def rebuild(cache_cls, seqs: list[list[int]]) -> tuple[object, float]:
    """A cache of `cache_cls` holding `seqs`, and the insert time per node."""
    cache = cache_cls(KVPool(POOL_SLOTS, 1, 1, 1, torch.float32))
    start = time.perf_counter()
    for seq in seqs:
        _insert(cache, seq)
    return cache, (time.perf_counter() - start) / _num_nodes(cache)


def _insert(cache, seq: list[int]) -> None:
    # As the scheduler does: match, allocate slots for the uncached rest only, insert.
    # (Nothing is freed: KVPool.free concatenates onto the free list, O(pool) per call.)
    match = cache.match_prefix(seq)
    new = cache.kv_pool.alloc(len(seq) - len(match.slots))
    cache.insert(seq, torch.cat([match.slots, new]))


def _num_nodes(cache) -> int:
    # Counted from the root's children: the reference revision may have no counters.
    count, stack = 0, list(cache.root_node.children.values())
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node.children.values())
    return count


def evict_time_per_node(cache) -> float:
    n = _num_nodes(cache)  # counted before the clock starts
    start = time.perf_counter()
    cache.evict(cache.evictable_size())
    return (time.perf_counter() - start) / n


def timings(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Wall-clock p50 / p99 / max (the stall), and the p99 of this thread's CPU time: on a
    shared machine a wall-clock outlier with no CPU outlier is the OS running someone else."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    wall.sort()
    cpu.sort()
    return {"p50": statistics.median(wall), "p99": _p99(wall), "max": wall[-1], "cpu_p99": _p99(cpu)}


def _p99(sorted_values: list[float]) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(0.99 * len(sorted_values)))]


def measure(shape: str, size: int, repeats: int, ref_cls) -> dict:
    cache, seqs, _ = build(RadixCache, shape, size)
    nodes = cache._walk()
    rng = random.Random(1)
    query = TreeQuery()
    root = take_snapshot(cache, query)
    row = {
        "shape": shape, "nodes": cache.num_nodes(), "tokens": cache.total_size(), "listed": len(root.nodes),
        "root": timings(lambda: take_snapshot(cache, query), repeats),
        "expand": timings(lambda: take_snapshot(cache, TreeQuery(node_id=rng.choice(nodes).id)), repeats),
        "pickle": timings(lambda: pickle.dumps(take_snapshot(cache, query)), repeats),
    }
    # Mutation costs, ours and the reference's built alternately from the same sequences
    # (best of MUTATION_REPEATS each: the least disturbed by the machine's other work).
    classes = {"": RadixCache, **({"ref_": ref_cls} if ref_cls is not None else {})}
    best: dict[str, float] = {}
    for _ in range(MUTATION_REPEATS):
        for prefix, cls in classes.items():
            built, insert_s = rebuild(cls, seqs)
            evict_s = evict_time_per_node(built)
            best[f"{prefix}insert_us"] = min(best.get(f"{prefix}insert_us", float("inf")), 1e6 * insert_s)
            best[f"{prefix}evict_us"] = min(best.get(f"{prefix}evict_us", float("inf")), 1e6 * evict_s)
    return {**row, **best}


def load_radix_cache_at(ref: str):
    """RadixCache as it was at git revision `ref` (for the counters' maintenance cost)."""
    source = subprocess.run(["git", "show", f"{ref}:runtime/mem_cache/radix_cache.py"], cwd=HERE.parent,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "radix_cache_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("radix_cache_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RadixCache


def ms(t: dict[str, float]) -> str:
    return f"{1e3 * t['p50']:.3f} / {1e3 * t['p99']:.3f} / {1e3 * t['max']:.3f}"


def table(rows: list[dict], ref: str | None) -> str:
    head = ("| shape | nodes | tokens | listed | root snapshot ms p50 / p99 / max | its CPU p99 ms "
            "| expand ms | snapshot + pickle ms | insert µs/node | evict µs/node |")
    lines = [head, "|---|---:|---:|---:|---|---:|---|---|---:|---:|"]
    for r in rows:
        insert, evict = f"{r['insert_us']:.2f}", f"{r['evict_us']:.2f}"
        if ref:
            insert += f" (ref {r['ref_insert_us']:.2f})"
            evict += f" (ref {r['ref_evict_us']:.2f})"
        lines.append(f"| {r['shape']} | {r['nodes']} | {r['tokens']} | {r['listed']} | {ms(r['root'])} "
                     f"| {1e3 * r['root']['cpu_p99']:.3f} | {ms(r['expand'])} | {ms(r['pickle'])} | {insert} | {evict} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--shapes", default="fewshot,agent,distinct")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--compare-ref", help="git revision whose RadixCache to time inserts and evictions against")
    args = ap.parse_args()
    ref_cls = load_radix_cache_at(args.compare_ref) if args.compare_ref else None
    print(f"machine: {machine_line()}\ndate: {datetime.date.today()}\n"
          f"command: python benchmarks/bench_tree_snapshot.py {' '.join(sys.argv[1:])}", flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for shape in args.shapes.split(","):
            rows.append(measure(shape, size, args.repeats, ref_cls))
            print(f"{shape} {size}: done", file=sys.stderr, flush=True)
    print(table(rows, args.compare_ref))


if __name__ == "__main__":
    main()
