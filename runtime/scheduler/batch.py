"""ScheduledBatch: the requests chosen for one step and how many tokens each computes.

Turns the choice into a ForwardBatch and records, per request, which logits rows belong to
it: a span of prompt positions (for prompt logprobs) and the row that samples its next token.
Owned by the scheduler; lives for one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.scheduler.request import Req


@dataclass
class LogitRows:
    prompt_positions: list[int] = field(default_factory=list)  # absolute positions p (predict p+1)
    prompt_rows: list[int] = field(default_factory=list)  # their rows in the logits
    sample_row: int | None = None  # row whose logits pick the next token
    verify_row: int | None = None  # row before a draft token: do the logits there pick it?


@dataclass
class ScheduledBatch:
    reqs: list[Req]
    extend_lens: list[int]
    rows: list[LogitRows] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(self.extend_lens)

    def build(
        self, out_cache_loc: torch.Tensor, req_pool: ReqToTokenPool, kv_pool: KVPool, device
    ) -> ForwardBatch:
        """Write the new slots into req_to_token and build the forward's index tensors."""
        input_ids: list[int] = []
        logits_indices: list[int] = []
        self.rows = []
        offset = 0
        for req, ext in zip(self.reqs, self.extend_lens):
            start, end = req.prefix_len, req.prefix_len + ext
            req_pool.req_to_token[req.req_pool_idx, start:end] = out_cache_loc[offset : offset + ext].to(
                torch.int32
            )
            input_ids.extend(req.fill_ids[start:end])
            rows = LogitRows()
            for pos in self._prompt_logit_positions(req, start, end):
                rows.prompt_positions.append(pos)
                rows.prompt_rows.append(len(logits_indices))
                logits_indices.append(offset + pos - start)
            if end == len(req.fill_ids) and req.sampling_params.max_new_tokens > 0:
                if req.draft_id is not None:
                    assert ext >= 2, "a draft is computed together with the position before it"
                    rows.verify_row = len(logits_indices)
                    logits_indices.append(offset + ext - 2)
                rows.sample_row = len(logits_indices)
                logits_indices.append(offset + ext - 1)
            self.rows.append(rows)
            offset += ext
        return ForwardBatch.build(
            input_ids=input_ids,
            req_pool_indices=[r.req_pool_idx for r in self.reqs],
            prefix_lens=[r.prefix_len for r in self.reqs],
            extend_lens=self.extend_lens,
            out_cache_loc=out_cache_loc,
            logits_indices=logits_indices,
            req_to_token=req_pool.req_to_token,
            k_buffers=kv_pool.k_buffers,
            v_buffers=kv_pool.v_buffers,
            device=device,
        )

    @staticmethod
    def _prompt_logit_positions(req: Req, start: int, end: int) -> range:
        """Prompt positions in [start, end) whose logits score the next prompt token."""
        first = req.prompt_logprob_start
        if first is None or req.input_token_logprobs_done:
            return range(0)
        last = len(req.input_ids) - 2  # position len-1 predicts the first output token
        return range(max(start, first), min(end - 1, last) + 1)
