"""Prometheus metrics of the server, served as text at `GET /metrics`.

Request-level counters and latency histograms are recorded by the TokenizerManager as
outputs arrive; scheduler gauges (queue lengths, KV pool accounting, radix hit rate) are
refreshed from a `SchedulerState` snapshot when /metrics is scraped. A private registry
keeps two servers in one process (tests) from colliding. A replica (`--replica-name`, set by
`--dp`) adds the label `replica="<name>"` to every sample, so one Prometheus query can tell
the replicas behind a router apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from radixlm.runtime.scheduler.io import ReqTokenOutput
from radixlm.runtime.server.messages import SchedulerState

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    def __init__(self, replica: str | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.exported = r
        if replica is not None:
            self.exported = CollectorRegistry()
            self.exported.register(_Labelled(r, "replica", replica))
        self.running = Gauge("radixlm_num_running_reqs", "Requests in the running batch", registry=r)
        self.waiting = Gauge("radixlm_num_waiting_reqs", "Requests in the waiting queue", registry=r)
        self.kv_usage = Gauge(
            "radixlm_kv_cache_usage_ratio",
            "KV slots in use by requests or locked in the radix cache, over the pool size", registry=r,
        )
        self.kv_tokens = Gauge(
            "radixlm_kv_pool_tokens", "KV pool slots by state (free/evictable/protected/held)",
            ["state"], registry=r,
        )
        self.hit_rate = Gauge(
            "radixlm_radix_cache_hit_rate", "Prompt tokens served from the radix cache, over all",
            registry=r,
        )
        self.prompt_tokens = Counter("radixlm_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generation_tokens = Counter("radixlm_generation_tokens", "Generated tokens", registry=r)
        self.cached_tokens = Counter(
            "radixlm_cached_prompt_tokens", "Prompt tokens served from the radix cache", registry=r
        )
        self.requests = Counter(
            "radixlm_requests_finished", "Finished requests by finish reason", ["finish_reason"], registry=r
        )
        self.aborts = Counter(
            "radixlm_requests_aborted", "Requests aborted (client disconnect, abort call, error)", registry=r
        )
        self.ttft = Histogram(
            "radixlm_time_to_first_token_seconds", "Time to first token", buckets=LATENCY_BUCKETS, registry=r
        )
        self.itl = Histogram(
            "radixlm_inter_token_latency_seconds", "Time between output tokens",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.e2e = Histogram(
            "radixlm_e2e_request_latency_seconds", "Request latency, arrival to last token",
            buckets=LATENCY_BUCKETS, registry=r,
        )

    def observe_scheduler(self, s: SchedulerState) -> None:
        self.running.set(s.running)
        self.waiting.set(s.waiting)
        self.kv_usage.set((s.kv_held + s.kv_protected) / s.kv_pool_size if s.kv_pool_size else 0.0)
        for state in ("free", "evictable", "protected", "held"):
            self.kv_tokens.labels(state).set(getattr(s, f"kv_{state}"))
        self.hit_rate.set(s.cache_hit_rate)

    def on_finish(self, out: ReqTokenOutput, e2e_seconds: float) -> None:
        reason = out.finish_reason.type if out.finish_reason else "unknown"
        self.requests.labels(reason).inc()
        if reason == "abort":
            self.aborts.inc()
        self.prompt_tokens.inc(out.prompt_tokens)
        self.generation_tokens.inc(out.completion_tokens)
        self.cached_tokens.inc(out.cached_tokens)
        self.e2e.observe(e2e_seconds)

    def render(self) -> bytes:
        return generate_latest(self.exported)


class _Labelled:
    """A collector that yields another registry's metrics with one more label on each sample."""

    def __init__(self, registry: CollectorRegistry, name: str, value: str) -> None:
        self.registry, self.name, self.value = registry, name, value

    def collect(self):
        for metric in self.registry.collect():
            metric.samples = [s._replace(labels={**s.labels, self.name: self.value}) for s in metric.samples]
            yield metric
