"""RoleMethods: `s.system()`, `s.user()`, `s.assistant()` and `s.var_scope()` of a program state.

Shared by the running state (state.py, which submits nodes to its executor) and the tracer's
(tracer.py, which records them): each says how to run one node in `_run`.

    s.user("Hi")                 # a whole turn
    with s.assistant():          # a turn built inside the block
        s += rl.gen("answer")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from radixlm.lang.ir import (
    SglExpr,
    SglExprList,
    SglRoleBegin,
    SglRoleEnd,
    SglVarScopeBegin,
    SglVarScopeEnd,
)


class RoleMethods:
    def _run(self, node: SglExpr) -> None:
        raise NotImplementedError

    def _role(self, role: str, expr: Any = None):
        if expr is not None:
            node = SglExprList([SglRoleBegin(role), expr, SglRoleEnd(role)])
            self._run(node)
            return node
        return self._scope(SglRoleBegin(role), SglRoleEnd(role))

    @contextmanager
    def _scope(self, begin: SglExpr, end: SglExpr) -> Iterator[None]:
        self._run(begin)
        yield
        self._run(end)

    def system(self, expr: Any = None):
        """Append `expr` as a system turn; with no expr, a context manager for the turn."""
        return self._role("system", expr)

    def user(self, expr: Any = None):
        return self._role("user", expr)

    def assistant(self, expr: Any = None):
        return self._role("assistant", expr)

    def var_scope(self, name: str):
        """Text appended inside the block becomes the variable `name`."""
        return self._scope(SglVarScopeBegin(name), SglVarScopeEnd(name))
