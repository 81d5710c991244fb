"""Triggered constraints in the scheduler: a request with a `structural_tag` switches between
free text and constrained structures (constrained/structural_tag.py).

  * free text: after each taken token, `enter_structure` looks for a trigger ending in it;
    if the token reaches past the trigger, it is replaced by the tokens of the text up to
    the trigger's end (its KV is not computed yet, so this is free), and the trigger's
    grammar takes over from there, budget-aware;
  * in a structure: when its grammar is complete (`leave_structure`), the request is free
    again (another call may follow) instead of finishing;
  * `TriggerBans`: while free with fewer tokens left than the cheapest way to finish a
    structure needs, the tokens that would complete a trigger are masked, so no structure
    starts that could not end.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

from radixlm.runtime.scheduler.request import Req

LOOKBACK_TOKENS = 8  # beyond the trigger's own length: context to decode it in


def enter_structure(req: Req, tokenizer) -> list[int] | None:
    """If the output now ends inside or at a trigger, attach its grammar and return the ids
    that replace the last token (the same one when the trigger ends exactly with it)."""
    tok = req.output_ids[-1]
    longest = max(len(t) for t in req.triggers)
    tail = tokenizer.decode(req.output_ids[-(longest + LOOKBACK_TOKENS):])
    last = tokenizer.decode([tok])
    for trigger, grammar in req.triggers.items():
        at = tail.rfind(trigger)
        end = at + len(trigger)
        if at < 0 or end <= len(tail) - len(last):  # absent, or ended before this token
            continue
        extra = len(tail) - end
        ids = [tok] if extra == 0 else tokenizer.encode(last[: len(last) - extra], add_special_tokens=False)
        _replace_last(req, ids)
        req.grammar, req.grammar_offset, req.in_structure = grammar.new_matcher(), len(req.output_ids), True
        req.budgeted = req.budget_structures
        return ids
    return None


def leave_structure(req: Req) -> None:
    req.grammar, req.in_structure, req.budgeted = None, False, False


def _replace_last(req: Req, ids: list[int]) -> None:
    if ids == req.output_ids[-1:]:
        return
    req.output_ids[-1:] = ids
    if req.return_logprob:  # the replacement tokens were not sampled
        req.output_token_logprobs[-1:] = [(None, t) for t in ids]
        if req.top_logprobs_num:
            req.output_top_logprobs[-1:] = [None] * len(ids)


class TriggerBans:
    """Which tokens would complete a trigger after a given text (built once per tokenizer)."""

    def __init__(self, tokenizer, vocab_size: int) -> None:
        texts = [tokenizer.decode([i]) for i in range(vocab_size)]
        order = sorted(range(vocab_size), key=texts.__getitem__)
        self._texts = [texts[i] for i in order]
        self._ids = order
        self._containing: dict[str, list[int]] = {}
        self._all_texts = texts

    def completing(self, tail: str, trigger: str) -> list[int]:
        """Tokens t such that tail + text(t) contains `trigger` ending inside t."""
        ids = list(self._contains(trigger))
        for k in range(1, len(trigger)):
            if tail.endswith(trigger[:k]):
                ids += self._starting_with(trigger[k:])
        return ids

    def _starting_with(self, prefix: str) -> list[int]:
        lo = bisect.bisect_left(self._texts, prefix)
        hi = bisect.bisect_left(self._texts, prefix + "\U0010ffff")
        return self._ids[lo:hi]

    def _contains(self, trigger: str) -> list[int]:
        if trigger not in self._containing:
            self._containing[trigger] = [i for i, t in enumerate(self._all_texts) if trigger in t]
        return self._containing[trigger]

    def fill_row(self, bitmask: torch.Tensor, row: int, req: Req, tokenizer) -> None:
        """Ban, in a row that allows everything, the triggers the request could not finish."""
        left = req.remaining_new_tokens
        tail = tokenizer.decode(req.output_ids[-LOOKBACK_TOKENS:]) if req.output_ids else ""
        words = bitmask.numpy()[row]
        for trigger, cost in req.trigger_costs.items():
            if left <= cost and (ids := self.completing(tail, trigger)):
                ids = np.asarray(ids, dtype=np.int64)
                bits = (np.ones_like(ids) << (ids & 31)).astype(np.uint32).view(np.int32)
                np.bitwise_and.at(words, ids >> 5, ~bits)
