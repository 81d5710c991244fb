"""The compiled one-token CPU forward: compiled once, never again, and optional.

Its outputs are checked against Hugging Face in test_parity.py; here: that serving requests
of any length after start-up compiles nothing more (a recompile would stall a request for
seconds), that --disable-torch-compile and a failing compiler both leave the eager path
serving.
"""

from __future__ import annotations

import torch

from radixlm.runtime import Engine
from radixlm.runtime.model.models.llama_compiled_decode import CompiledDecode

GREEDY = {"max_new_tokens": 8, "temperature": 0}


def test_no_compilation_after_start_up():
    from torch._dynamo.utils import counters

    with Engine(max_total_tokens=6000) as engine:
        compiled = engine.scheduler.runner.model.compiled_decode
        assert compiled is not None
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 2  # the layer and the logits, compiled in this process at start-up
        for words in (1, 5, 40, 700):  # key counts from 2 to ~1.4k, after a fresh flush each
            engine.flush_cache()
            engine.generate("hello " * words, GREEDY)
        assert compiled.calls >= 4 * (GREEDY["max_new_tokens"] - 1)
        assert counters["stats"]["unique_graphs"] == graphs, "a request recompiled the one-token forward"


def test_disable_torch_compile_runs_eagerly():
    with Engine(max_total_tokens=2000, disable_torch_compile=True) as engine:
        assert engine.scheduler.runner.model.compiled_decode is None
        assert engine.generate("The capital of France is", GREEDY)["meta_info"]["completion_tokens"] == 8


def test_compiler_failure_falls_back_to_eager(monkeypatch, caplog):
    def broken_compiler(self):
        raise RuntimeError("InductorError: C++ compile error: no compiler found")

    monkeypatch.setattr(CompiledDecode, "warm_up", broken_compiler)
    with Engine(max_total_tokens=2000) as engine:
        assert engine.scheduler.runner.model.compiled_decode is None
        out = engine.generate("The capital of France is", GREEDY)
    assert out["meta_info"]["completion_tokens"] == 8
    assert "not compiled, running eagerly" in caplog.text
    assert "no compiler found" in caplog.text


def test_supported_only_for_cpu_float32(model_folder):
    from radixlm.runtime.model.config import ModelConfig
    from radixlm.runtime.model.models.llama import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(ModelConfig.from_folder(model_folder))
    assert not CompiledDecode.supported(model)  # meta device
    assert not CompiledDecode.supported(model.to_empty(device="cpu").to(torch.bfloat16))
    assert CompiledDecode.supported(model.float())
