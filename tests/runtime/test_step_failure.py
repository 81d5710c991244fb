"""A step that raises (a forward or sampler bug, an allocator error) loses nothing: the
slots allocated for that step return to the pool, outputs taken before the failure still
reach their clients, `fail_in_flight` answers every request, and the scheduler then serves
new requests with the same output as before."""

from __future__ import annotations

import pytest

from radixlm.runtime.bootstrap import build_runtime
from radixlm.runtime.errors import RequestError
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import TokenizedRequest
from radixlm.runtime.server_args import ServerArgs

GREEDY = SamplingParams.from_dict({"max_new_tokens": 6, "temperature": 0, "ignore_eos": True})


@pytest.fixture(scope="module")
def sched():
    return build_runtime(ServerArgs(max_total_tokens=2048, chunked_prefill_size=64)).scheduler


def run_alone(sched, ids: list[int]) -> list[int]:
    sched.add_request(TokenizedRequest("alone", ids, GREEDY))
    tokens: list[int] = []
    while not sched.is_idle:
        for out in sched.step():
            tokens += out.new_token_ids
    return tokens


def assert_everything_returned(sched) -> None:
    sched.check_invariant()
    sched.cache.check_invariants()
    sched.kv_pool.check_invariants()
    assert sched.held_by_requests() == 0
    assert sched.kv_pool.available_size() + sched.cache.evictable_size() == sched.kv_pool.size
    assert sched.req_pool.available_size() == sched.cfg.max_running_requests


class Boom(RuntimeError):
    pass


def fail_once(obj, name: str, monkeypatch) -> None:
    real = getattr(obj, name)

    def broken(*args, **kwargs):
        monkeypatch.setattr(obj, name, real)
        raise Boom(f"injected failure in {name}")

    monkeypatch.setattr(obj, name, broken)


@pytest.mark.parametrize("where", ["forward", "sample"])
def test_failed_step_frees_its_slots_and_answers_everyone(sched, prompts, tokenizer, monkeypatch, where):
    ids = [tokenizer(p).input_ids for p in prompts[:6]]
    expected = run_alone(sched, ids[0])
    for i, x in enumerate(ids):
        sched.add_request(TokenizedRequest(f"r{i}", x, GREEDY))
    for _ in range(3):  # some prefill chunks and decode steps: requests hold KV
        sched.step()
    sched.abort("r5", "client went away")  # an output that must survive the failure below

    target = (sched.runner, "forward") if where == "forward" else (sched.sampler, "sample")
    fail_once(*target, monkeypatch)
    with pytest.raises(Boom):
        sched.step()
    outputs = sched.fail_in_flight(RequestError.internal("internal error"))

    finished = {o.rid: o.finish_reason for o in outputs if o.finished}
    assert set(finished) == {f"r{i}" for i in range(6)}
    assert finished["r5"].message == "client went away"
    assert all(r.type == "abort" for r in finished.values())
    assert sched.is_idle
    assert_everything_returned(sched)
    assert run_alone(sched, ids[0]) == expected
    assert_everything_returned(sched)
