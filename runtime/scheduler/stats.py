"""SchedulerStats: counters of the scheduler's work, read by /get_server_info and /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from radixlm.runtime.scheduler.batch import ScheduledBatch


@dataclass
class SchedulerStats:
    steps: int = 0
    forward_tokens: int = 0
    # forward_tokens split by row: one-token rows (decodes) and longer ones (prompt chunks,
    # jump-forward extends); the web view shows their rates
    decode_tokens: int = 0
    extend_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    retractions: int = 0
    jumped_tokens: int = 0
    draft_tokens_accepted: int = 0  # back-off tokens the model picked where they were drafted
    draft_tokens_rejected: int = 0

    def record_step(self, batch: ScheduledBatch) -> None:
        self.steps += 1
        self.forward_tokens += batch.num_tokens
        decodes = batch.extend_lens.count(1)
        self.decode_tokens += decodes
        self.extend_tokens += batch.num_tokens - decodes

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
