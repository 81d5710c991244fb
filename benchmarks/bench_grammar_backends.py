"""Context-free grammar backends side by side: llguidance vs xgrammar on the bundled tokenizer.

Chooses the library behind radixlm's CFG backend (ebnf grammars, JSON schemas the regex path
refuses) on what it costs per request: the compile time of a grammar (from its text to a
matcher ready for the first mask, cold, then with the library's own cache warm where it has
one), and the per-token cost of a mask along a valid output (teacher-forced: the tokens of a
reference output are accepted one by one, a mask computed before each).

    python benchmarks/bench_grammar_backends.py [--repeats 5]

Both libraries must be importable (xgrammar is not a radixlm dependency: install it with
`pip install --no-deps xgrammar apache-tvm-ffi` into a scratch virtual environment that sees
this one's packages). Prints the machine, the libraries' versions and one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

ARITH_EBNF = r'''
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= number | "(" expr ")"
number ::= [0-9]+
'''
TREE_EBNF = r'''
root ::= node
node ::= "{\"v\":" number ("," "\"kids\":[" node ("," node)* "]")? "}"
number ::= [0-9]+
'''
RECORD = {"type": "object", "properties": {
    "title": {"type": "string"}, "year": {"type": "integer"}, "rating": {"type": "number"},
    "genres": {"type": "array", "items": {"enum": ["drama", "comedy", "thriller"]}, "maxItems": 3},
    "available": {"type": "boolean"}}, "required": ["title", "year", "rating", "genres", "available"]}
ESSAY = {"type": "object", "properties": {"essay": {"type": "string", "maxLength": 2000}},
         "required": ["essay"]}


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "ebnf" | "json_schema" | "regex"
    spec: str
    output: str  # a valid output, teacher-forced for the per-token mask cost


CASES = [
    Case("arithmetic (ebnf)", "ebnf", ARITH_EBNF, "(12+7)*3-4/(2+1)*10"),
    Case("recursive tree (ebnf)", "ebnf", TREE_EBNF, '{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4}]}]}'),
    Case("record (json_schema)", "json_schema", json.dumps(RECORD),
         '{"title":"Paper Moons","year":1987,"rating":7.5,"genres":["drama","comedy"],"available":true}'),
    Case("essay maxLength 2000 (json_schema)", "json_schema", json.dumps(ESSAY),
         '{"essay":"' + "The quick brown fox jumps over the lazy dog. " * 6 + '"}'),
    # The hostile regexes of the reliability work: a DFA of either explodes when built eagerly.
    Case("regex .{8000}", "regex", ".{8000}", "abc " * 50),
    Case("regex (a|b)*a(a|b){20}", "regex", "(a|b)*a(a|b){20}", "ab" * 40),
    Case("5000 choices", "regex", "(" + "|".join(f"option number {i}" for i in range(5000)) + ")",
         "option number 4321"),
]


def llguidance_backend(tokenizer, vocab_size: int) -> tuple[str, Callable]:
    import llguidance
    import llguidance.hf
    import llguidance.torch
    from llguidance.gbnf_to_lark import gbnf_to_lark

    tok = llguidance.hf.from_tokenizer(tokenizer, vocab_size)

    def compile_case(case: Case):
        grammar = (llguidance.LLMatcher.grammar_from_lark(gbnf_to_lark(case.spec)) if case.kind == "ebnf"
                   else llguidance.LLMatcher.grammar_from_regex(case.spec) if case.kind == "regex"
                   else llguidance.LLMatcher.grammar_from_json_schema(
                       case.spec, defaults={"whitespace_flexible": False}))
        matcher = llguidance.LLMatcher(tok, grammar)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)
        return (lambda: llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0),
                lambda t: matcher.consume_token(t))

    version = getattr(llguidance, "__version__", None) or _dist_version("llguidance")
    return f"llguidance {version}", compile_case


def xgrammar_backend(tokenizer, vocab_size: int) -> tuple[str, Callable]:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)

    def compile_case(case: Case):
        compiled = (compiler.compile_grammar(case.spec) if case.kind == "ebnf"
                    else compiler.compile_regex(case.spec) if case.kind == "regex"
                    else compiler.compile_json_schema(case.spec, any_whitespace=False, separators=(",", ":")))
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        return (lambda: matcher.fill_next_token_bitmask(bitmask), lambda t: matcher.accept_token(t))

    return f"xgrammar {_dist_version('xgrammar')}", compile_case


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def measure(compile_case: Callable, case: Case, token_ids: list[int], repeats: int) -> tuple[float, float]:
    """(median compile ms, median mask us per token)."""
    compile_ms, mask_us = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fill, accept = compile_case(case)
        fill()  # the first mask is part of being ready
        compile_ms.append((time.perf_counter() - start) * 1e3)
        per_token = []
        for t in token_ids:
            s = time.perf_counter()
            fill()
            per_token.append((time.perf_counter() - s) * 1e6)
            if accept(t) is False:
                raise AssertionError(f"{case.name}: the reference output is refused at token {t}")
        mask_us.append(statistics.median(per_token))
    return statistics.median(compile_ms), statistics.median(mask_us)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from radixlm.runtime.model.config import ModelConfig
    from radixlm.runtime.model.loader import resolve_model
    from radixlm.runtime.model.tokenizer import load_tokenizer

    folder = resolve_model(None)
    tokenizer = load_tokenizer(folder)
    vocab_size = ModelConfig.from_folder(folder).vocab_size
    backends = [make(tokenizer, vocab_size) for make in (llguidance_backend, xgrammar_backend)]
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"SmolLM2-135M-Instruct tokenizer ({vocab_size} ids), one thread, {args.repeats} repeats (median)\n")
    print("| grammar | " + " | ".join(f"{n} compile ms | {n} mask us/token" for n, _ in backends) + " |")
    print("|---|" + "---:|---:|" * len(backends))
    for case in CASES:
        ids = tokenizer.encode(case.output, add_special_tokens=False)
        cells = []
        for _, compile_case in backends:
            try:
                c, m = measure(compile_case, case, ids, args.repeats)
                cells += [f"{c:.1f}", f"{m:.0f}"]
            except Exception as exc:  # noqa: BLE001 - a library refusing a grammar is a result
                cells += [f"error: {str(exc)[:40]}", "-"]
        print(f"| {case.name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
