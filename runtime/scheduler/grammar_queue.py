"""GrammarQueue: constrained requests waiting for their grammar, and the masks of running ones.

The scheduler's side of the contract in `runtime/constrained/__init__.py`:
  * `submit(req)` when a constrained request arrives: its compile starts (or joins a cached
    one) in the GrammarManager's workers and the request waits here, not in the queue;
  * `poll()` each step: requests whose grammar is ready come back with `req.grammar` set,
    those whose constraint failed come back finished with a 400;
  * `bitmask(reqs)` before sampling: each constrained row's allowed tokens.
The GrammarManager (and its ~1 s vocabulary) is built on the first constrained request, so
servers that never see one do not pay for it. Everything here runs on the scheduler thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from radixlm.runtime.errors import RequestError
from radixlm.runtime.scheduler.io import FinishReason
from radixlm.runtime.scheduler.request import Req


@dataclass(frozen=True)
class GrammarConfig:
    stop_ids: tuple[int, ...]  # the model's eos ids: allowed exactly where an output may end
    logits_dim: int  # mask width: the model's logits, not the tokenizer's length
    max_rows: int  # at most this many requests sample in one step
    pin_memory: bool
    whitespace_pattern: str
    compile_timeout_s: float
    jump_forward: bool


class GrammarQueue:
    def __init__(self, tokenizer, cfg: GrammarConfig) -> None:
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.pending: list[Req] = []
        self._manager = None
        self._bitmask: torch.Tensor | None = None  # [max_rows, ceil(logits_dim / 32)] int32

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
                limits=GrammarLimits(compile_timeout_s=cfg.compile_timeout_s),
                jump_forward=cfg.jump_forward,
            )
            self._bitmask = allocate_token_bitmask(cfg.max_rows, cfg.logits_dim, pin_memory=cfg.pin_memory)
        return self._manager

    def submit(self, req: Req) -> None:
        req.grammar_handle = self.manager.submit(*req.sampling_params.constraint)
        self.pending.append(req)

    def remove(self, rid: str) -> Req | None:
        """Take a waiting request out (it was aborted); its compile is cancelled if unshared."""
        for req in self.pending:
            if req.rid == rid:
                self.manager.cancel(req.grammar_handle)
                self.pending.remove(req)
                return req
        return None

    def poll(self) -> tuple[list[Req], list[Req]]:
        """(ready: `req.grammar` set, failed: finished with a 400 naming the reason)."""
        ready, failed = [], []
        for req in list(self.pending):
            try:
                matcher = self.manager.poll(req.grammar_handle)
            except ValueError as exc:
                req.finish_reason = FinishReason.failed(RequestError.invalid(f"invalid constraint: {exc}"))
                failed.append(req)
            else:
                if matcher is None:
                    continue
                req.grammar = matcher
                ready.append(req)
            req.grammar_handle = None
            self.pending.remove(req)
        return ready, failed

    def bitmask(self, reqs: list[Req]) -> torch.Tensor | None:
        """Row i: the tokens reqs[i] may take next (all, for unconstrained rows); None if no
        request of the batch is constrained."""
        if not any(r.grammar is not None for r in reqs):
            return None
        from radixlm.runtime.constrained import reset_bitmask

        rows = self._bitmask[: len(reqs)]
        reset_bitmask(rows)
        for i, r in enumerate(reqs):
            if r.grammar is not None:
                r.grammar.fill_bitmask(rows, i)
        return rows
