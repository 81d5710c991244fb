"""Shared by the examples: pick the backend from the command line.

    python examples/quick_start.py                         # in-process engine (bundled model)
    python examples/quick_start.py --url http://127.0.0.1:30000   # a running `radixlm serve`
"""

from __future__ import annotations

import argparse

import radixlm.lang as rl


def backend_from_args(description: str, extra=None):
    """Parse --url / --model-path; set and return the default backend."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="a radixlm or SGLang server; default: in-process engine")
    parser.add_argument("--model-path", default=None, help="for the in-process engine")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.url:
        backend = rl.RuntimeEndpoint(args.url)
    else:
        backend = rl.EngineBackend(model_path=args.model_path, max_total_tokens=20000)
    rl.set_default_backend(backend)
    return backend, args
