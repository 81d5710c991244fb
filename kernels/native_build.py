"""C kernels for the CPU, compiled on first use and loaded with ctypes.

Built with the system C compiler (`cc`, or $CC: the one TorchInductor already needs) into
`$XDG_CACHE_HOME/radixlm/native` (default ~/.cache), keyed by the source, the flags and the
CPU, so a machine builds each library once (~1 s) and a change of source or CPU builds anew.
Without a compiler, or with RADIXLM_NATIVE=0, `NativeLibrary.get()` returns None and every
caller keeps its torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# Reassociation lets the compiler vectorise dot products and sums; no -ffast-math, which
# would also assume no infinities (softmax's running max starts at -inf). 512-bit vectors
# where the CPU has them: GCC's tuning for the AMX Xeon otherwise emits 256-bit loops
# (the attention tiles ran 20% faster with this flag alone); a no-op without AVX-512.
CFLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fPIC", "-shared", "-fopenmp",
          "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros")

# What every library's source starts with.
C_PRELUDE = r"""
#include <math.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))

/* e^x for x <= 0 (Cephes' expf: range reduction by ln 2, degree-6 polynomial; relative error
   ~1e-7, below x = -87 it returns e^-87). Written without calls so the loops over a block's
   scores vectorise; libm's expf is a scalar call per element. */
INLINE float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n = { .i = ((int32_t)n + 127) << 23 };
    return p * two_n.f;
}

/* bfloat16 is the upper half of a float32. */
INLINE float bf16_to_f32(uint16_t b) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)b << 16 };
    return v.f;
}

/* Round to nearest even, as torch's float -> bfloat16 conversion (NaN stays a quiet NaN). */
INLINE uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
"""

_enabled = os.environ.get("RADIXLM_NATIVE", "1") != "0"


def set_enabled(flag: bool) -> None:
    """Use the C kernels where they apply (default), or always the torch paths (their tests)."""
    global _enabled
    _enabled = flag


def sources_digest() -> str:
    """A short hash of every C library's source and flags: what a change of kernel changes."""
    parts = sorted("\0".join([lib.name, lib.source, *lib.cflags]) for lib in NativeLibrary.defined)
    return hashlib.sha256("\1".join(parts).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "radixlm" / "native"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def build(name: str, source: str, cflags: tuple[str, ...]) -> Path:
    """The shared library of `source`, compiled now or found in the cache."""
    key = hashlib.sha256("\0".join([source, *cflags, platform.machine(), _cpu_id()]).encode()).hexdigest()[:16]
    out = cache_dir() / f"{name}-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # same filesystem: os.replace works
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        so = Path(tmp) / f"{name}.so"
        subprocess.run([os.environ.get("CC", "cc"), *cflags, str(src), "-o", str(so), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        os.replace(so, out)  # atomic: a concurrent builder sees a whole library or none
    return out


class NativeLibrary:
    """One C source, built and loaded once per process on first `get()`; `declare` sets the
    argument types of its functions."""

    defined: list[NativeLibrary] = []  # every library of the package, in import order

    def __init__(self, name: str, source: str, declare: Callable[[ctypes.CDLL], None],
                 cflags: tuple[str, ...] = CFLAGS) -> None:
        self.name, self.source, self.declare, self.cflags = name, source, declare, cflags
        self._loaded: ctypes.CDLL | None = None
        self._failed = False
        NativeLibrary.defined.append(self)

    def get(self) -> ctypes.CDLL | None:
        """The loaded library, or None (disabled, or it did not build: said once in the log)."""
        if not _enabled or self._failed:
            return None
        if self._loaded is None:
            try:
                lib = ctypes.CDLL(str(build(self.name, self.source, self.cflags)))
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                logger.warning("native CPU %s not built, using the torch path: %s", self.name, detail.strip()[:300])
                self._failed = True
                return None
            self.declare(lib)
            self._loaded = lib
        return self._loaded
