"""The CPU runtime's malloc settings (runtime/model/host_memory.py), in processes of their own:
the settings change glibc for the whole process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_once_per_process_and_released_on_request():
    done = run(
        "from radixlm.runtime.model import host_memory as hm\n"
        "assert hm.keep_freed_memory() and hm.keep_freed_memory()\n"
        "import torch\n"
        "for rows in (2048, 700, 2048):\n"
        "    (torch.ones(rows, 3072) * 2).sum()\n"  # the heap serves and takes back step-sized blocks
        "hm.release_free_memory()\n"
        "print('ok')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

