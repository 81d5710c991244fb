"""The scheduler process's torch threads per step (server/scheduler_process.py ThreadSplit):
cores - 1 while requests stream, every core for a step that only computes prompts; and the
streaming signal it keys on, from a real scheduler."""

from __future__ import annotations

import pytest
import torch

from radixlm.runtime.engine import Engine
from radixlm.runtime.server.scheduler_process import ThreadSplit


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_defaults_leave_a_core_while_streaming_and_use_all_for_prompts(restore_threads):
    cores = torch.get_num_threads()
    split = ThreadSplit.for_process(None, None)
    assert (split.streaming, split.prefill) == (max(1, cores - 1), cores)
    assert torch.get_num_threads() == split.streaming  # start-up (compiling, path timing) as before
    split.before_step(others_busy=False)
    assert torch.get_num_threads() == cores
    split.before_step(others_busy=True)
    assert torch.get_num_threads() == split.streaming


def test_flags_set_either_count(restore_threads):
    split = ThreadSplit.for_process(1, 1)  # one fixed count: never switches
    for streaming in (False, True):
        split.before_step(streaming)
        assert torch.get_num_threads() == 1


def test_a_request_streams_from_its_first_output_token_until_it_finishes():
    with Engine(max_total_tokens=2048, disable_torch_compile=True, chunked_prefill_size=16) as engine:
        seen = []

        def record(sched):
            seen.append(sched.is_streaming)

        stream = engine.generate_stream("Count from one to twenty: one, two, three,",
                                        {"max_new_tokens": 32, "temperature": 0, "ignore_eos": True})
        engine.call_in_loop(record)  # queued behind the add: the prompt is still in chunked prefill
        chunks = iter(stream)
        next(chunks)
        engine.call_in_loop(record)  # between steps, 31 tokens still to go
        rest = list(chunks)
        engine.call_in_loop(record)
    assert rest
    assert seen == [False, True, False]  # prompt chunks only; decoding for a client; finished
