"""JSON-extraction benchmark of the constrained-decoding layer (no model needed).

Workload: `--requests` documents (default 64), each a 6-property record (the JSON a model
would extract from a short passage), under one schema with compact whitespace. Decoding is
teacher-forced: where a token must be sampled, the tokenizer's own next token of the target
document stands in for the model (its idealisation); the grammar mask must allow it. Reports:
  * grammar compile cost, cache miss vs hit, and vocabulary build time;
  * forward passes per request with jump-forward off and on (a jump's tokens ride in the
    extend pass that samples the next token, so a pass = one sampled token);
  * per-step CPU costs: fill_bitmask, accept_token, try_jump_forward, bitmask apply to a
    [batch, vocab] logits tensor.
With --e2e, the same workload runs through runtime.Engine on the real model, each system in
its own process: constrained with jump-forward, constrained without it, and unconstrained
decoding of the same output lengths (ignore_eos, each request as long as its constrained
output); output tokens/s, forward passes and latency per request.

    python benchmarks/bench_json.py [--requests 64] [--whitespace ""] [--e2e]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from radixlm.runtime.constrained import (
    GrammarManager,
    allocate_token_bitmask,
    apply_token_bitmask_,
    try_jump_forward,
    unpack_bitmask,
)
from radixlm.runtime.constrained.vocabulary import build_token_vocab
from radixlm.runtime.model.loader import resolve_model
from radixlm.runtime.model.tokenizer import load_tokenizer

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "director": {"type": "string"},
        "year": {"type": "integer"},
        "rating": {"type": "number"},
        "genres": {"type": "array", "items": {"enum": ["drama", "comedy", "thriller", "sci-fi"]},
                   "maxItems": 3},
        "available": {"type": "boolean"},
    },
    "required": ["title", "director", "year", "rating", "genres", "available"],
}
TITLES = ["The Long Voyage", "Midnight Garden", "Paper Moons", "Iron Coast", "Quiet Harbor",
          "Glass Towers", "Northern Lights", "Salt and Stone"]
DIRECTORS = ["Ana Ruiz", "Kenji Mori", "Lena Berg", "Omar Haddad", "Chloe Martin", "Ivo Petrov"]


def documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        record = {"title": rng.choice(TITLES), "director": rng.choice(DIRECTORS),
                  "year": rng.randint(1950, 2024), "rating": round(rng.uniform(1, 10), 1),
                  "genres": rng.sample(SCHEMA["properties"]["genres"]["items"]["enum"],
                                       rng.randint(1, 3)),
                  "available": rng.random() < 0.5}
        docs.append(json.dumps(record, separators=(",", ":")))
    return docs


class Timer:
    def __init__(self) -> None:
        self.samples: list[float] = []

    def __call__(self, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.samples.append(time.perf_counter() - start)
        return result

    def summary(self) -> str:
        us = sorted(s * 1e6 for s in self.samples)
        if not us:
            return "n/a"
        pick = lambda q: us[min(len(us) - 1, int(q * len(us)))]  # noqa: E731
        return (f"mean {statistics.fmean(us):.1f} us, p50 {pick(0.5):.1f}, p90 {pick(0.9):.1f}, "
                f"p99 {pick(0.99):.1f} ({len(us)} calls)")


MODES = ("constrained, jump-forward on", "constrained, budget completion off", "constrained, jump-forward off",
         "unconstrained")


def compile_costs(vocab, whitespace: str) -> None:
    """Compile time and memory of the benchmark schema, with and without the distance table
    (fresh managers: no cache), median of 5."""
    for distances in (True, False):
        times, size = [], 0
        for _ in range(5):
            manager = GrammarManager(vocab, logits_dim=vocab.size, whitespace_pattern=whitespace,
                                     distances=distances, max_workers=1)
            matcher = manager.wait(manager.submit("json_schema", SCHEMA))
            times.append(matcher.grammar.compile_s)
            size = matcher.grammar.size_bytes
            table = matcher.grammar.distances.size_bytes() if distances else 0
            manager.shutdown()
        print(f"compile in a worker, distance table {'on ' if distances else 'off'}: "
              f"{statistics.median(times) * 1e3:.0f} ms, {size >> 10} KiB (table {table >> 10} KiB)")


def budget_mask_costs(manager, tokenizer, handle, timers_out: dict) -> None:
    """fill_bitmask with a loose budget (the index's own mask) and a tight one (the distance
    table's tokens), at every state along a teacher-forced document."""
    mask = allocate_token_bitmask(1, manager.logits_dim)
    for doc in documents(8):
        matcher = manager.poll(handle)
        ids = tokenizer.encode(doc, add_special_tokens=False)
        for t in ids:
            timers_out["loose"](matcher.fill_bitmask, mask, 0, 1000)
            timers_out["tight"](matcher.fill_bitmask, mask, 0, matcher.min_tokens_to_end() + 1)
            if not matcher.accept_token(t):
                break


def decode(manager, tokenizer, handle, doc: str, jump: bool, timers: dict) -> tuple[int, int]:
    """Teacher-forced constrained decode of `doc`: (forward passes, output tokens)."""
    matcher = manager.poll(handle)
    mask = allocate_token_bitmask(1, manager.logits_dim)
    text, passes = b"", 0
    token_bytes = manager.vocab.token_bytes
    while not matcher.is_terminated():
        if jump and (jf := timers["jump"](try_jump_forward, matcher, tokenizer, 64)):
            text += jf.text.encode()
        timers["fill"](matcher.fill_bitmask, mask, 0)
        rest = doc.encode()[len(text):]
        token = _model_stand_in(tokenizer, rest, unpack_bitmask(mask, manager.logits_dim)[0],
                                manager.vocab)
        assert timers["accept"](matcher.accept_token, token)
        passes += 1
        if token in manager.vocab.stop_ids:
            break
        text += token_bytes[token]
    assert text.decode() == doc, (text, doc)
    return passes, len(matcher.accepted_ids)


def _model_stand_in(tokenizer, rest: bytes, allowed: torch.Tensor, vocab) -> int:
    """The tokenizer's next token of the target text, if allowed; else the longest allowed
    token that continues it; eos at the end."""
    if not rest:
        return vocab.eos_id
    first = tokenizer.encode(rest.decode("utf-8", "ignore"), add_special_tokens=False)[0]
    if allowed[first] and rest.startswith(vocab.token_bytes[first]):
        return first
    fits = [t for t in allowed.nonzero().flatten().tolist()
            if vocab.token_bytes[t] and rest.startswith(vocab.token_bytes[t])]
    return max(fits, key=lambda t: len(vocab.token_bytes[t]))


def e2e_prompts(tokenizer, docs: list[str]) -> list[str]:
    """A short passage per record (the facts of the target JSON, in prose) to extract from."""
    prompts = []
    for doc in docs:
        d = json.loads(doc)
        passage = (f"{d['title']} is a film directed by {d['director']} in {d['year']}. It is rated "
                   f"{d['rating']} and counts as {', '.join(d['genres']) or 'unclassified'}; "
                   f"{'it can be streamed' if d['available'] else 'it is not available'}.")
        msg = f"Extract title, director, year, rating, genres and availability as JSON.\n\n{passage}"
        prompts.append(tokenizer.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                                     add_generation_prompt=True))
    return prompts


def e2e_one(mode: str, prompts: list[str], max_new: list[int]) -> dict:
    """One mode over all prompts; `max_new` per prompt (unconstrained runs get each request's
    constrained output length, with ignore_eos, so both decode the same number of tokens)."""
    from radixlm.runtime import Engine

    with Engine(max_total_tokens=40000, disable_jump_forward=mode == "constrained, jump-forward off",
                disable_budget_completion=mode == "constrained, budget completion off") as e:
        e.generate(prompts[0], {"max_new_tokens": 64, "json_schema": json.dumps(SCHEMA)})  # compile (budget: >= shortest)
        e.call_in_loop(lambda s: setattr(s, "stats", type(s.stats)()))
        extra = {"ignore_eos": True} if mode == "unconstrained" else {"json_schema": json.dumps(SCHEMA)}
        params = [{"max_new_tokens": n, "temperature": 0, **extra} for n in max_new]
        start = time.perf_counter()
        outs = e.generate(prompts, params)
        seconds = time.perf_counter() - start
        stats = e.call_in_loop(lambda s: s.stats)
    lengths = [o["meta_info"]["completion_tokens"] for o in outs]
    valid = sum(_valid(o["text"]) for o in outs) if mode != "unconstrained" else None
    return {"seconds": seconds, "tokens": sum(lengths), "steps": stats.steps,
            "jumped": stats.jumped_tokens + stats.draft_tokens_accepted,  # not sampled in a pass of their own
            "latency": statistics.fmean(o["meta_info"]["e2e_latency"] for o in outs), "valid": valid,
            "lengths": lengths}


def _e2e_in_child(mode: str, prompts: list[str], max_new: list[int]) -> dict:
    import os
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from child import run_child

    with tempfile.TemporaryDirectory() as d:
        wpath, rpath = os.path.join(d, "w.json"), os.path.join(d, "r.json")
        Path(wpath).write_text(json.dumps({"mode": mode, "prompts": prompts, "max_new": max_new}))
        result = run_child([sys.executable, str(Path(__file__).resolve()), "--e2e-one", wpath, rpath], rpath)
    if "error" in result:
        raise SystemExit(result["error"])
    return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median time (its other figures are deterministic under greedy)."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2] | {"all_seconds": [r["seconds"] for r in runs]}


def _valid(text: str) -> bool:
    try:
        import jsonschema

        jsonschema.validate(json.loads(text), SCHEMA)
        return True
    except Exception:
        return False


def run_e2e(n: int, repeats: int) -> None:
    """Each mode in its own process; the modes alternate `repeats` times (this machine's speed
    drifts over minutes, so back-to-back single runs can favour one mode), medians reported."""
    tokenizer = load_tokenizer(resolve_model(None))
    prompts = e2e_prompts(tokenizer, documents(n))
    runs: dict[str, list[dict]] = {}
    budget = 96
    for _ in range(repeats):
        for mode in MODES:
            max_new = [budget] * n
            if mode == "unconstrained":  # each request as long as its constrained output
                max_new = runs["constrained, jump-forward off"][0]["lengths"]
            runs.setdefault(mode, []).append(_e2e_in_child(mode, prompts, max_new))
    results = {mode: _median_run(rs) for mode, rs in runs.items()}
    print(f"\n{n} JSON-extraction requests, 6-property schema, greedy, max {budget} new tokens, "
          f"median of {repeats} alternating runs\n")
    print("| mode | total s, median (each run) | output tok/s | forward passes / request | mean latency s | valid JSON |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, r in results.items():
        passes = (r["tokens"] - r["jumped"]) / n
        valid = "—" if r["valid"] is None else f"{r['valid']}/{n}"
        each = ", ".join(f"{x:.1f}" for x in r["all_seconds"])
        print(f"| {mode} | {r['seconds']:.1f} ({each}) | {r['tokens'] / r['seconds']:.1f} | {passes:.1f} | "
              f"{r['latency']:.2f} | {valid} |")
    on, off = results["constrained, jump-forward on"], results["constrained, jump-forward off"]
    free = results["unconstrained"]
    # Jump-forward re-tokenizes forced text canonically, so the same JSON can take fewer
    # tokens than token-by-token decoding: tok/s understates it; time for the same requests does not.
    print(f"\njump-forward throughput gain: {(on['tokens'] / on['seconds']) / (off['tokens'] / off['seconds']):.2f}x "
          f"in output tok/s, {off['seconds'] / on['seconds']:.2f}x in time for the same {n} requests "
          f"(per round: {', '.join(f'{b:.2f}' for b in _round_ratios(runs))}); "
          f"forward passes saved: {1 - (on['tokens'] - on['jumped']) / (off['tokens'] - off['jumped']):.0%}; "
          f"constrained (no jump) vs unconstrained tok/s: "
          f"{(off['tokens'] / off['seconds']) / (free['tokens'] / free['seconds']):.2f}x")
    nob = results["constrained, budget completion off"]
    print(f"budget completion on vs off: {(on['tokens'] / on['seconds']) / (nob['tokens'] / nob['seconds']):.3f}x "
          f"in output tok/s (per round, time off/on: "
          f"{', '.join(f'{b:.2f}' for b in _round_ratios(runs, 'constrained, budget completion off'))})")


def _round_ratios(runs: dict[str, list[dict]], base: str = "constrained, jump-forward off") -> list[float]:
    """Per alternating round: time of `base` / time with jump-forward (and budget completion) on."""
    on, off = runs["constrained, jump-forward on"], runs[base]
    return [b["seconds"] / a["seconds"] for a, b in zip(on, off)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--whitespace", default="", help="JSON whitespace pattern")
    parser.add_argument("--e2e", action="store_true", help="run the model end to end through Engine")
    parser.add_argument("--repeats", type=int, default=3, help="--e2e: alternating runs per mode")
    parser.add_argument("--e2e-one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.e2e_one:
        with open(args.e2e_one[0]) as f:
            w = json.load(f)
        with open(args.e2e_one[1], "w") as f:
            json.dump(e2e_one(w["mode"], w["prompts"], w["max_new"]), f)
        return
    if args.e2e:
        run_e2e(args.requests, args.repeats)
        return

    tokenizer = load_tokenizer(resolve_model(None))
    start = time.perf_counter()
    vocab = build_token_vocab(tokenizer, (tokenizer.eos_token_id,))
    print(f"vocabulary build: {time.perf_counter() - start:.2f} s ({vocab.size} ids)")
    compile_costs(vocab, args.whitespace)
    manager = GrammarManager(vocab, logits_dim=vocab.size, whitespace_pattern=args.whitespace)

    start = time.perf_counter()
    handle = manager.submit("json_schema", SCHEMA)
    manager.wait(handle)
    miss = time.perf_counter() - start
    start = time.perf_counter()
    hit_handle = manager.submit("json_schema", json.dumps(SCHEMA))
    manager.poll(hit_handle)
    hit = time.perf_counter() - start
    grammar = manager.poll(handle).grammar
    print(f"compile (miss): {miss * 1e3:.0f} ms, automaton {grammar.size_bytes >> 10} KiB; "
          f"cache hit submit+poll: {hit * 1e6:.0f} us")

    docs = documents(args.requests)
    results = {}
    for jump in (False, True):
        timers = {name: Timer() for name in ("fill", "accept", "jump")}
        start = time.perf_counter()
        runs = [decode(manager, tokenizer, handle, doc, jump, timers) for doc in docs]
        elapsed = time.perf_counter() - start
        passes = statistics.fmean(p for p, _ in runs)
        tokens = statistics.fmean(t for _, t in runs)
        results[jump] = passes
        grammar_s = sum(sum(t.samples) for t in timers.values()) / len(docs)
        print(f"\njump-forward {'on' if jump else 'off'}: {passes:.1f} forward passes/request, "
              f"{tokens:.1f} output tokens/request; grammar work {grammar_s * 1e3:.2f} "
              f"ms/request (whole loop with the stand-in model {elapsed / len(docs) * 1e3:.0f} ms)")
        for name, timer in timers.items():
            if timer.samples:
                print(f"  {name:7s} {timer.summary()}")
    print(f"\nforward passes saved by jump-forward: {1 - results[True] / results[False]:.0%}")
    budget_timers = {"loose": Timer(), "tight": Timer()}
    budget_mask_costs(manager, tokenizer, handle, budget_timers)
    print("fill_bitmask with a budget, per state of 8 documents:")
    for name, timer in budget_timers.items():
        print(f"  {name:7s} {timer.summary()}")

    logits = torch.randn(8, vocab.size)
    mask = allocate_token_bitmask(8, vocab.size)
    apply_timer = Timer()
    for _ in range(200):
        apply_timer(apply_token_bitmask_, logits, mask)
    print(f"apply_token_bitmask_ [8, {vocab.size}] on CPU: {apply_timer.summary()}")
    manager.shutdown()


if __name__ == "__main__":
    main()
