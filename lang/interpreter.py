"""StreamExecutor: runs one program state's IR nodes on that state's own worker thread.

Ownership: the program body (caller thread) only submits nodes; the worker thread alone
mutates `text_`, `messages_`, `variables` and `meta_info`, so one state's requests go out in
order while different states (forks, batch items) issue theirs concurrently. Readers block
on per-variable events (`get_var`) or on the `changed` condition (streaming iterators).

Errors (A.6): an exception while executing a node is recorded for `error()`, warned about,
and every pending variable is released; later nodes are skipped, so `sync()` never hangs and
reading a missing variable raises a KeyError that names the original error. An exception
of a streamed program body is queued behind the nodes the body submitted (`fail`), so what
it appended before raising is still produced and streamed.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import traceback
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

from radixlm.lang.backend.base import BaseBackend, Prompt
from radixlm.lang.chat_template import ChatTemplate
from radixlm.lang.global_config import global_config
from radixlm.lang.ir import (
    SglCommitLazy,
    SglConcateAndAppend,
    SglConstantText,
    SglExpr,
    SglExprList,
    SglGen,
    SglRoleBegin,
    SglRoleEnd,
    SglSamplingParams,
    SglSelect,
    SglSeparateReasoning,
    SglVariable,
    SglVarScopeBegin,
    SglVarScopeEnd,
    as_expr,
)
from radixlm.lang.reasoning import split_reasoning
from radixlm.lang.stream_meta import merge_stream_events


class _Failure(NamedTuple):
    """Queued by `fail`: the program body's exception, recorded in order with its nodes."""

    exc: BaseException


class StreamExecutor:
    def __init__(
        self,
        backend: BaseBackend,
        arguments: dict[str, Any],
        default_sampling_para: SglSamplingParams,
        chat_template: ChatTemplate | None = None,
        stream: bool = False,
        num_api_spec_tokens: int | None = None,
        use_thread: bool = True,
    ) -> None:
        self.sid = uuid.uuid4().hex
        self.backend = backend
        self.arguments = arguments
        self.default_sampling_para = default_sampling_para
        self.chat_template = chat_template or backend.get_chat_template()
        self.stream = stream
        self.num_api_spec_tokens = num_api_spec_tokens

        self.text_ = ""
        self.messages_: list[dict] = []
        self.variables: dict[Any, Any] = {}
        self.variable_event: dict[Any, threading.Event] = {}
        self.meta_info: dict[Any, Any] = {}
        self.stream_log: dict[Any, list[tuple[str, dict]]] = {}  # streamed var -> its events
        self.cur_role: str | None = None
        self.cur_role_begin_pos: int | None = None
        self.fork_start_text_pos: int | None = None
        self._scope_start: dict[str, int] = {}
        self.error_: BaseException | None = None
        self.is_finished = False
        # Streamed runs (runner.py): set once the program body, on a thread of its own, returns.
        self.body_finished: threading.Event | None = None
        self.body_thread: int | None = None
        self.changed = threading.Condition()  # notified on every text/variable/finish change

        self.use_thread = use_thread
        if use_thread:
            self.queue: queue.Queue = queue.Queue()
            run = contextvars.copy_context().run
            self.worker = threading.Thread(target=run, args=(self._worker_loop,), daemon=True,
                                           name=f"radixlm-state-{self.sid[:8]}")
            self.worker.start()

    # ---- called from the program body -----------------------------------------------------
    def submit(self, expr: Any) -> None:
        """Queue `expr` (a str or SglExpr) for the worker; returns at once."""
        if expr is None:
            raise ValueError("tried to append None to a program state")
        expr = as_expr(expr)
        self._init_var_event(expr)
        if self.use_thread:
            self.queue.put(expr)
        else:
            self._run_node(expr)
            self._notify()

    def sync(self) -> None:
        """Wait until every queued node has been executed (or skipped after an error). Outside
        the body of a streamed run, first until the body has returned: its thread may not have
        submitted everything yet, and `text()` would then depend on thread timing."""
        self.wait_for_body()
        if self.use_thread:
            self.queue.join()

    def wait_for_body(self, timeout: float | None = None) -> bool:
        """False if a streamed run's body is still running after `timeout` seconds."""
        done = self.body_finished
        if done is None or threading.get_ident() == self.body_thread:
            return True
        return done.wait(timeout)

    def fail(self, exc: BaseException) -> None:
        """Fail the state once the nodes submitted so far have run (the program body raised):
        the text the body appended before raising is still produced and streamed, in order.
        Recording the error at once would make the worker skip nodes still queued."""
        if self.use_thread:
            self.queue.put(_Failure(exc))
        else:
            self.record_error(exc)

    def end(self) -> None:
        """No more nodes: the worker exits after the queue drains and the state is finished."""
        if self.use_thread:
            if self.worker.is_alive():
                self.queue.put(None)
        else:
            self._finish()

    def get_var(self, name: Any) -> Any:
        event = self.variable_event.get(name)
        if event is not None:
            event.wait()
        elif name not in self.variables:
            self.sync()  # nothing queued produces it: report once the state settles
        try:
            return self.variables[name]
        except KeyError:
            raise KeyError(self._missing_var_message(name)) from None

    def set_var(self, name: Any, value: Any) -> None:
        self.variables[name] = value

    def get_meta_info(self, name: Any, timeout: float | None = None) -> Any:
        event = self.variable_event.get(name)
        if event is None and self.wait_for_body(timeout):  # the body may not have submitted it yet
            event = self.variable_event.get(name)
        if event is not None and not event.wait(timeout):
            raise TimeoutError(f"variable {name!r} was not produced within {timeout} s")
        return self.meta_info.get(name)

    def fork(self, size: int = 1, position_ids_offset: Any = None) -> list[StreamExecutor]:
        """`size` children that copy this state; with size > 1 the shared text is prefilled once."""
        self.sync()
        if int(size) > 1 and self.text_:
            self.submit(SglCommitLazy())  # branches then hit the cached prefix
            self.sync()
        children = [
            StreamExecutor(self.backend, self.arguments, self.default_sampling_para,
                           self.chat_template, self.stream, use_thread=self.use_thread)
            for _ in range(int(size))
        ]
        for child in children:
            child.variables = dict(self.variables)
            child.text_ = self.text_
            child.messages_ = list(self.messages_)
            child.cur_role = self.cur_role
            child.cur_role_begin_pos = self.cur_role_begin_pos
            child.fork_start_text_pos = len(self.text_)
        return children

    def text(self) -> str:
        self.sync()
        return self.text_

    def messages(self) -> list[dict]:
        self.sync()
        return self.messages_

    def error(self) -> BaseException | None:
        self.sync()
        return self.error_

    # ---- streaming readers ----------------------------------------------------------------
    def iter_text(self) -> Iterator[str]:
        """Yield the deltas of the whole text until the state is finished."""
        pos = 0
        while True:
            with self.changed:
                self.changed.wait_for(lambda pos=pos: len(self.text_) > pos or self.is_finished)
                out, done = self.text_[pos:], self.is_finished
            pos += len(out)
            if out:
                yield out
            if done:
                return

    def iter_var(self, name: Any) -> Iterator[tuple[str, dict | None]]:
        """Yield (delta, meta_info) for one variable; logprob lists are per-yield increments."""
        taken = 0
        carry: list[tuple[str, dict]] = []
        while True:
            with self.changed:
                self.changed.wait_for(lambda taken=taken: len(self.stream_log.get(name, ())) > taken
                                      or self._var_done(name))
                events = self.stream_log.get(name, [])[taken:]
                done = self._var_done(name)
            taken += len(events)
            for event in events:
                carry.append(event)
                if event[0]:  # events without text fold into the next yielded meta_info
                    yield merge_stream_events(carry)
                    carry = []
            if done:
                break
        if carry:
            yield merge_stream_events(carry)
        elif taken == 0 and name in self.variables:  # produced without streaming (e.g. select)
            yield str(self.variables[name]), self.meta_info.get(name)

    def _var_done(self, name: Any) -> bool:
        event = self.variable_event.get(name)
        return event.is_set() if event is not None else self.is_finished

    # ---- worker ---------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while True:
            expr = self.queue.get()
            if expr is None:
                self.queue.task_done()
                break
            if isinstance(expr, _Failure):
                self.record_error(expr.exc)
            else:
                self._run_node(expr)
            self.queue.task_done()
            self._notify()
        self._finish()

    def _run_node(self, expr: SglExpr) -> None:
        if self.error_ is not None:
            self._release_events()  # skipped after an error: nobody may wait on its variables
            return
        try:
            self._execute(expr)
        except Exception as exc:
            warnings.warn(f"Error in stream_executor: {traceback.format_exc()}", stacklevel=1)
            self.record_error(exc)

    def record_error(self, exc: BaseException) -> None:
        """Fail the state: keep the first error and release every variable reader."""
        if self.error_ is None:
            self.error_ = exc
        self._release_events()

    def _finish(self) -> None:
        with self.changed:
            self.is_finished = True
            self.changed.notify_all()
        if global_config.verbosity >= 2:
            print(self.text_)  # SGLang's documented verbosity-2 behaviour: print each final text

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _release_events(self) -> None:
        for event in self.variable_event.values():
            event.set()
        self._notify()

    def _missing_var_message(self, name: Any) -> str:
        if self.error_ is not None:
            return (f"variable {name!r} was not produced because the program failed: "
                    f"{type(self.error_).__name__}: {self.error_} (see state.error())")
        known = ", ".join(repr(k) for k in self.variables)
        return f"unknown variable {name!r}; the state has: {known or 'no variables'}"

    def _init_var_event(self, expr: SglExpr) -> None:
        if isinstance(expr, (SglGen, SglSelect, SglVarScopeBegin)):
            self.variable_event[expr.name] = threading.Event()
            if self.error_ is not None:
                self.variable_event[expr.name].set()
        elif isinstance(expr, SglExprList):
            for e in expr.expr_list:
                self._init_var_event(e)
        elif isinstance(expr, SglSeparateReasoning) and expr.expr is not None:
            self._init_var_event(expr.expr)

    # ---- node execution (worker thread) ---------------------------------------------------
    def _execute(self, expr: SglExpr) -> None:
        if isinstance(expr, SglConstantText):
            self._fill(expr.value)
        elif isinstance(expr, SglExprList):
            for e in expr.expr_list:
                self._execute(e)
        elif isinstance(expr, SglGen):
            self._execute_gen(expr)
        elif isinstance(expr, SglSelect):
            self._execute_select(expr)
        elif isinstance(expr, SglRoleBegin):
            self._execute_role_begin(expr.role)
        elif isinstance(expr, SglRoleEnd):
            self._execute_role_end(expr.role)
        elif isinstance(expr, SglVarScopeBegin):
            self._scope_start[expr.name] = len(self.text_)
        elif isinstance(expr, SglVarScopeEnd):
            self.variables[expr.name] = self.text_[self._scope_start.pop(expr.name):]
            self.variable_event[expr.name].set()
        elif isinstance(expr, SglVariable):
            self._fill(str(expr.source.get_var(expr.name)))
        elif isinstance(expr, SglCommitLazy):
            self.backend.commit_lazy_operations(self.prompt())
        elif isinstance(expr, SglConcateAndAppend):
            self._execute_concatenate_and_append(expr)
        elif isinstance(expr, SglSeparateReasoning):
            self._execute_separate_reasoning(expr)
        else:
            raise ValueError(f"cannot execute a {type(expr).__name__} node")

    def prompt(self) -> Prompt:
        return Prompt(self.text_, list(self.messages_), self.cur_role)

    def _fill(self, value: str) -> None:
        with self.changed:
            self.text_ += value

    def _resolve_sampling_params(self, overrides: SglSamplingParams) -> SglSamplingParams:
        params = self.default_sampling_para.merged(overrides)
        if self.chat_template.stop_str:  # every gen, inside a role or not (A.4 step 3)
            params.add_stop_strings(self.chat_template.stop_str)
        return params

    def _execute_gen(self, expr: SglGen) -> None:
        if self.num_api_spec_tokens is not None:
            raise NotImplementedError(
                "num_api_spec_tokens (API speculative execution) is not supported by radixlm backends")
        params = self._resolve_sampling_params(expr.sampling_params)
        name = expr.name
        if not self.stream:
            comp, meta = self.backend.generate(self.prompt(), params)
            self._fill(comp)
            self.variables[name] = expr.parse(comp) if expr.parse else comp
            self.meta_info[name] = meta
            self.variable_event[name].set()
            return
        with self.changed:
            self.variables[name] = ""
            self.stream_log[name] = []
        for chunk, meta in self.backend.generate_stream(self.prompt(), params):
            with self.changed:
                self.text_ += chunk
                self.variables[name] += chunk
                self.meta_info[name] = meta
                self.stream_log[name].append((chunk, meta))
                self.changed.notify_all()
        if expr.parse:
            self.variables[name] = expr.parse(self.variables[name])
        self.variable_event[name].set()

    def _execute_select(self, expr: SglSelect) -> None:
        decision = self.backend.select(self.prompt(), expr.choices, expr.temperature,
                                       expr.choices_method)
        if expr.name is not None:
            self.variables[expr.name] = decision.decision
            self.meta_info[expr.name] = decision.meta_info
            self.variable_event[expr.name].set()
        self._fill(decision.decision)

    def _execute_role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise ValueError(f"roles cannot nest: {role!r} begins inside {self.cur_role!r}")
        default_system = self.chat_template.default_system_prompt
        if not self.messages_ and role != "system" and default_system:
            self._execute_role_begin("system")
            self._fill(default_system)
            self._execute_role_end("system")
        prefix, _ = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self.cur_role = role
        self._fill(prefix)
        self.cur_role_begin_pos = len(self.text_)

    def _execute_role_end(self, role: str) -> None:
        if self.cur_role != role:
            raise ValueError(f"{role}_end without a matching {role}_begin (open role: {self.cur_role!r})")
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        content = self.text_[self.cur_role_begin_pos:].lstrip()
        self._fill(suffix)
        self.messages_.append({"role": role, "content": content})
        self.cur_role = None

    def _execute_concatenate_and_append(self, expr: SglConcateAndAppend) -> None:
        children = [state.stream_executor for state in expr.states]
        use_backend = global_config.enable_parallel_encoding and self.backend.support_concate_and_append
        if use_backend:
            for child in children:
                child.submit(SglCommitLazy())
        for child in children:
            child.sync()
            self._fill(child.text_[child.fork_start_text_pos:])
        if use_backend:
            self.backend.concatenate_and_append([c.sid for c in children], self.sid)

    def _execute_separate_reasoning(self, expr: SglSeparateReasoning) -> None:
        if expr.expr is not None:
            self._execute(expr.expr)
        if self.stream or expr.name is None:
            return  # as in SGLang: skipped in stream mode
        value = str(self.variables[expr.name])
        reasoning, content = split_reasoning(value)
        self.variables[expr.name] = content
        self.variables[f"{expr.name}_reasoning_content"] = reasoning
        if self.text_.endswith(value):
            with self.changed:
                self.text_ = self.text_[: len(self.text_) - len(value)] + content
