"""Backends: where a program's gens and selects run (docs/architecture.md §8).

Nothing here imports torch or radixlm.runtime at load time; `EngineBackend` and `Runtime`
import the runtime lazily when constructed.
"""
