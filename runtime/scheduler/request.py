"""Req: one generation request as the scheduler tracks it (owned by the scheduler process).

Length vocabulary (docs/architecture.md §3): `fill_ids` = prompt + output so far;
`prefix_len` = tokens of fill_ids whose KV this request holds in the pool (matched from the
radix cache or computed by earlier forwards); the next forward extends from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.io import FinishReason, TokenizedRequest


@dataclass
class Req:
    rid: str
    input_ids: list[int]
    sampling_params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1  # absolute position; -1 = no prompt logprobs
    top_logprobs_num: int = 0
    output_ids: list[int] = field(default_factory=list)

    # KV bookkeeping (scheduler-owned)
    req_pool_idx: int | None = None
    prefix_len: int = 0
    last_node: Any = None  # locked radix-cache handle covering fill_ids[:cached part]
    cached_tokens: int = 0  # prompt tokens served from the radix cache at first admission
    admitted: bool = False
    num_retractions: int = 0

    finish_reason: FinishReason | None = None
    grammar: Any = None  # per-request grammar matcher (constrained decoding)
    grammar_handle: Any = None  # pending compile while the request sits in the grammar queue
    budgeted: bool = False  # the grammar keeps a complete match reachable in the tokens left
    end_on_reject: bool = False  # a complete match ends where the model wants a forbidden token
    # structural_tag (scheduler/triggers.py): trigger -> its compiled grammar; while
    # `in_structure` the grammar is one of them, started `grammar_offset` output tokens in.
    triggers: dict[str, Any] | None = None
    trigger_costs: dict[str, int] = field(default_factory=dict)  # fewest tokens to finish one
    budget_structures: bool = False
    in_structure: bool = False
    grammar_offset: int = 0
    # Jump-forward's back-off token, run (not yet emitted) at the end of fill_ids: the next
    # forward also yields the logits at its position, and it is kept only if the model picks
    # it there (Scheduler._settle_draft); otherwise its KV slot is given back.
    draft_id: int | None = None
    jumped_tokens: int = 0  # output tokens appended by jump-forward (not sampled)
    jump_positions: list[int] = field(default_factory=list)  # their indices in output_ids
    sent_jump_positions: int = 0  # entries already handed out in earlier outputs
    generator: torch.Generator | None = None  # per-request RNG when a seed is given

    # logprob accumulators: entries are (logprob | None, token_id)
    input_token_logprobs: list = field(default_factory=list)
    input_token_logprobs_done: bool = False
    input_top_logprobs: list = field(default_factory=list)
    output_token_logprobs: list = field(default_factory=list)
    output_top_logprobs: list = field(default_factory=list)
    sent_output_logprobs: int = 0  # entries already handed out in earlier outputs
    sent_input_logprobs: bool = False

    created_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None

    @classmethod
    def from_tokenized(cls, tr: TokenizedRequest, default_seed: int | None, device: torch.device) -> Req:
        """The scheduler's record of a new request; a seed (its own, else the server's
        --random-seed) gives it a generator of its own, so its samples do not depend on the
        other requests of its batches."""
        req = cls(rid=tr.rid, input_ids=list(tr.input_ids), sampling_params=tr.sampling_params,
                  return_logprob=tr.return_logprob, logprob_start_len=tr.logprob_start_len,
                  top_logprobs_num=tr.top_logprobs_num)
        seed = tr.sampling_params.sampling_seed
        if seed is None:
            seed = default_seed
        if seed is not None:
            req.generator = torch.Generator(device=device).manual_seed(seed & ((1 << 63) - 1))
        return req

    @property
    def fill_ids(self) -> list[int]:
        draft = [] if self.draft_id is None else [self.draft_id]
        return self.input_ids + self.output_ids + draft

    @property
    def last_chunk_min(self) -> int:
        """Tokens the forward that finishes fill_ids must compute: the last (its logits pick
        the next token), and with a draft the one before it too (its logits judge the draft)."""
        return 1 if self.draft_id is None else 2

    @property
    def seq_len(self) -> int:
        return len(self.input_ids) + len(self.output_ids)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_logprob_start(self) -> int | None:
        """First prompt position reported in input_token_logprobs, or None if none asked."""
        if not self.return_logprob or self.logprob_start_len < 0:
            return None
        return self.logprob_start_len

    @property
    def remaining_new_tokens(self) -> int:
        return self.sampling_params.max_new_tokens - len(self.output_ids)

    @property
    def grammar_budget(self) -> int | None:
        """Tokens left after the grammar's accepted ones (a verified draft counts before it
        joins the output), for the budget-aware mask; None when not budgeted."""
        if not self.budgeted:
            return None
        return self.sampling_params.max_new_tokens - self.grammar_offset - self.grammar.num_accepted

    @property
    def may_end_on_reject(self) -> bool:
        """Sampling may end the output here instead of extending it (end_on_reject)."""
        return (self.end_on_reject and self.grammar.is_accepting() and not self.grammar.is_terminated()
                and len(self.output_ids) >= self.sampling_params.min_new_tokens)
