"""Run one timed system in a process of its own and read back its JSON result.

Every benchmark times each system in a fresh process (and peers in their own virtual
environments), so that one system's threads, caches and allocator state never touch
another's timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile


def run_child(cmd: list[str], result_path: str) -> dict:
    """Run `cmd` (which writes its result to `result_path`); {"error": ...} if it fails."""
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0-1"))
    # Run outside the repository: its top-level folders (kernels/, lang/, runtime/) would
    # shadow PyPI packages of the same names in a peer's interpreter (vLLM imports `kernels`).
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-400:].strip().replace("\n", " | ")}
    with open(result_path) as f:
        return json.load(f)
