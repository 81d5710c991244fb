"""GrammarQueue: constrained requests waiting for their grammar, and the masks of running ones.

The scheduler's side of the contract in `runtime/constrained/__init__.py`:
  * `submit(req)` when a constrained request arrives: its compile starts (or joins a cached
    one) in the GrammarManager's workers and the request waits here, not in the queue;
  * `poll()` each step: requests whose grammar is ready come back with `req.grammar` set
    and their decoding options settled (budget-aware, end on reject), those whose constraint
    failed come back finished with the error (400; 503 when the compile workers stayed busy);
  * `bitmask(reqs)` before sampling: each constrained row's allowed tokens, within its budget.
The GrammarManager (and its ~1 s vocabulary) is built on the first constrained request, so
servers that never see one do not pay for it. Everything here runs on the scheduler thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from radixlm.runtime.errors import RequestError
from radixlm.runtime.scheduler.io import FinishReason
from radixlm.runtime.scheduler.request import Req
from radixlm.runtime.scheduler.triggers import TriggerBans


@dataclass(frozen=True)
class GrammarConfig:
    stop_ids: tuple[int, ...]  # the model's eos ids: allowed exactly where an output may end
    logits_dim: int  # mask width: the model's logits, not the tokenizer's length
    max_rows: int  # at most this many requests sample in one step
    pin_memory: bool
    whitespace_pattern: str
    compile_timeout_s: float
    jump_forward: bool
    budget_completion: bool = True  # off: --disable-budget-completion
    workers: int = 2
    memory_limit_bytes: int = 2 << 30
    queue_timeout_s: float = 30.0

# A complete match may end early by default where any text may follow it; a JSON schema ends
# at its closing brace anyway, so there it is opt-in.
END_ON_REJECT_KINDS = ("regex", "choices", "ebnf")


class GrammarQueue:
    def __init__(self, tokenizer, cfg: GrammarConfig) -> None:
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.pending: list[Req] = []
        self._manager = None
        self._bitmask: torch.Tensor | None = None  # [max_rows, ceil(logits_dim / 32)] int32
        self._bans: TriggerBans | None = None

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def manager(self):
        if self._manager is None:
            from radixlm.runtime.constrained import (
                GrammarLimits,
                GrammarManager,
                allocate_token_bitmask,
            )

            cfg = self.cfg
            self._manager = GrammarManager.from_tokenizer(
                self.tokenizer, cfg.stop_ids, cfg.logits_dim, whitespace_pattern=cfg.whitespace_pattern,
                limits=GrammarLimits(compile_timeout_s=cfg.compile_timeout_s, queue_timeout_s=cfg.queue_timeout_s,
                                     memory_limit_bytes=cfg.memory_limit_bytes),
                max_workers=cfg.workers, jump_forward=cfg.jump_forward, distances=cfg.budget_completion,
            )
            self._bitmask = allocate_token_bitmask(cfg.max_rows, cfg.logits_dim, pin_memory=cfg.pin_memory)
        return self._manager

    def shutdown(self) -> None:
        """Stop the compile workers (they also exit on their own when this process does)."""
        if self._manager is not None:
            self._manager.shutdown()

    def submit(self, req: Req) -> None:
        """Start the compiles a request needs: its constraint, or for a structural_tag one
        grammar per trigger (and the opening one with at_least_one)."""
        kind, spec = req.sampling_params.constraint
        if kind == "structural_tag":
            req.grammar_handle = self._submit_structural(spec)
        else:
            exact = req.sampling_params.complete_within_budget is False  # ebnf: the unbounded grammar
            req.grammar_handle = {"": self.manager.submit(kind, spec, exact=exact)}
        self.pending.append(req)

    def _submit_structural(self, spec: str) -> dict:
        from radixlm.runtime.constrained import structural_tag as st
        from radixlm.runtime.constrained.grammar_manager import GrammarHandle

        ws = self.cfg.whitespace_pattern
        try:
            tag = st.parse_structural_tag(spec)
            regexes = {t: st.after_trigger_regex(tag, t, ws) for t in tag.triggers}
            if tag.at_least_one:
                regexes[""] = st.opening_regex(tag, ws)
        except ValueError as e:
            return {"": GrammarHandle(None, None, cache_hit=False, error=RequestError.invalid(str(e)))}
        return {name: self.manager.submit("regex", regex) for name, regex in regexes.items()}

    def remove(self, rid: str) -> Req | None:
        """Take a waiting request out (it was aborted); its compiles are cancelled if unshared."""
        for req in self.pending:
            if req.rid == rid:
                for handle in req.grammar_handle.values():
                    self.manager.cancel(handle)
                self.pending.remove(req)
                return req
        return None

    def poll(self) -> tuple[list[Req], list[Req]]:
        """(ready: grammars attached, failed: finished with the error naming the reason)."""
        ready, failed = [], []
        for req in list(self.pending):
            try:
                matchers = {name: self.manager.poll(h) for name, h in req.grammar_handle.items()}
            except RequestError as exc:
                error = exc if exc.status >= 500 else RequestError.invalid(f"invalid constraint: {exc.message}")
            else:
                if any(m is None for m in matchers.values()):
                    continue
                error = self._settle(req, matchers)
            (ready if error is None else failed).append(req)
            if error is not None:
                req.finish_reason = FinishReason.failed(error)
            req.grammar_handle = None
            self.pending.remove(req)
        return ready, failed

    def _settle(self, req: Req, matchers: dict) -> RequestError | None:
        """Attach the matchers and decide the request's options; a 400 for a combination the
        grammar's backend cannot honour or a budget below the shortest valid output."""
        p, kind = req.sampling_params, req.sampling_params.constraint[0]
        can_budget = self.cfg.budget_completion and all(m.grammar.distances is not None for m in matchers.values())
        if p.complete_within_budget and not can_budget:
            why = ("this server runs with --disable-budget-completion" if not self.cfg.budget_completion
                   else f"this {kind} is compiled by the llguidance backend, which has no shortest-completion "
                        "table")
            return RequestError.invalid(f"complete_within_budget is not supported here: {why}; "
                                        "send complete_within_budget: false")
        budgeted = can_budget and p.complete_within_budget is not False
        if kind == "structural_tag":
            self._settle_structural(req, matchers, budgeted)
        else:
            req.end_on_reject = p.end_on_reject if p.end_on_reject is not None else kind in END_ON_REJECT_KINDS
        if "" in matchers:
            req.grammar, req.budgeted, req.in_structure = matchers[""], budgeted, kind == "structural_tag"
            if budgeted and (shortest := req.grammar.min_tokens_to_end()) > p.max_new_tokens:
                return RequestError.invalid(
                    f"max_new_tokens={p.max_new_tokens} is too small for this {kind}: its shortest valid "
                    f"output takes {shortest} tokens")
        return None

    def _settle_structural(self, req: Req, matchers: dict, budgeted: bool) -> None:
        req.triggers = {t: m.grammar for t, m in matchers.items() if t}
        req.budget_structures = budgeted
        if budgeted:  # a trigger may only start where its shortest structure still fits
            req.trigger_costs = {t: m.min_tokens_to_end() + len(self.tokenizer.encode(t, add_special_tokens=False))
                                 for t, m in matchers.items() if t}

    def bitmask(self, reqs: list[Req]) -> torch.Tensor | None:
        """Row i: the tokens reqs[i] may take next (all, for unconstrained rows); None if no
        request of the batch is constrained or near the end of its budget for a structure."""
        banned = [r.grammar is None and r.trigger_costs and r.remaining_new_tokens <= max(r.trigger_costs.values())
                  for r in reqs]
        if not any(r.grammar is not None for r in reqs) and not any(banned):
            return None
        from radixlm.runtime.constrained import reset_bitmask

        rows = self._bitmask[: len(reqs)]
        reset_bitmask(rows)
        for i, r in enumerate(reqs):
            if r.grammar is not None:
                r.grammar.fill_bitmask(rows, i, r.grammar_budget)
            elif banned[i]:
                self.bans.fill_row(rows, i, r, self.tokenizer)
        return rows

    @property
    def bans(self) -> TriggerBans:
        if self._bans is None:
            self._bans = TriggerBans(self.tokenizer, self.cfg.logits_dim)
        return self._bans
