"""The ReqTokenOutput a request hands out after a step: new ids, counters, logprob increments.

Each output carries only what is new since the request's previous one: the sampled and
jumped ids of this step, the output positions of the jumped ones, the output logprobs not
yet sent, and the prompt logprobs once, when the prompt has been processed (an empty list if
the request ended before that).
"""

from __future__ import annotations

from radixlm.runtime.scheduler.io import ReqTokenOutput
from radixlm.runtime.scheduler.request import Req


def build_output(req: Req, new_ids: list[int]) -> ReqTokenOutput:
    out = ReqTokenOutput(
        rid=req.rid,
        new_token_ids=new_ids,
        finished=req.finished,
        finish_reason=req.finish_reason,
        prompt_tokens=len(req.input_ids),
        completion_tokens=len(req.output_ids),
        cached_tokens=req.cached_tokens,
        num_retractions=req.num_retractions,
        jump_forward_positions=req.jump_positions[req.sent_jump_positions:],
    )
    req.sent_jump_positions = len(req.jump_positions)
    if req.return_logprob:
        _add_logprobs(req, out)
    return out


def _add_logprobs(req: Req, out: ReqTokenOutput) -> None:
    sent = req.sent_output_logprobs
    out.output_token_logprobs = req.output_token_logprobs[sent:]
    out.output_top_logprobs = req.output_top_logprobs[sent:] if req.top_logprobs_num else []
    req.sent_output_logprobs = len(req.output_token_logprobs)
    if req.sent_input_logprobs:
        return
    if req.input_token_logprobs_done:
        out.input_token_logprobs = req.input_token_logprobs
        out.input_top_logprobs = req.input_top_logprobs if req.top_logprobs_num else None
        req.sent_input_logprobs = True
    elif req.finished:
        out.input_token_logprobs = []
        req.sent_input_logprobs = True
