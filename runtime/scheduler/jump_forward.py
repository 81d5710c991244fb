"""Jump-forward in the scheduler: append what the grammar forces, optionally with a draft.

After a constrained request takes a token, the text its grammar forces next (a compressed
FSM's singular chain, `constrained/jump_forward.py`) is appended to its output as tokens at
once; the request's next forward computes them in one extend pass. With drafts, the
tokenizer's last token of that text (the back-off token, which the model must still choose
under the mask) runs speculatively in the same pass as `req.draft_id`; the scheduler keeps
it only if the model picks it at its position (`sampled_rows.verify_drafts`).
"""

from __future__ import annotations

from radixlm.runtime.scheduler.io import FinishReason
from radixlm.runtime.scheduler.request import Req
from radixlm.runtime.scheduler.triggers import leave_structure


def may_draft(req: Req) -> bool:
    """Drafts are verified against the distribution `Sampler.sample` draws from; left out
    where that would need more: logprobs to report, penalties that count the draft."""
    return not req.return_logprob and not req.sampling_params.has_penalties


def jump_forward(req: Req, tokenizer, drafts: bool) -> list[int]:
    """The forced tokens appended to `req.output_ids` (their logprobs are null: they were not
    sampled), [] if nothing worth a jump is forced. Ends the request if the grammar is done."""
    from radixlm.runtime.constrained import try_jump_forward

    jf = try_jump_forward(req.grammar, tokenizer, max_tokens=req.remaining_new_tokens - 1,
                          draft=drafts and may_draft(req))
    if jf is None:
        return []
    if req.budgeted and req.grammar.min_tokens_to_end() > req.grammar_budget:
        # The tokenizer spelled the forced text in more tokens than the shortest completion
        # can spare: decode it token by token under the budget mask instead.
        req.grammar.rollback(len(jf.token_ids))
        return []
    start = len(req.output_ids)
    req.jump_positions.extend(range(start, start + len(jf.token_ids)))
    req.output_ids.extend(jf.token_ids)
    req.draft_id = jf.draft_id
    req.jumped_tokens += len(jf.token_ids)
    if req.return_logprob:
        req.output_token_logprobs.extend((None, t) for t in jf.token_ids)
        if req.top_logprobs_num:
            req.output_top_logprobs.extend([None] * len(jf.token_ids))
    if req.grammar.is_terminated():
        req.draft_id = None
        if req.in_structure:  # a structural_tag structure ended: free text again
            leave_structure(req)
        else:
            req.finish_reason = FinishReason("stop", matched=None)
    return list(jf.token_ids)
