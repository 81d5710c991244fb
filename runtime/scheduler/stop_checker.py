"""StopChecker: decides after each sampled token whether a request is finished.

Checks, in SGLang's order: max_new_tokens / context length, eos (unless ignore_eos), stop
token ids, stop strings and stop regexes. Stop strings and regexes are matched on the decoded
tail of the output only (never the prompt), regexes by RE2 in linear time (stop_regex.py);
the detokenizer trims the matched text later.
"""

from __future__ import annotations

from radixlm.runtime.sampling import stop_regex
from radixlm.runtime.scheduler.request import FinishReason, Req


class StopChecker:
    def __init__(self, tokenizer, eos_token_ids: tuple[int, ...]) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = set(eos_token_ids)

    def check(self, req: Req, context_len: int) -> FinishReason | None:
        p = req.sampling_params
        tok = req.output_ids[-1]
        if len(req.output_ids) >= p.max_new_tokens:
            if req.budgeted and req.grammar.is_accepting():  # the budget mask kept it complete
                return FinishReason("stop", matched=None)
            return FinishReason("length", length=p.max_new_tokens)
        if req.seq_len >= context_len:
            return FinishReason("length", length=len(req.output_ids))
        if tok in self.eos_token_ids and not p.ignore_eos:
            return FinishReason("stop", matched=tok)
        if tok in p.stop_token_ids:
            return FinishReason("stop", matched=tok)
        if req.grammar is not None and req.grammar.is_terminated():
            return FinishReason("stop", matched=None)
        if p.stop or p.stop_regex:
            return self._check_text(req)
        return None

    def _check_text(self, req: Req) -> FinishReason | None:
        p = req.sampling_params
        # Every token decodes to at least one character, so this many tokens cover any stop
        # string that ends in the newest token.
        window = max([len(s) for s in p.stop] + [32 if p.stop_regex else 0]) + 1
        tail = self.tokenizer.decode(
            req.output_ids[-window:], skip_special_tokens=p.skip_special_tokens
        )
        for s in p.stop:
            if s in tail:
                return FinishReason("stop", matched=s)
        for pattern in p.stop_regex:
            if stop_regex.search(pattern, tail):  # linear time, whatever the pattern
                return FinishReason("stop", matched=pattern)
        return None
