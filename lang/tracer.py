"""Tracing: run a program body against a recorder instead of a backend (docs/wire-protocol.md A.2).

`trace_program` records every node with abstract arguments (SglArgument); the nodes form a
chain through `prev_node` (`tracer.last_node.print_graph_dfs()`). `extract_prefix_by_tracing`
stops at the first node that is not constant text and returns the constant prefix, which
`run_batch` and `cache()` send once so that every item hits the radix cache.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from radixlm.lang.chat_template import ChatTemplate, get_chat_template
from radixlm.lang.ir import (
    SglArgument,
    SglConcateAndAppend,
    SglConstantText,
    SglExpr,
    SglExprList,
    SglFork,
    SglGen,
    SglRoleBegin,
    SglRoleEnd,
    SglSelect,
    SglVariable,
    SglVarScopeBegin,
    as_expr,
)
from radixlm.lang.roles import RoleMethods


class StopTracing(Exception):
    """Raised inside a prefix-only trace at the first non-constant node."""


_current_tracer: contextvars.ContextVar[TracerProgramState | None] = contextvars.ContextVar(
    "radixlm_tracer", default=None)


@contextmanager
def tracing_scope(tracer: TracerProgramState) -> Iterator[None]:
    token = _current_tracer.set(tracer)
    try:
        yield
    finally:
        _current_tracer.reset(token)


def current_tracer() -> TracerProgramState | None:
    return _current_tracer.get()


class TracerProgramState(RoleMethods):
    """Records the nodes a program appends; mirrors ProgramState's surface."""

    def __init__(self, chat_template: ChatTemplate, arguments: dict[str, Any],
                 only_trace_prefix: bool = False, backend: Any = None) -> None:
        self.pid = uuid.uuid4().hex
        self.chat_template = chat_template
        self.arguments = arguments
        self.only_trace_prefix = only_trace_prefix
        self.backend = backend
        self.nodes: list[SglExpr] = []
        self.last_node: SglExpr | None = None
        self.variables: dict[Any, Any] = {}
        self.ret_value: Any = None
        self.cur_role: str | None = None
        self.messages_: list[dict] = []
        self.child_states: list[TracerProgramState] = []

    # ---- recording ------------------------------------------------------------------------
    def _append_node(self, node: SglExpr) -> None:
        node.prev_node = self.last_node
        node.pid = self.pid
        self.last_node = node
        self.nodes.append(node)

    def __iadd__(self, other: Any) -> TracerProgramState:
        if other is None:
            raise ValueError("tried to append None to the program state")
        self._execute(as_expr(other))
        return self

    def _execute(self, expr: SglExpr) -> None:
        if isinstance(expr, SglExprList):
            for e in expr.expr_list:
                self._execute(e)
        elif isinstance(expr, SglConstantText):
            self._append_node(expr)
        elif isinstance(expr, SglRoleBegin):
            self._role_begin(expr.role)
        elif isinstance(expr, SglRoleEnd):
            self._role_end(expr.role)
        else:
            if self.only_trace_prefix:
                raise StopTracing
            self._append_node(expr)
            if isinstance(expr, (SglGen, SglSelect, SglVarScopeBegin)):
                self.variables[expr.name] = SglVariable(expr.name, None)

    def _role_begin(self, role: str) -> None:
        # Role markup is constant text, so it belongs to the cacheable prefix.
        if not self.messages_ and role != "system" and self.chat_template.default_system_prompt:
            self._role_begin("system")
            self._append_node(SglConstantText(self.chat_template.default_system_prompt))
            self._role_end("system")
        self.cur_role = role
        prefix, _ = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._append_node(SglConstantText(prefix))

    def _role_end(self, role: str) -> None:
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._append_node(SglConstantText(suffix))
        self.messages_.append({"role": role, "content": None})
        self.cur_role = None

    def _run(self, node: SglExpr) -> None:
        self._execute(node)

    def fork(self, size: int = 1, position_ids_offset: Any = None) -> TracerStateGroup:
        if self.only_trace_prefix:
            raise StopTracing
        self._append_node(SglFork(size))
        children = []
        for _ in range(int(size)):
            child = TracerProgramState(self.chat_template, self.arguments, False, self.backend)
            child.last_node = self.last_node
            child.variables = dict(self.variables)
            children.append(child)
        self.child_states.extend(children)
        return TracerStateGroup(children, self)

    # ---- reads return abstract values -----------------------------------------------------
    def __getitem__(self, name: Any) -> Any:
        if self.only_trace_prefix:
            raise StopTracing
        return self.variables.get(name, SglVariable(name, None))

    def __setitem__(self, name: Any, value: Any) -> None:
        self.variables[name] = value

    def __contains__(self, name: Any) -> bool:
        return name in self.variables

    def get_var(self, name: Any) -> Any:
        return self[name]

    def get_meta_info(self, name: Any, timeout: float | None = None) -> Any:
        if self.only_trace_prefix:
            raise StopTracing
        return None

    def text(self) -> str:
        if self.only_trace_prefix:
            raise StopTracing
        return "".join(n.value for n in self.nodes if isinstance(n, SglConstantText))

    def messages(self) -> list[dict]:
        return list(self.messages_)

    def sync(self) -> None:
        """Nothing runs while tracing."""

    def error(self) -> None:
        return None

    def flatten_nodes(self) -> list[SglExpr]:
        return list(self.nodes)


class TracerStateGroup:
    def __init__(self, states: list[TracerProgramState], src_state: TracerProgramState) -> None:
        self.states = states
        self.src_state = src_state

    def __getitem__(self, i: int) -> TracerProgramState:
        return self.states[i]

    def __setitem__(self, i: int, value: TracerProgramState) -> None:
        pass

    def __len__(self) -> int:
        return len(self.states)

    def __iadd__(self, other: Any) -> TracerStateGroup:
        if isinstance(other, (list, tuple)):
            items = list(other)
        elif callable(other) and not isinstance(other, SglExpr):
            items = [other(i) for i in range(len(self.states))]
        else:
            items = [other] * len(self.states)
        for state, item in zip(self.states, items):
            state += item
        return self

    def join(self, mode: str = "gather_variable") -> None:
        if mode == "concate_and_append":
            self.src_state._append_node(SglConcateAndAppend(self.states))
            return
        for child in self.states:
            for name, value in child.variables.items():
                self.src_state.variables.setdefault(name, value)


def _chat_template_of(backend: Any) -> ChatTemplate:
    if backend is None:
        return get_chat_template("default")
    from radixlm.lang.backend.base import resolve_backend

    return resolve_backend(backend).get_chat_template()


def trace_program(program: Any, arguments: dict[str, Any], backend: Any = None) -> TracerProgramState:
    """Run `program`'s body on a tracer; unspecified arguments become SglArgument placeholders."""
    args = {name: SglArgument(name) for name in program.arg_names}
    args.update(program.bind_arguments)
    args.update(arguments)
    tracer = TracerProgramState(_chat_template_of(backend), args, only_trace_prefix=False,
                                backend=backend)
    with tracing_scope(tracer):
        tracer.ret_value = program.func(tracer, **args)
    return tracer


def extract_prefix_by_tracing(program: Any, backend: Any) -> str:
    """The program's leading constant text (role markup included), given abstract arguments."""
    args = {name: SglArgument(name) for name in program.arg_names}
    args.update(program.bind_arguments)
    tracer = TracerProgramState(_chat_template_of(backend), args, only_trace_prefix=True,
                                backend=backend)
    try:
        with tracing_scope(tracer):
            tracer.ret_value = program.func(tracer, **args)
    except (StopTracing, TypeError, AttributeError):
        pass  # the body touched an abstract value: the prefix ends here
    prefix = []
    for node in tracer.flatten_nodes():
        if not isinstance(node, SglConstantText):
            break
        prefix.append(node.value)
    return "".join(prefix)
