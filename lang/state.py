"""ProgramState (what `run` returns and what the program body calls `s`) and fork groups.

A thin user-facing wrapper over a StreamExecutor (docs/wire-protocol.md A.5, A.7): appends are
queued, reads block until the value exists.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from radixlm.lang.interpreter import StreamExecutor
from radixlm.lang.ir import (
    SglConcateAndAppend,
    SglExpr,
)
from radixlm.lang.roles import RoleMethods


class ProgramState(RoleMethods):
    def __init__(self, stream_executor: StreamExecutor) -> None:
        self.stream_executor = stream_executor
        self.ret_value: Any = None

    # ---- appending ------------------------------------------------------------------------
    def __iadd__(self, other: Any) -> ProgramState:
        if other is None:
            raise ValueError("tried to append None to the program state")
        self.stream_executor.submit(other)
        return self

    def _run(self, node: SglExpr) -> None:
        self.stream_executor.submit(node)

    # ---- forking --------------------------------------------------------------------------
    def fork(self, size: int = 1, position_ids_offset: Any = None) -> ProgramStateGroup:
        children = self.stream_executor.fork(size, position_ids_offset)
        return ProgramStateGroup([ProgramState(c) for c in children], self)

    @contextmanager
    def copy(self, position_ids_offset: Any = None) -> Iterator[ProgramState]:
        group = self.fork(1, position_ids_offset)
        try:
            yield group[0]
        finally:
            group.join()

    # ---- reading --------------------------------------------------------------------------
    def __getitem__(self, name: Any) -> Any:
        return self.stream_executor.get_var(name)

    def __setitem__(self, name: Any, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def __contains__(self, name: Any) -> bool:
        return name in self.stream_executor.variables

    def get_var(self, name: Any) -> Any:
        return self.stream_executor.get_var(name)

    def set_var(self, name: Any, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def get_meta_info(self, name: Any, timeout: float | None = None) -> Any:
        """The backend's meta_info for gen `name` (for a select: the choice method's)."""
        return self.stream_executor.get_meta_info(name, timeout)

    def text(self) -> str:
        return self.stream_executor.text()

    def messages(self) -> list[dict]:
        return self.stream_executor.messages()

    def sync(self) -> None:
        self.stream_executor.sync()

    def error(self) -> BaseException | None:
        """The exception that stopped this state's program, or None."""
        return self.stream_executor.error()

    # ---- streaming ------------------------------------------------------------------------
    def text_iter(self, var_name: Any = None) -> Iterator[str]:
        """Stream mode: text deltas of the whole text or of one variable. Otherwise the final value."""
        exe = self.stream_executor
        if not exe.stream:
            yield self.text() if var_name is None else self.get_var(var_name)
            return
        if var_name is None:
            yield from exe.iter_text()
            return
        for chunk, _meta in exe.iter_var(var_name):
            if chunk:
                yield chunk

    async def text_async_iter(self, var_name: Any = None, return_meta_data: bool = False
                              ) -> AsyncIterator[Any]:
        """Async `text_iter`; with `return_meta_data` and a variable, yields (chunk, meta_info)."""
        loop = asyncio.get_running_loop()
        items = self._chunks(var_name, return_meta_data)
        done = object()
        while True:
            item = await loop.run_in_executor(None, next, items, done)
            if item is done:
                return
            yield item

    def _chunks(self, var_name: Any, return_meta_data: bool) -> Iterator[Any]:
        exe = self.stream_executor
        if var_name is None or not exe.stream:
            yield from self.text_iter(var_name)
            return
        for chunk, meta in exe.iter_var(var_name):
            if return_meta_data:
                yield chunk, meta
            elif chunk:
                yield chunk

    def __repr__(self) -> str:
        return f"ProgramState({self.text()})"

    def __del__(self) -> None:
        # A fork child that is never joined still lets its worker thread exit. Errors are
        # ignored: at interpreter shutdown the queue machinery may already be gone.
        with contextlib.suppress(Exception):
            self.stream_executor.end()


class ProgramStateGroup:
    """The children of `s.fork(n)`: feed them with `+=`, index them, then `join()`."""

    def __init__(self, states: list[ProgramState], src_state: ProgramState) -> None:
        self.states = states
        self.src_state = src_state

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, value: ProgramState) -> None:
        if self.states[i] is not value:
            raise ValueError("fork children cannot be replaced; use forks[i] += ...")

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any) -> ProgramStateGroup:
        """Append to every child: an expr or str, a callable i -> expr, or one item per child."""
        if isinstance(other, (SglExpr, str)):
            items = [other] * len(self.states)
        elif isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise ValueError(f"got {len(other)} items for {len(self.states)} forks")
            items = list(other)
        elif isinstance(other, Callable):
            items = [other(i) for i in range(len(self.states))]
        else:
            raise ValueError(f"cannot append a {type(other).__name__} to a fork group")
        for state, item in zip(self.states, items):
            state += item
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """Wait for every child, merge it into the parent, and end the children.

        gather_variable: each new child variable becomes a list (child order) on the parent;
        the parent's text is unchanged. concate_and_append: the children's texts since the
        fork are appended to the parent's text.
        """
        if mode == "gather_variable":
            self._gather_variables()
        elif mode == "concate_and_append":
            self.src_state += SglConcateAndAppend(self.states)
            self.src_state.sync()
        else:
            raise ValueError(f"invalid join mode {mode!r}; use gather_variable or concate_and_append")
        for state in self.states:
            state.stream_executor.end()

    def _gather_variables(self) -> None:
        parent = self.src_state.stream_executor
        parent_names = set(parent.variables)
        for child in self.states:
            child.stream_executor.sync()
            child_vars = child.stream_executor.variables
            for name in child_vars.keys() - parent_names:
                parent.variables.setdefault(name, []).append(child_vars[name])
