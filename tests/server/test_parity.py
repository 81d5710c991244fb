"""The same program of requests gives the same greedy text through /generate,
/v1/completions and the in-process `runtime.Engine`."""

from __future__ import annotations

from .conftest import API_KEY

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at"]
MAX_NEW = 6


def test_generate_completions_and_engine_agree(server):
    import openai

    from radixlm.runtime import Engine

    params = {"max_new_tokens": MAX_NEW, "temperature": 0}
    native = [server.generate({"text": p, "sampling_params": params})["text"] for p in PROMPTS]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    completions = [client.completions.create(model="m", prompt=p, max_tokens=MAX_NEW, temperature=0)
                   .choices[0].text for p in PROMPTS]
    with Engine(max_total_tokens=1024) as engine:
        in_process = [engine.generate(p, params)["text"] for p in PROMPTS]
    assert native == completions == in_process
    assert all(native)
