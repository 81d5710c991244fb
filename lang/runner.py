"""Running programs: one state (`run_program`), a batch on a thread pool (`run_program_batch`),
and prefix precaching (`cache_program`) (docs/wire-protocol.md A.2).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from radixlm.lang.backend.base import BaseBackend, resolve_backend
from radixlm.lang.global_config import global_config
from radixlm.lang.interpreter import StreamExecutor
from radixlm.lang.ir import SglSamplingParams
from radixlm.lang.state import ProgramState
from radixlm.lang.tracer import extract_prefix_by_tracing

logger = logging.getLogger(__name__)

MIN_PRECACHE_CHARS = 64  # shorter prefixes are not worth an extra request
GENERATOR_CHUNK = 200  # generator_style submits the batch in chunks of this many items


def run_program(program: Any, backend: Any, func_args: tuple, func_kwargs: dict,
                default_sampling_para: SglSamplingParams, stream: bool, sync: bool = False,
                use_thread: bool = True) -> ProgramState:
    """Start one program state; with stream=True the body runs in its own thread."""
    backend = resolve_backend(backend)
    func_kwargs = {**func_kwargs, **program.bind_arguments}
    executor = StreamExecutor(backend, func_kwargs, default_sampling_para, stream=stream,
                              num_api_spec_tokens=program.num_api_spec_tokens, use_thread=use_thread)
    state = ProgramState(executor)
    if stream:
        executor.body_finished = threading.Event()
        threading.Thread(target=_run_streamed_body, args=(state, program, func_args, func_kwargs),
                         daemon=True).start()
    else:
        _run_body(state, program, func_args, func_kwargs, sync)
    return state


def _run_body(state: ProgramState, program: Any, func_args: tuple, func_kwargs: dict,
              sync: bool, record_errors: bool = False) -> None:
    try:
        state.ret_value = program.func(state, *func_args, **func_kwargs)
    except Exception as exc:
        if not record_errors:
            raise
        logger.exception("the program body of a streamed run raised")
        state.stream_executor.fail(exc)  # after the nodes it appended, before end()
    finally:
        state.stream_executor.end()
    if sync:
        state.stream_executor.sync()


def _run_streamed_body(state: ProgramState, program: Any, func_args: tuple, func_kwargs: dict) -> None:
    # Nobody can catch an exception raised in this thread: it becomes the state's error.
    # Readers on other threads wait for body_finished (StreamExecutor.sync); the body's own
    # reads must not, or a body that syncs (fork does) would wait for itself.
    executor = state.stream_executor
    executor.body_thread = threading.get_ident()
    try:
        _run_body(state, program, func_args, func_kwargs, sync=False, record_errors=True)
    finally:
        executor.body_finished.set()


def cache_program(program: Any, backend: Any) -> str:
    """Send the program's traced constant prefix to the backend once; returns the prefix sent
    ("" when it is 64 characters or shorter)."""
    backend = resolve_backend(backend)
    prefix = extract_prefix_by_tracing(program, backend)
    if len(prefix) <= MIN_PRECACHE_CHARS:
        return ""
    backend.cache_prefix(prefix)
    return prefix


def resolve_num_threads(num_threads: int | str, batch_size: int) -> int:
    if num_threads == "auto":
        num_threads = max(96, (os.cpu_count() or 1) * 16)
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be 'auto' or an int >= 1 (got {num_threads!r})")
    return min(num_threads, batch_size)


def run_program_batch(program: Any, backend: Any, batch_arguments: list[dict],
                      default_sampling_para: SglSamplingParams, num_threads: int | str,
                      progress_bar: bool, generator_style: bool = False
                      ) -> list[ProgramState] | Iterator[ProgramState]:
    """Run one program per argument dict on a thread pool (each item synced when done)."""
    backend = resolve_backend(backend)
    if global_config.enable_precache_with_tracing and len(batch_arguments) > 1:
        cache_program(program, backend)
    num_threads = resolve_num_threads(num_threads, len(batch_arguments))
    if generator_style:
        return _run_batch_generator(program, backend, batch_arguments, default_sampling_para,
                                    num_threads, progress_bar)
    return _run_batch_list(program, backend, batch_arguments, default_sampling_para,
                           num_threads, progress_bar)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    import tqdm

    return tqdm.tqdm(total=total)


def _run_batch_list(program, backend: BaseBackend, batch_arguments, default_sampling_para,
                    num_threads: int, progress_bar: bool) -> list[ProgramState]:
    pbar = _progress(len(batch_arguments), progress_bar)
    try:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            futures = [_submit(pool, program, backend, args, default_sampling_para, pbar)
                       for args in batch_arguments]
            states = [f.result() for f in futures]
    finally:
        if pbar is not None:
            pbar.close()
    states[-1].sync()
    return states


def _run_batch_generator(program, backend: BaseBackend, batch_arguments, default_sampling_para,
                         num_threads: int, progress_bar: bool) -> Iterator[ProgramState]:
    pbar = _progress(len(batch_arguments), progress_bar)
    try:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            for start in range(0, len(batch_arguments), GENERATOR_CHUNK):
                chunk = batch_arguments[start:start + GENERATOR_CHUNK]
                futures = [_submit(pool, program, backend, args, default_sampling_para, pbar)
                           for args in chunk]
                for future in futures:
                    yield future.result()
    finally:
        if pbar is not None:
            pbar.close()


def _submit(pool, program, backend, arguments: dict, default_sampling_para, pbar):
    future = pool.submit(run_program, program, backend, (), arguments, default_sampling_para,
                         False, True)
    if pbar is not None:
        future.add_done_callback(lambda _: pbar.update())
    return future
