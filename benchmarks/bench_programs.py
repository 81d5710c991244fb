"""SGLang-paper-style program workloads at small scale, radix cache on vs off.

    python benchmarks/bench_programs.py                      # all workloads, in-process engine
    python benchmarks/bench_programs.py --workloads few_shot fork_join --scale 2

Workloads (each a frontend program run with `run_batch`):
- few_shot:   few-shot QA; every item shares a long constant prefix;
- multi_turn: chats whose every turn re-sends the growing conversation;
- fork_join:  tree-of-thought: fork 3 thoughts from a shared problem, then a verdict on them;
- react:      an agent loop; each step picks an action with `select`, then writes an input.

For each workload a fresh Engine runs it with the radix cache enabled, then another with
`disable_radix_cache=True`. Reported: programs/s and the cache hit rate (cached prompt
tokens / prompt tokens over every request the backend served, prefills and scoring included).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import radixlm.lang as rl
from radixlm.lang.backend.engine_backend import EngineBackend

logger = logging.getLogger("bench_programs")

# ---- programs ----------------------------------------------------------------------------

FEW_SHOT = "".join(
    f"Question: A shop sells pencils at {p} cents each. How much do {n} pencils cost?\n"
    f"Answer: {n} pencils cost {n * p} cents.\n\n"
    for p, n in [(5, 3), (12, 4), (7, 9), (20, 6), (3, 11), (15, 2), (9, 8), (4, 25)]
)


@rl.function
def few_shot_qa(s, price, count):
    s += FEW_SHOT
    s += f"Question: A shop sells pencils at {price} cents each. How much do {count} pencils cost?\n"
    s += "Answer:" + rl.gen("answer", max_tokens=12, stop="\n")


SYSTEM = ("You are a patient tutor who explains computer science concepts step by step, "
          "with short examples, and checks the student's understanding after each answer.")
TURNS = ["What is a hash table?", "How are collisions handled?", "What is the load factor?",
         "When should I resize it?"]


@rl.function
def multi_turn_chat(s, topic):
    s += rl.system(SYSTEM + f" Today's topic: {topic}.")
    for question in TURNS:
        s += rl.user(question)
        s += rl.assistant(rl.gen(max_tokens=16))


TOT_INSTRUCTIONS = (
    "You solve puzzles by exploring a tree of thoughts. For every puzzle, first restate the "
    "constraints in your own words, then propose several independent approaches, each in a "
    "single line that starts with the approach number. Do not evaluate an approach while "
    "proposing it. After all approaches are written, compare them on correctness, on the "
    "number of steps they need, and on how easy they are to check by hand. Finally name the "
    "best approach and explain in one sentence why it wins. Keep every line short, avoid "
    "repeating the puzzle text, and never invent constraints that the puzzle does not state."
)


@rl.function
def tree_of_thought(s, problem):
    s += rl.system(TOT_INSTRUCTIONS)
    s += rl.user(problem)
    s += rl.assistant_begin() + "Let me consider three approaches.\n"
    thoughts = s.fork(3)
    thoughts += lambda i: f"Approach {i + 1}:"
    thoughts += rl.gen("thought", max_tokens=16, stop="\n")
    thoughts.join()
    s += "Best approach: " + rl.gen("verdict", max_tokens=12, stop="\n")
    s += rl.assistant_end()


ACTIONS = [" search", " lookup", " calculate", " finish"]
REACT_HEADER = (
    "Answer the question by interleaving Thought, Action and Observation steps. Actions: "
    "search[entity] searches the web, lookup[keyword] finds a sentence in the current page, "
    "calculate[expression] evaluates arithmetic, finish[answer] returns the answer.\n\n"
    "Question: What is the elevation range of the area the eastern sector of the Colorado "
    "orogeny extends into?\nThought 1: I need to search Colorado orogeny.\nAction 1: search"
    "[Colorado orogeny]\nObservation 1: The Colorado orogeny was an episode of mountain "
    "building in Colorado.\nThought 2: It does not mention the eastern sector.\nAction 2: "
    "lookup[eastern sector]\nObservation 2: The eastern sector extends into the High Plains.\n"
    "Thought 3: High Plains rise from around 1,800 to 7,000 ft.\nAction 3: finish[1,800 to "
    "7,000 ft]\n\n"
)


@rl.function
def react_agent(s, question, steps=3):
    s += REACT_HEADER + f"Question: {question}\n"
    for i in range(1, steps + 1):
        s += f"Thought {i}:" + rl.gen(max_tokens=10, stop="\n") + "\n"
        s += f"Action {i}:" + rl.select(f"action_{i}", choices=ACTIONS) + "["
        s += rl.gen(max_tokens=6, stop="]") + "]\n"
        s += f"Observation {i}: (no results)\n"


@dataclass(frozen=True)
class Workload:
    name: str
    program: rl.function
    items: Callable[[int], list[dict]]


WORKLOADS = {
    "few_shot": Workload("few_shot", few_shot_qa,
                         lambda n: [{"price": 3 + i % 17, "count": 2 + i % 13} for i in range(16 * n)]),
    "multi_turn": Workload("multi_turn", multi_turn_chat,
                           lambda n: [{"topic": f"data structures, lesson {i}"} for i in range(4 * n)]),
    "fork_join": Workload("fork_join", tree_of_thought,
                          lambda n: [{"problem": f"Arrange {i + 3} coins so that each touches exactly "
                                                 "two others."} for i in range(4 * n)]),
    "react": Workload("react", react_agent,
                      lambda n: [{"question": f"Which city hosted Olympic Games number {i + 1}?"}
                                 for i in range(4 * n)]),
}

# ---- measurement -------------------------------------------------------------------------


class CountingEngineBackend(EngineBackend):
    """Counts prompt and cached tokens over every request it sends to the engine."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self._lock = threading.Lock()

    def _count(self, results) -> None:
        with self._lock:
            for r in results if isinstance(results, list) else [results]:
                self.prompt_tokens += r["meta_info"].get("prompt_tokens", 0)
                self.cached_tokens += r["meta_info"].get("cached_tokens", 0)

    def _post_generate(self, body):
        results = super()._post_generate(body)
        self._count(results)
        return results

    def _post_generate_stream(self, body):
        last = None
        for event in super()._post_generate_stream(body):
            last = event
            yield event
        if last is not None:
            self._count(last)


@dataclass
class Result:
    workload: str
    radix_cache: bool
    programs: int
    seconds: float
    programs_per_s: float
    cache_hit_rate: float
    errors: int


def run_workload(workload: Workload, scale: int, radix_cache: bool, num_threads: int,
                 server_args: dict) -> Result:
    from radixlm.runtime import Engine

    engine = Engine(disable_radix_cache=not radix_cache, **server_args)
    try:
        backend = CountingEngineBackend(engine)
        items = workload.items(scale)
        warm = workload.program.run(**items[0], backend=backend, temperature=0)  # compile/warm up
        warm.sync()
        engine.flush_cache()
        backend.prompt_tokens = backend.cached_tokens = 0
        start = time.perf_counter()
        states = workload.program.run_batch(items, backend=backend, temperature=0,
                                            num_threads=num_threads, progress_bar=True)
        for st in states:
            st.sync()
        seconds = time.perf_counter() - start
        errors = sum(st.error() is not None for st in states)
        hit = backend.cached_tokens / backend.prompt_tokens if backend.prompt_tokens else 0.0
        return Result(workload.name, radix_cache, len(items), round(seconds, 2),
                      round(len(items) / seconds, 3), round(hit, 3), errors)
    finally:
        engine.shutdown()


def markdown_table(results: list[Result]) -> str:
    lines = ["| workload | programs | cache off (prog/s) | cache on (prog/s) | speedup | hit rate on | hit rate off |",
             "|---|---|---|---|---|---|---|"]
    by_name: dict[str, dict[bool, Result]] = {}
    for r in results:
        by_name.setdefault(r.workload, {})[r.radix_cache] = r
    for name, pair in by_name.items():
        on, off = pair.get(True), pair.get(False)
        if on is None or off is None:
            continue
        speedup = on.programs_per_s / off.programs_per_s if off.programs_per_s else float("nan")
        lines.append(f"| {name} | {on.programs} | {off.programs_per_s:.2f} | {on.programs_per_s:.2f} | "
                     f"{speedup:.2f}x | {on.cache_hit_rate:.0%} | {off.cache_hit_rate:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--scale", type=int, default=1, help="multiplies the number of programs")
    parser.add_argument("--num-threads", type=int, default=64)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--max-total-tokens", type=int, default=60000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    server_args = {"model_path": args.model_path, "max_total_tokens": args.max_total_tokens,
                   "device": args.device}
    results = []
    for name in args.workloads:
        for radix_cache in (False, True):
            result = run_workload(WORKLOADS[name], args.scale, radix_cache, args.num_threads, server_args)
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
    print(markdown_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)


if __name__ == "__main__":
    main()
