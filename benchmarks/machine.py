"""The machine a benchmark ran on, in one line: CPU model, its vector features, cores, torch.

Every benchmark prints this first (`print_machine()`) and names it in its tables, because
the same code runs at different relative speeds on CPUs with and without AVX-512 or AMX.
Reads /proc/cpuinfo (Linux); elsewhere it falls back to `platform`.
"""

from __future__ import annotations

import os
import platform

# /proc/cpuinfo flag -> the name tables use, in the order they are listed
VECTOR_FEATURES = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512_bf16", "AVX512-BF16"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
)


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector features of VECTOR_FEATURES this CPU has (empty if /proc/cpuinfo is absent)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [label for flag, label in VECTOR_FEATURES if flag in flags]


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_line() -> str:
    """'AMD EPYC (AVX2, AVX-512, AVX512-BF16), 2 cores'."""
    features = ", ".join(cpu_features()) or "no AVX2"
    return f"{cpu_model()} ({features}), {cpu_count()} cores"


def machine_line() -> str:
    """cpu_line() plus the torch version of this interpreter (if it has torch)."""
    try:
        import torch

        return f"{cpu_line()}, torch {torch.__version__}"
    except ImportError:
        return cpu_line()


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. '3.2 / 2.9 / 2.5' ('n/a' where unsupported)."""
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_machine() -> str:
    """Print the machine line (first thing a benchmark prints) and return it."""
    line = machine_line()
    print(f"machine: {line}; load average {load_average()}", flush=True)
    return line
