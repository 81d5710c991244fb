"""The Engine loop survives what a request or a step throws at it, and nobody waits forever.

Each failure reaches only its own callers, as the same error the server would answer, and
the next request is served: an exception while adding a request (any type, not only the
ValueError of bad input) fails that request with a 500; a bug in the loop itself fails every
waiting caller and every later call instead of leaving them blocked on a future.
"""

from __future__ import annotations

import pytest

from radixlm.runtime import Engine
from radixlm.runtime.engine import EngineClosedError

GREEDY = {"max_new_tokens": 4, "temperature": 0}
WAIT_S = 120  # far above a 4-token generation here; only a hang reaches it


class Boom(Exception):
    """A bug met by one request: not the ValueError of bad input."""


@pytest.fixture(scope="module")
def engine():
    with Engine(max_total_tokens=4096) as e:
        yield e


def test_an_exception_while_adding_a_request_fails_it_and_the_engine_serves_on(engine, monkeypatch):
    real_add = engine.scheduler.add_request

    def add(tr):
        if tr.input_ids == poison_ids:
            raise Boom("injected while adding")
        return real_add(tr)

    poison_ids = engine.tokenizer("poisoned request").input_ids
    monkeypatch.setattr(engine.scheduler, "add_request", add)

    bad = engine.submit("poisoned request", GREEDY)
    with pytest.raises(RuntimeError, match="internal error in the scheduler: Boom") as caught:
        bad.future.result(timeout=WAIT_S)
    assert caught.value.status == 500  # the server's answer for the same failure

    ok = engine.submit("The capital of France is", GREEDY)
    assert ok.future.result(timeout=WAIT_S)["meta_info"]["completion_tokens"] == 4
    engine.call_in_loop(lambda s: s.check_invariant(), timeout=WAIT_S)


def test_a_command_that_raises_fails_only_its_caller(engine):
    def broken(scheduler):
        raise Boom("in a call")

    with pytest.raises(Boom):
        engine.call_in_loop(broken, timeout=WAIT_S)
    assert engine.generate("ok", GREEDY, timeout=WAIT_S)["meta_info"]["completion_tokens"] == 4


def test_a_bug_in_the_loop_itself_fails_every_caller_instead_of_hanging():
    engine = Engine(max_total_tokens=2048, disable_torch_compile=True)
    try:
        def step():
            raise SystemExit("a bug outside any request")  # not an Exception: escapes the step guard

        engine.scheduler.step = step
        with pytest.raises(EngineClosedError, match="loop stopped"):
            engine.generate("hello", GREEDY, timeout=WAIT_S)
        with pytest.raises(EngineClosedError):
            engine.flush_cache(timeout=WAIT_S)
        with pytest.raises(EngineClosedError):
            engine.submit("again", GREEDY)
    finally:
        engine.shutdown()
