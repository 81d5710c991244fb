"""Soak tests (issue 7): one real server under a mixed, bounded load; see driver.py for
the sequence and docs/reliability.md for the figures.

The short soak runs in the default suite (about a minute on a 2-core CPU); the full one is
`-m slow`. Set SOAK_REPORT=path to also write the figures table there.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from .driver import SoakConfig, run_soak
from .report import SoakReport
from .workload import Mix

SHORT = SoakConfig(duration_s=25, max_requests=300, concurrency=24,
                   mix=Mix(max_new_tokens=8, greedy_pool=7), max_total_tokens=2048,
                   hang_timeout_s=120, drain_timeout_s=60)
FULL = SoakConfig(duration_s=240, max_requests=5000, concurrency=128,
                  mix=Mix(max_new_tokens=16, greedy_pool=18), max_total_tokens=4096,
                  hang_timeout_s=300)


HOSTILE_SHARE = 0.1
LATENCY_RATIO_BOUND = 1.5  # p99 of the well-formed requests, hostile share vs none


def _soak(cfg: SoakConfig, name: str = "") -> SoakReport:
    report = run_soak(cfg)
    print(f"\n{name}\n" + report.table())
    if path := os.environ.get("SOAK_REPORT"):
        with open(path + name, "w") as f:
            f.write(report.table() + "\n\nRSS by tenth of the soak:\n\n" + report.rss_series() + "\n")
    failures = report.failures()
    assert not failures, "\n".join(failures)
    return report


def _with_hostile(cfg: SoakConfig) -> SoakConfig:
    return dataclasses.replace(cfg, mix=dataclasses.replace(cfg.mix, hostile_share=HOSTILE_SHARE))


def _compare(base: SoakReport, hostile: SoakReport) -> None:
    assert sum(o.plan.hostile is not None for o in hostile.outcomes) > 0
    assert hostile.latency(99) <= LATENCY_RATIO_BOUND * base.latency(99), (
        f"p99 of the well-formed requests {hostile.latency(99):.2f} s with a hostile share vs "
        f"{base.latency(99):.2f} s without")


def test_short_soak_serves_every_request_and_leaks_nothing():
    """Then again with a share of hostile constraints: the well-formed requests still lose
    nothing and keep their p99 latency within LATENCY_RATIO_BOUND (same run)."""
    base = _soak(SHORT)
    _compare(base, _soak(_with_hostile(SHORT), "-hostile"))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # above the suite's 900 s: a shared 2-core machine can need it
def test_full_soak_at_concurrency_128():
    base = _soak(FULL)
    _compare(base, _soak(_with_hostile(FULL), "-hostile"))
