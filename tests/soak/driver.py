"""The soak: one real server, a bounded storm of mixed requests, then the checks.

    run_soak(SoakConfig(...)) -> SoakReport; report.failures() lists every violated check.

Sequence:
  1. start the server (small KV pool: the load causes eviction and retraction);
  2. send each distinct greedy request alone: its reference answer (also warms the grammar cache);
  3. the soak: `concurrency` clients send plans from `Workload` until `duration_s` or
     `max_requests`, whichever first; in-flight requests then finish (or hit the hang timeout);
  4. wait until the scheduler is idle, read its KV accounting and structural checks
     (/get_server_info) and the abort counters (/metrics), sample RSS once more;
  5. one greedy request alone again: the server still answers, and still the same.
RSS of the three processes is sampled throughout (rss.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from . import server as soak_server
from .checks import answer_of, greedy_mismatches, problems
from .client import OK, Outcome, new_client, send
from .report import SoakReport
from .rss import RssSampler, RssTolerance, judge_rss
from .workload import Mix, Plan, Workload


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float  # no new request after this long
    max_requests: int  # nor after this many
    concurrency: int
    mix: Mix = field(default_factory=Mix)
    max_total_tokens: int = 4096  # KV pool size: small enough to force eviction/retraction
    seed: int = 0
    warmup_fraction: float = 0.3  # of duration_s: RSS may grow until then
    rss_tolerance: RssTolerance = field(default_factory=RssTolerance)
    hang_timeout_s: float = 600.0  # a request unanswered this long is a hang
    drain_timeout_s: float = 120.0
    server_args: tuple[str, ...] = ()


def run_soak(cfg: SoakConfig) -> SoakReport:
    t0 = time.monotonic()
    srv = soak_server.start("--max-total-tokens", str(cfg.max_total_tokens), *cfg.server_args)
    started_s = time.monotonic() - t0
    try:
        sampler = RssSampler(srv.processes())
        sampler.sample_now()
        sampler.start()
        try:
            report = _run(cfg, srv, sampler)
        finally:
            sampler.stop()
    finally:
        soak_server.stop(srv)
    report.phases = {"server start": started_s, **report.phases}
    return report


def _run(cfg: SoakConfig, srv: soak_server.SoakServer, sampler: RssSampler) -> SoakReport:
    workload = Workload(cfg.mix, cfg.seed)
    greedy = workload.greedy_plans()
    reference, ref_errors = _alone(srv.url, greedy, cfg.hang_timeout_s)
    aborted_before = srv.metric("radixlm_requests_aborted_total")
    finished_before = srv.metric("radixlm_requests_finished_total")
    soak_start = sampler.elapsed()
    outcomes = asyncio.run(_drive(cfg, srv.url, workload))
    soak_s = sampler.elapsed() - soak_start
    state = srv.wait_idle(cfg.drain_timeout_s)
    end_rss = sampler.sample_now()
    aborted = srv.metric("radixlm_requests_aborted_total") - aborted_before
    finished = srv.metric("radixlm_requests_finished_total") - finished_before
    after, after_errors = _alone(srv.url, greedy[:1], cfg.hang_timeout_s)
    warmup = (soak_start, soak_start + cfg.warmup_fraction * soak_s)
    return SoakReport(
        config=cfg, soak_s=soak_s, outcomes=outcomes, state=state,
        reference_errors=ref_errors + after_errors,
        greedy_mismatches=greedy_mismatches(outcomes, reference) + _still_same(after, reference),
        aborted=aborted, finished=finished,
        rss=judge_rss(sampler.samples, warmup, end_rss, cfg.rss_tolerance),
        rss_samples=[x for x in sampler.samples if soak_start <= x.t <= soak_start + soak_s],
        phases={"references alone": soak_start, "soak": soak_s,
                "drain + checks": sampler.elapsed() - soak_start - soak_s},
    )


def _alone(url: str, plans: list[Plan], hang_timeout_s: float) -> tuple[dict[str, str], list[str]]:
    """Send each plan alone, one after another: key -> answer text, and what went wrong."""
    async def run() -> list[Outcome]:
        async with new_client(url, 1) as client:
            return [await send(client, p, hang_timeout_s) for p in plans]

    answers, errors = {}, []
    for out in asyncio.run(run()):
        found = [out.error] if out.status != OK else problems(out)
        if found:
            errors.append(f"alone {out.plan.api} {out.plan.prompt.question!r}: {found}")
        else:
            answers[out.plan.greedy_key] = answer_of(out).text
    return answers, errors


def _still_same(after: dict[str, str], reference: dict[str, str]) -> list[str]:
    return [f"after the soak, alone: {text!r} != before {reference.get(key)!r}"
            for key, text in after.items() if reference.get(key) != text]


async def _drive(cfg: SoakConfig, url: str, workload: Workload) -> list[Outcome]:
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + cfg.duration_s
    budget = iter(range(cfg.max_requests))

    async with new_client(url, cfg.concurrency) as client:
        async def client_loop() -> None:
            while time.monotonic() < deadline and next(budget, None) is not None:
                outcomes.append(await send(client, workload.next(), cfg.hang_timeout_s))

        await asyncio.gather(*(client_loop() for _ in range(cfg.concurrency)))
    return outcomes
