"""How this process's C heap (glibc malloc) treats the memory that CPU tensors free.

Why keep it: a CPU forward allocates its activations anew in every step (a 2048-token
prefill chunk's MLP input alone is 25 MB) and frees them at its end. glibc serves blocks over
its mmap threshold (128 KiB, raised by each freed mmap up to 32 MiB) with fresh mappings that
go back to the kernel on free, and trims more than 128 KiB of free heap top; either way the
next step touches new pages, and every first touch is a page fault that zeroes 4 KiB. On the
32-prompt batch of benchmarks/bench_offline.py that was 182-194k faults and 0.5-1.6 s of
system time per run before glibc's threshold had risen, and the elementwise ops that first
write those buffers (RoPE, SiLU, residual adds) took 3-4x their warm time
(docs/benchmarks.md, "Freed memory kept for the next step"). With a fixed 32 MiB threshold,
a 1 GiB trim threshold and a 64 MiB top pad the heap keeps the step's working set for the
next step: 3-13k faults per run. One arena for all threads: glibc unmaps a thread arena's
64 MiB sub-heaps as soon as they are empty, whatever the trim threshold, and the Engine's
forward runs on a thread of its own (so do the OpenMP workers).

The price is that memory a peak freed stays with the process (at most one step's
activations), which is why `release_free_memory` exists for an Engine that shuts down.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h) and their values
SETTINGS = (
    (-3, 32 << 20),  # M_MMAP_THRESHOLD: glibc's largest; blocks up to it come from the heap
    (-1, 1 << 30),   # M_TRIM_THRESHOLD: free heap top kept up to this
    (-2, 64 << 20),  # M_TOP_PAD: the heap grows in steps of this (fewer brk calls)
    (-8, 1),         # M_ARENA_MAX: every thread in the main arena
)

_kept = False


def keep_freed_memory() -> bool:
    """Make malloc keep freed blocks for reuse instead of returning them to the kernel (once
    per process; call it before starting the threads that run forwards, since a thread keeps
    the arena it first used). False where libc has no mallopt (not glibc) or refuses a value."""
    global _kept
    if _kept:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
        ok = all([mallopt(param, value) == 1 for param, value in SETTINGS])
    except (OSError, AttributeError):
        ok = False
    if not ok:
        logger.info("malloc settings unchanged (no glibc mallopt): CPU steps page-fault their buffers anew")
    _kept = ok
    return ok


def release_free_memory() -> None:
    """Hand the memory this thread's tensors freed back to the OS. Why: glibc gives each
    thread its own malloc arena and keeps what is freed there for reuse by that thread; the
    Engine's loop thread ends, so its arena's ~1-2 GB (weights, prepacked copies, KV pool)
    would stay resident for the life of the process, once per Engine (a test run creating
    dozens grew to 14 GiB). No-op where libc has no malloc_trim."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
