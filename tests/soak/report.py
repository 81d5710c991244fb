"""What a soak measured, which checks it failed, and the figures table for docs/reliability.md."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .checks import percentile, problems
from .client import DISCONNECTED, ERROR, OK, Outcome
from .rss import RssSample, RssVerdict
from .workload import LEAVE_STREAM, TIMEOUT

if TYPE_CHECKING:
    from .driver import SoakConfig

SHOWN = 10  # failures listed per kind


@dataclass
class SoakReport:
    config: SoakConfig
    soak_s: float
    outcomes: list[Outcome]
    state: dict[str, Any]  # the scheduler's state once idle
    reference_errors: list[str]
    greedy_mismatches: list[str]
    aborted: float  # server-side aborts during the soak (/metrics)
    finished: float  # server-side finished requests of any reason during the soak
    rss: list[RssVerdict] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase
    rss_samples: list[RssSample] = field(default_factory=list)  # those taken during the soak

    @property
    def counts(self) -> Counter:
        return Counter(o.status for o in self.outcomes)

    def latency(self, q: float) -> float:
        """Of the answered well-formed requests (hostile ones may wait for their compile)."""
        return percentile([o.latency_s for o in self.outcomes if o.status == OK and not o.plan.hostile], q)

    def failures(self) -> list[str]:
        found = [f"error: {o.plan.api} stream={o.plan.stream}: {o.error}"
                 for o in self.outcomes if o.status == ERROR][:SHOWN]
        found += [f"bad answer: {o.plan.api} stream={o.plan.stream}: {p}"
                  for o in self.outcomes if o.status == OK and not o.plan.hostile for p in problems(o)][:SHOWN]
        found += self.reference_errors[:SHOWN] + self.greedy_mismatches[:SHOWN]
        found += self._kv_failures() + self._accounting_failures() + self._coverage_gaps()
        found += [f"RSS of {v.name} grew after warm-up: {v.end_mb:.0f} MiB > limit {v.limit_mb:.0f} "
                  f"(plateau {v.plateau_mb:.0f})" for v in self.rss if not v.ok]
        return found

    def _kv_failures(self) -> list[str]:
        s = self.state
        ok = (s["kv_pool_invariant_ok"] and s["kv_structure_checked"] and s["kv_held"] == 0
              and s["kv_protected"] == 0
              and s["kv_free"] + s["kv_evictable"] + s["kv_protected"] == s["kv_pool_size"])
        return [] if ok else [f"KV pool accounting after the drain: {s}"]

    def _accounting_failures(self) -> list[str]:
        c, found = self.counts, []
        refused = sum(1 for o in self.outcomes if o.plan.hostile and o.http_status != 200)
        if self.aborted > c[DISCONNECTED] + refused:
            found.append(f"{self.aborted:.0f} server aborts but only {c[DISCONNECTED]} clients left "
                         f"and {refused} hostile requests were refused")
        if not c[OK] <= self.finished <= len(self.outcomes):
            found.append(f"server finished {self.finished:.0f} requests; clients sent "
                         f"{len(self.outcomes)}, {c[OK]} answered")
        return found

    def _coverage_gaps(self) -> list[str]:
        """The mix really ran: every API x streaming pair answered, every constraint kind
        validated, and both kinds of disconnect happened."""
        done = [o for o in self.outcomes if o.status == OK]
        seen = {(o.plan.api, o.plan.stream) for o in done}
        seen |= {o.plan.constraint[0] for o in done if o.plan.constraint}
        seen |= {o.plan.behaviour for o in self.outcomes if o.status == DISCONNECTED}
        wanted = {(a, s) for a in ("native", "chat", "completions") for s in (False, True)}
        wanted |= {"regex", "json_schema", "choices", LEAVE_STREAM, TIMEOUT}
        return [f"never exercised: {w}" for w in sorted(wanted - seen, key=str)]

    def table(self) -> str:
        c, s = self.counts, self.state
        rows = [
            ("requests sent", f"{len(self.outcomes)} in {self.soak_s:.0f} s at concurrency "
                              f"{self.config.concurrency}"),
            ("answered completely", str(c[OK])),
            ("client disconnects (planned)", f"{c[DISCONNECTED]} (server aborts: {self.aborted:.0f})"),
            ("errors / bad answers", f"{c[ERROR]} / {sum(bool(problems(o)) for o in self.outcomes if o.status == OK)}"),
            ("greedy answers checked / differing",
             f"{sum(o.plan.greedy for o in self.outcomes if o.status == OK)} / {len(self.greedy_mismatches)}"),
            ("latency p50 / p99 (answered)", f"{self.latency(50):.1f} s / {self.latency(99):.1f} s"),
            ("retractions / cache hit rate", f"{s['retractions']} / {s['cache_hit_rate']:.2f}"),
            ("KV pool after drain", f"free {s['kv_free']} + evictable {s['kv_evictable']} + protected "
                                    f"{s['kv_protected']} = {s['kv_pool_size']}, checks ok: "
                                    f"{s['kv_pool_invariant_ok'] and s['kv_structure_checked']}"),
        ]
        rows += [(f"RSS {v.name} (MiB)", f"start {v.start_mb:.0f}, warm-up {v.plateau_mb:.0f}, "
                                         f"end {v.end_mb:.0f}, peak {v.peak_mb:.0f} (limit {v.limit_mb:.0f})")
                 for v in self.rss]
        rows.append(("wall time", ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items())))
        return "\n".join(["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])

    def rss_series(self, parts: int = 10) -> str:
        """Highest RSS per process in each tenth of the soak (does it level off?)."""
        if not self.rss_samples:
            return ""
        t0, t1 = self.rss_samples[0].t, self.rss_samples[-1].t
        span = max(t1 - t0, 1e-9)
        slices = [[s for s in self.rss_samples if k <= (s.t - t0) / span * parts < k + 1
                   or (k == parts - 1 and s.t == t1)] for k in range(parts)]
        names = list(self.rss_samples[0].mb)
        head = "| MiB | " + " | ".join(f"{(k + 1) * 100 // parts}%" for k in range(parts)) + " |"
        rows = [f"| {n} | " + " | ".join(f"{max(s.mb[n] for s in sl):.0f}" if sl else "-"
                                        for sl in slices) + " |" for n in names]
        return "\n".join([head, "|---|" + "---:|" * parts, *rows])
