"""Prompt logprobs: [logprob, id] for the prompt positions from `logprob_start_len`.

A prompt may be computed in several chunks (chunked prefill), so entries accumulate on the
request chunk by chunk; the first entry is null (nothing inside the span predicts it), as
SGLang reports it. `ScheduledBatch` decides which logits rows carry prompt positions.
"""

from __future__ import annotations

import torch

from radixlm.runtime.scheduler.batch import LogitRows
from radixlm.runtime.scheduler.request import Req


def add_prompt_logprobs(req: Req, extend_len: int, rows: LogitRows, logits: torch.Tensor) -> None:
    """Called after the step that computed `extend_len` more tokens (prefix_len advanced)."""
    start = req.prompt_logprob_start
    if req.prefix_len - extend_len <= start < req.prefix_len and not req.input_token_logprobs:
        req.input_token_logprobs.append((None, req.input_ids[start]))
        req.input_top_logprobs.append(None)
    if rows.prompt_rows:
        lp = torch.log_softmax(logits[rows.prompt_rows], dim=-1)  # [rows, vocab]
        targets = torch.tensor([req.input_ids[p + 1] for p in rows.prompt_positions], device=lp.device)
        vals = lp.gather(1, targets[:, None])[:, 0].tolist()
        req.input_token_logprobs.extend(zip(vals, targets.tolist()))
        if req.top_logprobs_num:
            tv, ti = lp.topk(req.top_logprobs_num, dim=-1)
            req.input_top_logprobs.extend(list(zip(a, b)) for a, b in zip(tv.tolist(), ti.tolist()))
    if req.prefix_len >= len(req.input_ids):
        req.input_token_logprobs_done = True


def wants_prompt_logprobs(req: Req) -> bool:
    return req.prompt_logprob_start is not None and not req.input_token_logprobs_done
