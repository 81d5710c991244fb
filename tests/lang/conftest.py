"""Fixtures for frontend tests.

Model-free tests use `ScriptedBackend` (deterministic, records every call). Model tests share
one in-process Engine for the session, and one server (launched through `Runtime`) for the
tests that run against the real HTTP server. Everything runs greedy with few tokens so the
suite stays fast on a CPU.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from radixlm.lang.backend.base import BaseBackend, Prompt
from radixlm.lang.chat_template import get_chat_template
from radixlm.lang.ir import ChoicesDecision, SglSamplingParams

REPO = Path(__file__).resolve().parents[2]
SERVER_FILES = ("runtime/server/launch.py", "runtime/cli.py", "runtime/__main__.py")
MAX_TOTAL_TOKENS = 20000


class ScriptedBackend(BaseBackend):
    """gen returns `reply(prompt, params)` (default "<gen N>"); select picks `choice_index`.

    Streams split the reply into characters, one logprob entry per character, plus one event
    with no new text (to exercise folding). Records (kind, text, params) per call.
    """

    def __init__(self, template: str = "chatml", reply=None, choice_index: int = 0,
                 fail_on: str | None = None) -> None:
        super().__init__()
        self.chat_template = get_chat_template(template)
        self.reply = reply
        self.choice_index = choice_index
        self.fail_on = fail_on
        self.calls: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()

    def _record(self, kind: str, text: str, params: object = None) -> int:
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError(f"scripted failure on {self.fail_on!r}")
        with self._lock:
            self.calls.append((kind, text, params))
            return len(self.calls)

    def _reply(self, prompt: Prompt, sp: SglSamplingParams, n: int) -> str:
        return self.reply(prompt, sp) if self.reply else f"<gen {n}>"

    def generate(self, prompt, sampling_params):
        n = self._record("gen", prompt.text, sampling_params)
        return self._reply(prompt, sampling_params, n), {"completion_tokens": 1, "n": n}

    def generate_stream(self, prompt, sampling_params):
        n = self._record("stream", prompt.text, sampling_params)
        text = self._reply(prompt, sampling_params, n)
        for i, ch in enumerate(text):
            meta = {"completion_tokens": i + 1, "output_token_logprobs": [[-0.5, i, None]]}
            yield ch, meta
            if i == 0:  # a token that decodes to no new text yet
                yield "", {"completion_tokens": i + 1, "output_token_logprobs": []}

    def select(self, prompt, choices, temperature, choices_method):
        self._record("select", prompt.text, list(choices))
        return ChoicesDecision(choices[self.choice_index], {"scored": list(choices)})

    def cache_prefix(self, prefix):
        self._record("cache_prefix", prefix)

    def commit_lazy_operations(self, prompt):
        self._record("commit", prompt.text)

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def scripted():
    return ScriptedBackend()


@pytest.fixture(name="ScriptedBackend")
def scripted_backend_class():
    """The class itself, for tests that need a differently configured instance."""
    return ScriptedBackend


def server_available() -> bool:
    return all((REPO / f).exists() for f in SERVER_FILES)


@pytest.fixture(scope="session")
def engine():
    from radixlm.runtime import Engine

    eng = Engine(max_total_tokens=MAX_TOTAL_TOKENS)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="session")
def engine_backend(engine):
    from radixlm.lang.backend.engine_backend import EngineBackend

    return EngineBackend(engine)


@pytest.fixture(scope="session")
def runtime():
    if not server_available():
        pytest.skip("the HTTP server (runtime/server/launch.py, runtime/cli.py) is not in this checkout yet")
    from radixlm.lang.backend.runtime import Runtime

    # A fixed server seed: every request samples from its own seeded generator, so a test
    # that samples (SGLang's test_decode_int runs at temperature 0.1, where the model puts
    # ~6% on "366 days": logits 35.24 vs 34.96) gets the same tokens on every run.
    rt = Runtime(max_total_tokens=MAX_TOTAL_TOKENS, launch_timeout=600, random_seed=0)
    yield rt
    rt.shutdown()


@pytest.fixture(scope="session", params=["engine", "server"])
def backend(request):
    """The same programs on the in-process engine and on the real server over HTTP."""
    if request.param == "engine":
        return request.getfixturevalue("engine_backend")
    return request.getfixturevalue("runtime").endpoint


@pytest.fixture(scope="session")
def constrained_backend(engine_backend):
    """The engine backend, or a skip while the runtime does not enforce regex constraints."""
    probe = {"text": "The capital of France is",
             "sampling_params": {"max_new_tokens": 1, "temperature": 0, "regex": "7"}}
    try:
        text = engine_backend._post_generate(probe)["text"]
    except (RuntimeError, ValueError) as exc:
        pytest.skip(f"constrained decoding is not integrated in radixlm.runtime yet ({exc})")
    if text != "7":
        pytest.skip("constrained decoding is not integrated in radixlm.runtime yet "
                    f"(regex '7' was not enforced: got {text!r})")
    return engine_backend
