"""A long prompt in prefill does not hold back the requests that arrive behind it: while
requests wait, running prefills leave them part of each step's tokens
(scheduler/policy.py newcomer_reserve)."""

from __future__ import annotations

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import TokenizedRequest
from radixlm.runtime.server_args import ServerArgs

CHUNK = 512


def test_a_short_request_finishes_during_a_long_prefill(tokenizer):
    sched = build_runtime(ServerArgs(max_total_tokens=8192, chunked_prefill_size=CHUNK)).scheduler
    one = SamplingParams.from_dict({"max_new_tokens": 1, "temperature": 0})
    long_ids = tokenizer("The history of the river, told slowly. " * 500).input_ids[:4000]
    sched.add_request(TokenizedRequest("long", long_ids, one))
    done: dict[str, int] = {}
    steps = 0
    while not sched.is_idle:
        if steps == 1:  # the long prompt's first chunk is computed: a short request arrives
            sched.add_request(TokenizedRequest("short", tokenizer("Hi").input_ids, one))
        for out in sched.step():
            if out.finished:
                done[out.rid] = steps
        sched.check_invariant()
        steps += 1
        assert steps < 100
    prefill_steps = -(-len(long_ids) // CHUNK)
    assert done["short"] <= 3, done  # admitted at once; before the reserve: after the whole prefill
    assert done["long"] > done["short"] and done["long"] <= prefill_steps + 2, done
