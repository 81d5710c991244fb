"""Soak tests (issue 7): one real server under a mixed, bounded load; see driver.py for
the sequence and docs/reliability.md for the figures.

The short soak runs in the default suite (about a minute on a 2-core CPU); the full one is
`-m slow`. Set SOAK_REPORT=path to also write the figures table there.
"""

from __future__ import annotations

import os

import pytest

from .driver import SoakConfig, run_soak
from .workload import Mix

SHORT = SoakConfig(duration_s=25, max_requests=300, concurrency=24,
                   mix=Mix(max_new_tokens=8, greedy_pool=7), max_total_tokens=2048,
                   hang_timeout_s=120, drain_timeout_s=60)
FULL = SoakConfig(duration_s=240, max_requests=5000, concurrency=128,
                  mix=Mix(max_new_tokens=16, greedy_pool=18), max_total_tokens=4096,
                  hang_timeout_s=300)


def _soak(cfg: SoakConfig) -> None:
    report = run_soak(cfg)
    print("\n" + report.table())
    if path := os.environ.get("SOAK_REPORT"):
        with open(path, "w") as f:
            f.write(report.table() + "\n\nRSS by tenth of the soak:\n\n" + report.rss_series() + "\n")
    failures = report.failures()
    assert not failures, "\n".join(failures)


def test_short_soak_serves_every_request_and_leaks_nothing():
    _soak(SHORT)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # above the suite's 900 s: a shared 2-core machine can need it
def test_full_soak_at_concurrency_128():
    _soak(FULL)
