"""The scheduler under KV pressure: admission never over-commits the pool (no out-of-memory
step), retraction keeps every request going, and the pool invariant holds throughout."""

from __future__ import annotations

import pytest

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import TokenizedRequest
from radixlm.runtime.server_args import ServerArgs


@pytest.mark.parametrize(("pool", "chunk"), [(420, 256), (450, 64)])
def test_tight_pool_serves_everything_without_overcommitting(pool, chunk, prompts, tokenizer):
    sched = build_runtime(ServerArgs(max_total_tokens=pool, chunked_prefill_size=chunk)).scheduler
    params = SamplingParams.from_dict({"max_new_tokens": 24, "temperature": 0, "ignore_eos": True})
    for i, p in enumerate(prompts):
        sched.add_request(TokenizedRequest(str(i), tokenizer(p).input_ids, params))
    finished = {}
    steps = 0
    while not sched.is_idle:
        for out in sched.step():
            if out.finished:
                finished[out.rid] = out
        sched.check_invariant()
        steps += 1
        assert steps < 2000, "the scheduler stopped making progress"
    assert len(finished) == len(prompts)
    assert all(o.completion_tokens == 24 for o in finished.values())
    assert sched.stats.retractions > 0
