"""An EBNF grammar as a regex, its recursion unrolled to a bounded depth.

A context-free grammar has no regex when it recurses (`factor ::= "(" expr ")"`), but the
same grammar with each recursive rule followed at most `depth` times along any derivation is
regular, and every string of it is a string of the grammar. On the regex backend such a
grammar gets everything a regex gets: budget-aware decoding (a complete output within
max_new_tokens), jump-forward. The grammar is parsed by llguidance's own GBNF parser (the
converter it uses for its Lark dialect); only the emission of a regex from its syntax tree
is ours. Past the depth a rule reference matches nothing (`None` below), and that
propagates: an alternative drops out, an optional part may only be absent, a required part
makes its sequence match nothing.

    regex = bounded_ebnf_regex('root ::= "(" [0-9]+ ")"', depth=3)
    # ValueError: not GBNF (e.g. Lark syntax), or no string of bounded depth exists
"""

from __future__ import annotations

import re

from radixlm.runtime.constrained.constraints import escape_literal

_LARK_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{1,6}|x[0-9a-fA-F]{2}|.)")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'", "[": "[", "]": "]"}


def bounded_ebnf_regex(ebnf: str, depth: int) -> str:
    from llguidance.gbnf_to_lark import GrammarParser, is_lark_syntax, resolve

    if is_lark_syntax(ebnf):
        raise ValueError("Lark syntax: compiled as a context-free grammar")
    try:
        rules = GrammarParser().parse(ebnf)
        resolve(rules)
    except Exception as e:  # the parser raises bare Exception on bad input
        raise ValueError(f"not a valid EBNF grammar: {e}") from None
    if "start" not in rules:
        raise ValueError("the grammar has no root rule")
    regex = _Emitter(depth).rule(rules["start"])
    if regex is None:
        raise ValueError(f"no output of the grammar nests at most {depth} levels deep")
    return regex


class _Emitter:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.stack: list[str] = []  # rule names being expanded, innermost last

    def rule(self, rule) -> str | None:
        if self.stack.count(rule.name) >= self.depth:
            return None
        self.stack.append(rule.name)
        try:
            return self.node(rule.alternatives)
        finally:
            self.stack.pop()

    def node(self, node) -> str | None:
        kind = type(node).__name__
        if kind == "LiteralNode":
            return escape_literal(_unescape(node.value))
        if kind == "RegexNode":
            return node.rx
        if kind == "RuleRefNode":
            if node.target is None:
                raise ValueError(f"rule {node.name!r} is not defined")
            return self.rule(node.target)
        if kind == "SequenceNode":
            parts = [self.node(n) for n in node.nodes]
            return None if any(p is None for p in parts) else "".join(_group(p) for p in parts)
        if kind == "AlternativeNode":
            options = [o for o in (self.node(n) for n in node.alternatives) if o is not None]
            return "(?:" + "|".join(options) + ")" if options else None
        if kind == "RepetitionNode":
            return self.repetition(node)
        raise ValueError(f"unsupported grammar construct {kind}")

    def repetition(self, node) -> str | None:
        inner = self.node(node.node)
        if inner is None:
            return "" if node.min_times == 0 else None
        hi = "" if node.max_times is None else str(node.max_times)
        return f"(?:{inner}){{{node.min_times},{hi}}}"


def _group(part: str) -> str:
    """A part of a sequence: alternatives are already grouped, so only a bare `a|b` needs it."""
    return f"(?:{part})" if "|" in part and not part.startswith("(?:") else part


def _unescape(value: str) -> str:
    """A literal's text from its Lark-style escapes (`\\"`, `\\n`, `\\u00e9`)."""
    def one(m: re.Match) -> str:
        e = m.group(1)
        if e[0] in "ux" and len(e) > 1:
            return chr(int(e[1:], 16))
        return _SIMPLE.get(e, e)

    return _LARK_ESCAPE.sub(one, value)
