"""EBNF grammars (SGLang's syntax) through every door: /generate, /v1/chat/completions and
the DSL. Their outputs must parse with a reference parser written here, not with the
library that constrained them."""

from __future__ import annotations

import json
import re

import pytest

import radixlm.lang as rl

ARITHMETIC = r'''
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= number | "(" expr ")"
number ::= [0-9]+
'''
TREE = r'''
root ::= node
node ::= "{\"v\":" number ("," "\"kids\":[" node ("," node)* "]")? "}"
number ::= [0-9]+
'''
MAX_TOKENS = 64


def parse_arithmetic(text: str) -> int | float:
    """Recursive descent over the grammar above; ValueError if `text` is not in it."""
    tokens = re.findall(r"[0-9]+|[-+*/()]|\S", text)
    if "".join(tokens) != text:
        raise ValueError(f"stray characters in {text!r}")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"{text!r} ends early")
        pos += 1
        return tokens[pos - 1]

    def factor() -> float:
        t = take()
        if t == "(":
            value = expr()
            if take() != ")":
                raise ValueError(f"unbalanced parenthesis in {text!r}")
            return value
        if not t.isdigit():
            raise ValueError(f"{t!r} is not a number in {text!r}")
        return int(t)

    def term() -> float:
        value = factor()
        while peek() in ("*", "/"):
            op, rhs = take(), factor()
            value = value * rhs if op == "*" else (value / rhs if rhs else float("inf"))
        return value

    def expr() -> float:
        value = term()
        while peek() in ("+", "-"):
            op, rhs = take(), term()
            value = value + rhs if op == "+" else value - rhs
        return value

    value = expr()
    if pos != len(tokens):
        raise ValueError(f"trailing {tokens[pos:]} in {text!r}")
    return value


def check_tree(node: object) -> None:
    """ValueError unless `node` is {"v": int} with an optional non-empty "kids" list of nodes."""
    if not isinstance(node, dict) or not isinstance(node.get("v"), int) or set(node) - {"v", "kids"}:
        raise ValueError(f"not a node: {node!r}")
    kids = node.get("kids", [None])
    if "kids" in node and not (isinstance(kids, list) and kids):
        raise ValueError(f"kids must be a non-empty list: {node!r}")
    for kid in node.get("kids", []):
        check_tree(kid)


def parse_tree(text: str) -> dict:
    node = json.loads(text)
    check_tree(node)
    return node


GRAMMARS = [("arithmetic", ARITHMETIC, parse_arithmetic, "Write an arithmetic expression, like (1+2)*3: "),
            ("tree", TREE, parse_tree, 'Write a small tree, like {"v":1,"kids":[{"v":2}]}: ')]


@pytest.mark.parametrize(("name", "grammar", "parse", "prompt"), GRAMMARS, ids=[g[0] for g in GRAMMARS])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generate_with_an_ebnf_grammar(server, name, grammar, parse, prompt, temperature):
    out = server.generate({"text": prompt, "sampling_params": {
        "ebnf": grammar, "max_new_tokens": MAX_TOKENS, "temperature": temperature, "sampling_seed": 3}})
    assert out["meta_info"]["finish_reason"]["type"] == "stop", out
    parse(out["text"])


@pytest.mark.parametrize(("name", "grammar", "parse", "prompt"), GRAMMARS, ids=[g[0] for g in GRAMMARS])
def test_chat_completions_with_an_ebnf_grammar(server, name, grammar, parse, prompt):
    resp = server.post("/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": prompt}], "ebnf": grammar,
        "max_tokens": MAX_TOKENS, "temperature": 0})
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    parse(choice["message"]["content"])


@pytest.mark.parametrize(("name", "grammar", "parse", "prompt"), GRAMMARS, ids=[g[0] for g in GRAMMARS])
def test_the_dsl_with_an_ebnf_grammar(server, name, grammar, parse, prompt):
    @rl.function
    def program(s):
        s += prompt + rl.gen("out", ebnf=grammar, max_tokens=MAX_TOKENS, temperature=0)

    backend = rl.RuntimeEndpoint(server.url, api_key=server.headers["Authorization"].split()[1])
    state = program.run(backend=backend)
    parse(state["out"])


def test_a_malformed_grammar_is_a_400_with_the_reason(server):
    resp = server.post("/generate", {"text": "x", "sampling_params": {"ebnf": "root ::= missing_rule"}})
    assert resp.status_code == 400 and "missing_rule" in resp.json()["error"]["message"]


def test_budget_completion_is_refused_where_the_grammar_cannot_give_it(server):
    """A grammar in llguidance's Lark syntax is compiled as it is, by llguidance."""
    resp = server.post("/generate", {"text": "x", "sampling_params": {
        "ebnf": 'start: "(" start ")" | "x"', "max_new_tokens": 8, "complete_within_budget": True}})
    assert resp.status_code == 400
    assert "complete_within_budget is not supported" in resp.json()["error"]["message"]


def test_the_reference_parsers_refuse_what_the_grammars_refuse():
    for bad in ("1+", "(1", "1 + 2", "a"):
        with pytest.raises(ValueError):
            parse_arithmetic(bad)
    for bad in ('{"v":1,"kids":[]}', '{"v":"x"}', '{"v":1,"k":2}'):
        with pytest.raises(ValueError):
            parse_tree(bad)
