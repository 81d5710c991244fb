"""The program IR: the expression nodes a program appends to its state (`s += expr`).

Nodes are plain data; the interpreter (`interpreter.py`) executes them against a backend and
the tracer (`tracer.py`) records them. Names and regex constants mirror `sglang.lang.ir`
(docs/wire-protocol.md A.1, A.3), so user programs that import them keep working.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""  # a double-quoted run of word characters, digits and whitespace

# Fields a gen may override; `None` on a gen means "inherit from run()" (A.4).
OVERRIDABLE_FIELDS = (
    "max_new_tokens", "min_new_tokens", "n", "stop", "stop_token_ids", "stop_regex",
    "temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty",
    "ignore_eos", "return_logprob", "logprob_start_len", "top_logprobs_num",
    "return_text_in_logprobs", "dtype", "regex", "json_schema", "ebnf",
    "complete_within_budget", "end_on_reject", "structural_tag", "no_stop_trim",
)
# radixlm's own fields: sent only when set, so a body is SGLang's exactly otherwise.
EXTENSION_FIELDS = ("ebnf", "complete_within_budget", "end_on_reject", "structural_tag", "no_stop_trim")


@dataclass
class SglSamplingParams:
    """Sampling parameters of one gen after resolution (A.4); `dtype` is mapped by backends."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    n: int = 1
    stop: str | list[str] | tuple = ()
    stop_token_ids: list[int] | tuple = ()
    stop_regex: str | list[str] | tuple = ()
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    ignore_eos: bool = False
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None
    json_schema: str | None = None
    dtype: Any = None
    regex: str | None = None
    ebnf: str | None = None  # a context-free grammar (docs/structured-output.md)
    complete_within_budget: bool | None = None
    end_on_reject: bool | None = None
    structural_tag: str | None = None  # a tools gen's triggered constraint (lang/tools.py)
    no_stop_trim: bool | None = None

    def clone(self) -> SglSamplingParams:
        return copy.deepcopy(self)

    def merged(self, overrides: SglSamplingParams) -> SglSamplingParams:
        """A copy of self with every non-None overridable field of `overrides` applied."""
        out = self.clone()
        for name in OVERRIDABLE_FIELDS:
            value = getattr(overrides, name)
            if value is not None:
                setattr(out, name, copy.deepcopy(value))
        return out

    def add_stop_strings(self, extra: tuple[str, ...] | list[str]) -> None:
        """Append stop strings, turning `stop` into a list first (A.4 step 3)."""
        self.stop = _as_list(self.stop) + list(extra)

    def logprob_kwargs(self) -> dict[str, Any]:
        """The top-level logprob keys of a /generate body, each only when not None (B.3)."""
        names = ("return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


def unset_sampling_params(**values: Any) -> SglSamplingParams:
    """A params object with every overridable field None except the given ones (a gen's own)."""
    params = SglSamplingParams(**{name: None for name in OVERRIDABLE_FIELDS})
    for name, value in values.items():
        setattr(params, name, value)
    return params


def _as_list(value: Any) -> list:
    if value is None or value == ():
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class SglExpr:
    """Base of every IR node. `a + b` builds an SglExprList; plain strings become constants."""

    node_ids = 0

    def __init__(self) -> None:
        self.node_id = SglExpr.node_ids
        SglExpr.node_ids += 1
        self.prev_node: SglExpr | None = None
        self.pid: int | None = None

    def __add__(self, other: Any) -> SglExprList:
        return SglExprList([self, as_expr(other)])

    def __radd__(self, other: Any) -> SglExprList:
        return SglExprList([as_expr(other), self])

    def print_graph_dfs(self) -> str:
        """Print (and return) the chain of nodes that ends at this one, oldest first."""
        chain = []
        node: SglExpr | None = self
        while node is not None:
            chain.append(node)
            node = node.prev_node
        text = "\n".join(f"%{n.node_id} = {n!r}" for n in reversed(chain))
        print(text)
        return text


def as_expr(value: Any) -> SglExpr:
    """`value` as a node: strings become constant text; anything else but an SglExpr is an error."""
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglConstantText(value)
    raise TypeError(f"cannot append a {type(value).__name__} to a program; use str or an sgl expression")


class SglExprList(SglExpr):
    def __init__(self, expr_list: list[SglExpr]) -> None:
        super().__init__()
        self.expr_list = [as_expr(e) for e in expr_list]

    def __add__(self, other: Any) -> SglExprList:
        return SglExprList([*self.expr_list, as_expr(other)])

    def __repr__(self) -> str:
        return f"ExprList({self.expr_list})"


class SglConstantText(SglExpr):
    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


class SglGen(SglExpr):
    def __init__(self, name: str | None, sampling_params: SglSamplingParams,
                 parse: Any = None) -> None:
        super().__init__()
        self.name = name
        self.sampling_params = sampling_params
        self.parse = parse  # str -> the variable's value (a tools gen: ToolCall); None: the text

    def __repr__(self) -> str:
        return f"Gen({self.name!r})"


class SglSelect(SglExpr):
    def __init__(self, name: str | None, choices: list[str], temperature: float,
                 choices_method: Any) -> None:
        super().__init__()
        self.name = name
        self.choices = choices
        self.temperature = temperature
        self.choices_method = choices_method

    def __repr__(self) -> str:
        return f"Select({self.name!r}, choices={self.choices})"


class SglRoleBegin(SglExpr):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def __repr__(self) -> str:
        return f"RoleBegin({self.role})"


class SglRoleEnd(SglExpr):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def __repr__(self) -> str:
        return f"RoleEnd({self.role})"


class SglVarScopeBegin(SglExpr):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __repr__(self) -> str:
        return f"VarScopeBegin({self.name!r})"


class SglVarScopeEnd(SglExpr):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __repr__(self) -> str:
        return f"VarScopeEnd({self.name!r})"


class SglVariable(SglExpr):
    """A reference to another state's variable; appending it appends the value once produced."""

    def __init__(self, name: str, source: Any = None) -> None:
        super().__init__()
        self.name = name
        self.source = source  # a StreamExecutor, or None while tracing

    def __repr__(self) -> str:
        return f"Variable({self.name!r})"


class SglArgument(SglExpr):
    """An abstract program argument used while tracing; it refuses f-string formatting."""

    def __init__(self, name: str, value: Any = None) -> None:
        super().__init__()
        self.name = name
        self.value = value

    def __format__(self, spec: str) -> str:
        raise TypeError(f"cannot format the traced argument {self.name!r}")

    def __repr__(self) -> str:
        return f"Argument({self.name!r})"


class SglCommitLazy(SglExpr):
    """Prefill the state's current text (max_new_tokens 0) so later requests reuse it."""

    def __repr__(self) -> str:
        return "CommitLazy()"


class SglConcateAndAppend(SglExpr):
    def __init__(self, states: list[Any]) -> None:
        super().__init__()
        self.states = states

    def __repr__(self) -> str:
        return f"ConcateAndAppend({len(self.states)} states)"


class SglFork(SglExpr):
    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def __repr__(self) -> str:
        return f"Fork({self.number})"


class SglSeparateReasoning(SglExpr):
    """Split `<think>...</think>` out of the previous gen/select variable (A.3)."""

    def __init__(self, model_type: str | None, expr: SglExpr | None = None) -> None:
        super().__init__()
        self.model_type = model_type
        self.expr = expr
        self.name = _last_var_name(expr)

    def __repr__(self) -> str:
        return f"SeparateReasoning({self.name!r})"


def _last_var_name(expr: SglExpr | None) -> str | None:
    if isinstance(expr, (SglGen, SglSelect)):
        return expr.name
    if isinstance(expr, SglExprList):
        for e in reversed(expr.expr_list):
            if (name := _last_var_name(e)) is not None:
                return name
    return None


@dataclass(frozen=True)
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)
