"""The context-free grammar backend, on llguidance (an Earley parser over a lazy regex lexer).

It takes what the regex backend cannot: `ebnf` grammars (SGLang's syntax, the GBNF family:
`root ::= expr`, converted to llguidance's Lark dialect), and regexes or JSON schemas whose
automaton would be too large to build (`.{8000}`, a 2000-character `maxLength`): llguidance
builds lexer states lazily, as the output goes, within its own per-step work limits.
Chosen over xgrammar on measured cost (benchmarks/bench_grammar_backends.py): compiles in
1-60 ms where xgrammar took up to 1.2 s on the hostile regexes, masks in 4-70 us per token
(xgrammar 1-14 us: both far below a forward pass), and no dependencies of its own.

What it does not give: a shortest-completion distance (so no budget-aware decoding: a
request that asks for `complete_within_budget` on this backend is a 400) and the character
DFA jump-forward uses (its requests decode token by token).

  llguidance_grammar(key)        -> the grammar text, validated (in a compile worker)
  LLGuidanceGrammar(key, text, backend) -> compiled; new_matcher() per request (scheduler)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from radixlm.runtime.constrained.constraints import GrammarKey, constraint_regex

if TYPE_CHECKING:  # the compile worker imports this module and must not load torch
    import torch


def llguidance_grammar(key: GrammarKey) -> str:
    """The llguidance grammar of a constraint; ValueError with the library's message."""
    from llguidance import LLMatcher

    try:
        if key.kind == "ebnf":
            grammar = LLMatcher.grammar_from_lark(_as_lark(key.spec))
        elif key.kind == "json_schema":
            grammar = LLMatcher.grammar_from_json_schema(
                key.spec, defaults={"whitespace_flexible": key.whitespace != ""})
        else:
            grammar = LLMatcher.grammar_from_regex(constraint_regex(key.kind, key.spec, key.whitespace))
    except (ValueError, RuntimeError, TypeError) as e:
        raise ValueError(f"cannot compile {key.kind}: {e}") from None
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise ValueError(f"cannot compile {key.kind}: {error.strip()}")
    return grammar


def _as_lark(ebnf: str) -> str:
    from llguidance.gbnf_to_lark import GbnfToLarkError, gbnf_to_lark, is_lark_syntax

    if is_lark_syntax(ebnf):
        return ebnf
    try:
        return gbnf_to_lark(ebnf)
    except (GbnfToLarkError, Exception) as e:  # its converter also raises bare Exception
        raise ValueError(f"not a valid EBNF grammar: {e}") from None


class LLGuidanceBackend:
    """The tokenizer llguidance needs, built once per server (~1 s) on its first grammar."""

    def __init__(self, tokenizer, logits_dim: int, stop_ids: tuple[int, ...]) -> None:
        import llguidance.hf

        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, logits_dim)
        self.eos = self.tokenizer.eos_token
        self.stop_ids = frozenset(stop_ids) | {self.eos}


class LLGuidanceGrammar:
    """A compiled llguidance grammar: one prototype matcher, copied per request (~1 us)."""

    regex = None  # no whole-output regex: outputs are checked by the grammar itself
    distances = None
    char_dfa = None

    def __init__(self, key: GrammarKey, grammar: str, backend: LLGuidanceBackend, compile_s: float,
                 size_bytes: int) -> None:
        from llguidance import LLMatcher

        self.key = key
        self.grammar = grammar
        self.backend = backend
        start = time.perf_counter()
        self._prototype = LLMatcher(backend.tokenizer, grammar)
        if self._prototype.is_error():
            raise ValueError(f"cannot compile {key.kind}: {self._prototype.get_error()}")
        self.compile_s = compile_s + time.perf_counter() - start
        self.size_bytes = size_bytes

    def new_matcher(self) -> LLGuidanceMatcher:
        return LLGuidanceMatcher(self, self._prototype.deep_copy())


class LLGuidanceMatcher:
    """The GrammarMatcher protocol (constrained/base.py) over an `LLMatcher`. Any stop id of
    the model ends the output where the grammar may end (llguidance knows one eos)."""

    def __init__(self, grammar: LLGuidanceGrammar, matcher) -> None:
        self.grammar = grammar
        self._m = matcher
        self._accepted: list[int] = []

    def accept_token(self, token_id: int) -> bool:
        if token_id in self.grammar.backend.stop_ids:
            if not self._m.is_accepting() or self._m.is_stopped():
                return False
            token_id = self.grammar.backend.eos
        if self._m.try_consume_tokens([token_id]) != 1:
            return False
        self._accepted.append(token_id)
        return True

    def rollback(self, num_tokens: int) -> None:
        if num_tokens > len(self._accepted):
            raise ValueError(f"cannot roll back {num_tokens} tokens: only {len(self._accepted)} were accepted")
        if num_tokens > 0:
            self._m.rollback(num_tokens)
            del self._accepted[-num_tokens:]

    @property
    def num_accepted(self) -> int:
        return len(self._accepted)

    @property
    def accepted_ids(self) -> list[int]:
        return list(self._accepted)

    def fill_bitmask(self, bitmask: torch.Tensor, row: int, remaining: int | None = None) -> None:
        """`remaining` is ignored: this backend has no distance table."""
        import llguidance.torch

        if self.is_terminated():
            bitmask[row].zero_()
            return
        llguidance.torch.fill_next_token_bitmask(self._m, bitmask, row)
        if self._m.is_accepting():  # every stop id ends the output, as eos does
            for t in self.grammar.backend.stop_ids:
                bitmask[row, t >> 5] |= _bit(t)

    def is_terminated(self) -> bool:
        return self._m.is_stopped()

    def is_accepting(self) -> bool:
        return self._m.is_stopped() or self._m.is_accepting()

    def min_tokens_to_end(self) -> int | None:
        return 0 if self.is_accepting() else None

    def forced_string(self) -> str:
        return ""

    def copy(self) -> LLGuidanceMatcher:
        twin = LLGuidanceMatcher(self.grammar, self._m.deep_copy())
        twin._accepted = list(self._accepted)
        return twin


def _bit(token_id: int) -> int:
    """Bit (token_id % 32) of an int32 word, as the signed value torch stores."""
    b = 1 << (token_id & 31)
    return b - (1 << 32) if b >= 1 << 31 else b
