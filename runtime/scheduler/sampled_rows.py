"""The sampling half of a step, keyed by request: what each row drew and each draft's verdict.

A step's logits hold, per request, at most a verify row (the position before a jump-forward
draft: does the model pick the draft there?) and a sample row (the next token). The Sampler
works on row lists; these functions hand its answers back per request id, so the result
processing never lines rows up with requests by position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from radixlm.runtime.sampling.sampler import Sampler
from radixlm.runtime.scheduler.batch import ScheduledBatch
from radixlm.runtime.scheduler.request import Req


class SampledToken(NamedTuple):
    token_id: int
    logprob: float | None  # of the raw distribution, when the request asked for logprobs
    top_logprobs: list[tuple[float, int]] | None
    bad: bool  # the row's logits were NaN/inf: the token is garbage, the request must fail


class DraftVerdict(NamedTuple):
    accepted: bool  # the model picks the draft (and the grammar has accepted it)
    token_id: int  # the draft if accepted, else the token drawn in its place
    bad: bool  # NaN/inf logits at the draft's position


# The grammar masks of a list of requests (GrammarQueue.bitmask).
Bitmask = Callable[[list[Req]], torch.Tensor | None]


def verify_drafts(sampler: Sampler, batch: ScheduledBatch, logits: torch.Tensor,
                  bitmask: Bitmask) -> dict[str, DraftVerdict]:
    """Judge every draft of the batch under the grammar mask at its position. An accepted
    draft is accepted by the request's grammar here, so its sample row (after the draft) is
    masked from the right state."""
    pairs = [(r, rows.verify_row) for r, rows in zip(batch.reqs, batch.rows) if rows.verify_row is not None]
    if not pairs:
        return {}
    reqs = [r for r, _ in pairs]
    out = sampler.verify(logits[[row for _, row in pairs]], reqs, [r.draft_id for r in reqs],
                         token_bitmask=bitmask(reqs))
    bad = set(out.bad_rows)
    return {
        r.rid: DraftVerdict(ok and r.grammar.accept_token(r.draft_id), tok, i in bad)
        for i, (r, tok, ok) in enumerate(zip(reqs, out.next_ids, out.accepted))
    }


def sample_rows(sampler: Sampler, batch: ScheduledBatch, logits: torch.Tensor, bitmask: Bitmask,
                verdicts: dict[str, DraftVerdict]) -> dict[str, SampledToken]:
    """The next token of every request with a sample row, except after a rejected draft
    (those logits followed a token that is not kept)."""
    reqs, rows = [], []
    for req, lr in zip(batch.reqs, batch.rows):
        verdict = verdicts.get(req.rid)
        if lr.sample_row is not None and (verdict is None or verdict.accepted):
            reqs.append(req)
            rows.append(lr.sample_row)
    if not reqs:
        return {}
    out = sampler.sample(logits[rows], reqs, token_bitmask=bitmask(reqs))
    bad = set(out.bad_rows)
    return {
        r.rid: SampledToken(
            out.next_ids[i],
            out.logprobs[i] if out.logprobs is not None else None,
            out.top_logprobs[i] if out.top_logprobs is not None else None,
            i in bad,
        )
        for i, r in enumerate(reqs)
    }
