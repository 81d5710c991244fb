"""A tool-calling agent loop: the model picks a tool, Python runs it, the result goes back
into the conversation, until the model answers in text (at most MAX_STEPS calls).

Every call the model writes names one of the tools and has arguments that validate against
the tool's signature (the server constrains it), so `TOOLS[call.name](**call.arguments)`
never fails on a malformed call.

    python examples/tool_agent.py                                   # in-process engine
    python examples/tool_agent.py --url http://127.0.0.1:30000      # a running radixlm serve
"""

from __future__ import annotations

import ast
import operator

from common import backend_from_args

import radixlm.lang as rl

MAX_STEPS = 3
POPULATIONS = {"paris": "2.1 million", "rome": "2.8 million", "tokyo": "14 million"}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression of numbers, + - * / and parentheses."""
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        raise ValueError("only numbers and + - * / are allowed")

    try:
        return str(value(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as e:
        return f"error: {e}"


def population(city: str) -> str:
    """The population of a city."""
    return POPULATIONS.get(city.strip().lower(), "unknown")


TOOLS = {f.__name__: f for f in (calculate, population)}


@rl.function
def agent(s, question: str):
    s += rl.system(rl.describe_tools(list(TOOLS.values())) + "\nAfter the tool results, answer the user.")
    s += rl.user(question)
    for step in range(MAX_STEPS + 1):
        last = step == MAX_STEPS
        s += rl.assistant(rl.gen(f"step{step}", tools=list(TOOLS.values()), max_tokens=64, temperature=0,
                                 tool_choice="none" if last else "required" if step == 0 else "auto"))
        call = s[f"step{step}"]
        if last or not call.is_call:
            s.set_var("answer", str(call))
            return
        s += rl.user(f"<tool_response>\n{TOOLS[call.name](**call.arguments)}\n</tool_response>")


def run(question: str) -> dict:
    state = agent.run(question=question)
    if state.error() is not None:
        raise state.error()
    calls = [state[f"step{i}"] for i in range(MAX_STEPS + 1) if f"step{i}" in state]
    return {"question": question, "calls": [(c.name, c.arguments) for c in calls if c.is_call],
            "answer": state["answer"]}


def main() -> None:
    backend, _ = backend_from_args(__doc__)
    for question in ["What is 12 times 7 plus 5?", "How many people live in Tokyo?"]:
        print(run(question))
    backend.shutdown()


if __name__ == "__main__":
    main()
