"""oneDNN-prepacked linear weights on the CPU: on by default, off with the flag, same tokens.

Parity with Hugging Face (test_parity.py) already runs on the prepacked path; here: that
every linear layer and the lm_head get a packed copy by default, that
--disable-weight-prepack leaves none, and that both serve the same greedy tokens for a
batch (the path the packed weights speed up).
"""

from __future__ import annotations

from radixlm.runtime import Engine
from radixlm.runtime.model.layers.linear import Linear

PROMPTS = ["The capital of France is", "List three colours:", "def fibonacci(n):", "Once upon a time"]
GREEDY = {"max_new_tokens": 12, "temperature": 0}


def _generate(engine: Engine) -> list[list[int]]:
    return [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY)]


def test_prepacked_by_default_and_off_with_the_flag_same_tokens():
    with Engine(max_total_tokens=2000) as engine:
        model = engine.scheduler.runner.model
        linears = [m for m in model.modules() if isinstance(m, Linear)]
        assert linears and all(m.packed is not None for m in linears)
        assert model.lm_head_packed is not None
        packed_ids = _generate(engine)
    with Engine(max_total_tokens=2000, disable_weight_prepack=True) as engine:
        model = engine.scheduler.runner.model
        assert all(m.packed is None for m in model.modules() if isinstance(m, Linear))
        assert model.lm_head_packed is None
        assert _generate(engine) == packed_ids
