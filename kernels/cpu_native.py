"""Decode attention over the KV pool in C, compiled on first use (CPU, float32).

Why: the torch version (cpu_attention.py) gathers every query row's K and V out of the pool
into new tensors, then runs batched matmuls and a softmax over them: at 64 decode rows of
~100 keys that is ~10 MB copied and re-read per layer, ~3 ms of a ~12 ms layer. Here each
(row, KV head) reads its keys straight from the pool through `req_to_token` and keeps an
online softmax (running max, sum and weighted V) for the G query heads that share the KV
head, so K/V are read once and nothing is materialised.

Built with the system C compiler (`cc`, the one TorchInductor already needs) into
`$XDG_CACHE_HOME/radixlm/native` (default ~/.cache), keyed by the source, flags and CPU;
OpenMP threads match `torch.get_num_threads()`. Without a compiler, or with
RADIXLM_NATIVE=0, `decode_rows()` returns None and callers keep the torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

C_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Row r (query q[r], H heads of D) attends to keys [start, seq[r]) of pool row pool_rows[r]:
   key position s sits in slot table[pool_rows[r] * table_stride + s] of k/v [slots, KV, D].
   Writes o[r] ([H, D]) and lse[r] ([H], natural log; -inf for an empty key range). */
void decode_rows_f32(const float *q, const float *k, const float *v, const int32_t *table,
                     int64_t table_stride, const int64_t *pool_rows, const int64_t *seq,
                     int64_t start, int64_t n, int64_t H, int64_t KV, int64_t D, float scale,
                     float *o, float *lse, int nthreads)
{
    const int64_t G = H / KV;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t item = 0; item < n * KV; ++item) {
        const int64_t r = item / KV, h = item % KV;
        const int32_t *slots = table + pool_rows[r] * table_stride;
        const float *qr = q + (r * H + h * G) * D;
        float m[G], l[G], acc[G * D];
        for (int64_t g = 0; g < G; ++g) { m[g] = -INFINITY; l[g] = 0.0f; }
        memset(acc, 0, sizeof(float) * G * D);
        for (int64_t s = start; s < seq[r]; ++s) {
            const int64_t row = (int64_t)slots[s] * KV + h;
            const float *kr = k + row * D, *vr = v + row * D;
            for (int64_t g = 0; g < G; ++g) {
                const float *qg = qr + g * D;
                float dot = 0.0f;
                for (int64_t d = 0; d < D; ++d) dot += qg[d] * kr[d];
                dot *= scale;
                float *ag = acc + g * D;
                if (dot > m[g]) {  /* new running max: rescale what was summed so far */
                    const float c = expf(m[g] - dot);
                    l[g] *= c;
                    for (int64_t d = 0; d < D; ++d) ag[d] *= c;
                    m[g] = dot;
                }
                const float p = expf(dot - m[g]);
                l[g] += p;
                for (int64_t d = 0; d < D; ++d) ag[d] += p * vr[d];
            }
        }
        for (int64_t g = 0; g < G; ++g) {
            float *og = o + (r * H + h * G + g) * D;
            const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
            for (int64_t d = 0; d < D; ++d) og[d] = acc[g * D + d] * inv;
            lse[r * H + h * G + g] = l[g] > 0.0f ? m[g] + logf(l[g]) : -INFINITY;
        }
    }
}
"""

# Reassociation lets the compiler vectorise the dot products and V sums; no -ffast-math,
# which would also assume no infinities (the running max starts at -inf).
CFLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno",
          "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros"]

_loaded: ctypes.CDLL | None = None
_failed = False
_enabled = os.environ.get("RADIXLM_NATIVE", "1") != "0"


def set_enabled(flag: bool) -> None:
    """Use the C kernel where it applies (default), or always the torch path (tests of it)."""
    global _enabled
    _enabled = flag


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "radixlm" / "native"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build() -> Path:
    key = hashlib.sha256("\0".join([C_SOURCE, *CFLAGS, platform.machine(), _cpu_id()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"attention-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # same filesystem: os.replace works
        src = Path(tmp) / "attention.c"
        src.write_text(C_SOURCE)
        so = Path(tmp) / "attention.so"
        subprocess.run([os.environ.get("CC", "cc"), *CFLAGS, str(src), "-o", str(so), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        os.replace(so, out)  # atomic: a concurrent builder sees a whole library or none
    return out


def _library() -> ctypes.CDLL | None:
    global _loaded, _failed
    if not _enabled:
        return None
    if _loaded is not None or _failed:
        return _loaded
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        logger.warning("native CPU attention not built, using the torch path: %s", detail.strip()[:300])
        _failed = True
        return None
    fn = lib.decode_rows_f32
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p] + \
        [ctypes.c_int64] * 5 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    _loaded = lib
    return _loaded


def available() -> bool:
    return _library() is not None


def decode_rows(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, req_to_token: torch.Tensor,
                pool_rows: torch.Tensor, seq: torch.Tensor, start: int,
                scale: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Row r of q [n, H, D] against keys [start, seq[r]) of request row pool_rows[r] ->
    (o [n, H, D], lse [n, H]), or None where this path does not apply (not float32 CPU, no
    compiler): the caller then runs the torch version."""
    lib = _library()
    if lib is None or not all(t.dtype == torch.float32 and not t.is_cuda for t in (q, k_cache, v_cache)):
        return None
    if not (k_cache.is_contiguous() and v_cache.is_contiguous() and req_to_token.is_contiguous()):
        return None
    n, H, D = q.shape
    q = q.contiguous()
    pool_rows = pool_rows.to(torch.int64).contiguous()
    seq = seq.to(torch.int64).contiguous()
    table = req_to_token if req_to_token.dtype == torch.int32 else req_to_token.to(torch.int32)
    o = torch.empty(n, H, D, dtype=torch.float32)
    lse = torch.empty(n, H, dtype=torch.float32)
    lib.decode_rows_f32(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), table.data_ptr(),
                        table.stride(0), pool_rows.data_ptr(), seq.data_ptr(), start, n, H,
                        k_cache.shape[1], D, scale, o.data_ptr(), lse.data_ptr(), torch.get_num_threads())
    return o, lse
