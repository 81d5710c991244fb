"""Scheduler: waiting queue -> batch -> ModelRunner -> Sampler -> outputs (scheduler process).

`step()` is one iteration without any I/O, so the zmq loop of the server process and the
in-process `Engine` drive the same code:

    outputs = scheduler.step()   # schedule, forward, sample, finish/cache requests

Every step is one forward over all running requests: each decoding request contributes one
token and prefilling requests contribute chunks of their prompt (at most
`chunked_prefill_size` tokens in all), so long prompts never stall decodes and finished
requests leave / new ones join every step (continuous batching). When KV runs out during
decode, the requests with the most remaining output are retracted to the queue; their
computed prefix stays in the radix cache and they resume later with the same output.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import torch

from radixlm.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool
from radixlm.runtime.mem_cache.radix_cache import NoRadixCache, RadixCache
from radixlm.runtime.model.runner import ModelRunner
from radixlm.runtime.sampling.sampler import Sampler
from radixlm.runtime.scheduler import policy
from radixlm.runtime.scheduler.batch import ScheduledBatch
from radixlm.runtime.scheduler.request import FinishReason, Req
from radixlm.runtime.scheduler.stop_checker import StopChecker
from radixlm.runtime.server.messages import ReqTokenOutput, TokenizedRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerConfig:
    max_running_requests: int
    max_total_tokens: int
    context_len: int
    chunked_prefill_size: int
    disable_radix_cache: bool = False
    schedule_policy: str = "lpm"
    check_invariant_when_idle: bool = True
    random_seed: int | None = None
    enable_jump_forward: bool = True
    jump_forward_drafts: bool = True  # run the back-off token speculatively (_settle_draft)
    grammar_compile_timeout_s: float = 30.0
    json_whitespace_pattern: str = ""


class Scheduler:
    def __init__(self, runner: ModelRunner, tokenizer, cfg: SchedulerConfig) -> None:
        self.runner = runner
        self.cfg = cfg
        mc = runner.config
        self.device = runner.device
        self.req_pool = ReqToTokenPool(cfg.max_running_requests, cfg.context_len, self.device)
        self.kv_pool = KVPool(
            cfg.max_total_tokens, mc.num_layers, mc.num_kv_heads, mc.head_dim, runner.dtype, self.device
        )
        self.cache = NoRadixCache(self.kv_pool) if cfg.disable_radix_cache else RadixCache(self.kv_pool)
        self.sampler = Sampler(mc.vocab_size, mc.eos_token_ids)
        self.stop_checker = StopChecker(tokenizer, mc.eos_token_ids)
        self.tokenizer = tokenizer
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.grammar_queue: list[Req] = []  # constrained requests whose grammar is compiling
        self._grammar_manager = None  # built on the first constrained request (~1 s)
        self._bitmask = None
        self.new_token_ratio = policy.INITIAL_NEW_TOKEN_RATIO
        self.pending_outputs: list[ReqTokenOutput] = []
        self.stats = SchedulerStats()

    # ---- requests in --------------------------------------------------------------------
    def add_request(self, tr: TokenizedRequest) -> None:
        """Queue a tokenized request. Raises ValueError if it can never be served."""
        self.validate(tr)
        req = Req(
            rid=tr.rid, input_ids=list(tr.input_ids), sampling_params=tr.sampling_params,
            return_logprob=tr.return_logprob, logprob_start_len=tr.logprob_start_len,
            top_logprobs_num=tr.top_logprobs_num,
        )
        seed = tr.sampling_params.sampling_seed
        if seed is None and self.cfg.random_seed is not None:
            seed = self.cfg.random_seed
        if seed is not None:
            req.generator = torch.Generator(device=self.device).manual_seed(seed & ((1 << 63) - 1))
        constraint = tr.sampling_params.constraint
        if constraint is not None:
            req.grammar_handle = self.grammar_manager.submit(*constraint)
            self.grammar_queue.append(req)
        else:
            self.waiting.append(req)

    def validate(self, tr: TokenizedRequest) -> None:
        n = len(tr.input_ids)
        if n == 0:
            raise ValueError("the prompt is empty: send at least one token of text or input_ids")
        vocab = self.runner.config.vocab_size
        if any(not 0 <= t < vocab for t in tr.input_ids):
            raise ValueError(f"input_ids must be token ids in [0, {vocab})")
        total = n + tr.sampling_params.max_new_tokens
        if total > self.cfg.context_len:
            raise ValueError(
                f"the prompt ({n} tokens) plus max_new_tokens ({tr.sampling_params.max_new_tokens}) "
                f"exceeds the context length of {self.cfg.context_len} tokens; "
                "shorten the prompt or lower max_new_tokens"
            )
        if total > self.kv_pool.size:
            raise ValueError(
                f"the prompt plus max_new_tokens ({total} tokens) exceeds the KV pool "
                f"({self.kv_pool.size} tokens); raise --mem-fraction or lower max_new_tokens"
            )
        if tr.logprob_start_len >= n and tr.return_logprob:
            raise ValueError(f"logprob_start_len ({tr.logprob_start_len}) must be < the prompt length ({n})")
        if tr.top_logprobs_num < 0 or tr.top_logprobs_num > 20:
            raise ValueError(f"top_logprobs_num must be in [0, 20] (got {tr.top_logprobs_num})")
        tr.sampling_params.check_vocab(vocab)
        constraint = tr.sampling_params.constraint
        if constraint is not None and constraint[0] not in ("regex", "json_schema", "choices"):
            raise ValueError(f"{constraint[0]} constraints are not supported; use regex, json_schema or choices")

    def abort(self, rid: str, message: str = "aborted") -> None:
        """Finish `rid` with reason abort wherever it is; its KV is freed or cached."""
        for req in list(self.grammar_queue):
            if req.rid == rid:
                self.grammar_manager.cancel(req.grammar_handle)
                self.grammar_queue.remove(req)
                req.finish_reason = FinishReason("abort", message=message)
                self.pending_outputs.append(self._output(req, []))
        for req in list(self.waiting):
            if req.rid == rid:
                self.waiting.remove(req)
                req.finish_reason = FinishReason("abort", message=message)
                self.pending_outputs.append(self._output(req, []))
        for req in self.running:
            if req.rid == rid and not req.finished:
                req.finish_reason = FinishReason("abort", message=message)
        self.running = self._release_finished(self.running, self.pending_outputs)

    def fail_in_flight(self, message: str) -> tuple[list[ReqTokenOutput], list[str]]:
        """Abort every request after a step failed: their KV returns to the cache or pool.
        Returns the outputs to deliver (pending ones included) and the rids whose abort
        itself failed, which the caller must still answer."""
        reqs = list(self.running) + list(self.waiting) + list(self.grammar_queue)
        broken = []
        for req in reqs:
            try:
                self.abort(req.rid, message)
            except Exception:  # the state is already damaged; still answer the client
                logger.exception("abort of %s failed after a step error", req.rid)
                broken.append(req.rid)
        self.running = [r for r in self.running if not r.finished]
        outputs, self.pending_outputs = self.pending_outputs, []
        return outputs, broken

    def flush_cache(self) -> bool:
        """Drop the radix cache; only possible when no request is running or waiting."""
        if self.running or self.waiting:
            return False
        self.cache.reset()
        self.check_invariant()
        return True

    @property
    def is_idle(self) -> bool:
        return not self.running and not self.waiting and not self.grammar_queue

    @property
    def grammar_manager(self):
        if self._grammar_manager is None:
            from radixlm.runtime.constrained import (
                GrammarLimits,
                GrammarManager,
                allocate_token_bitmask,
            )

            self._grammar_manager = GrammarManager.from_tokenizer(
                self.tokenizer, self.runner.config.eos_token_ids, self.runner.config.vocab_size,
                whitespace_pattern=self.cfg.json_whitespace_pattern,
                limits=GrammarLimits(compile_timeout_s=self.cfg.grammar_compile_timeout_s),
                jump_forward=self.cfg.enable_jump_forward,
            )
            self._bitmask = allocate_token_bitmask(
                self.cfg.max_running_requests, self.runner.config.vocab_size,
                pin_memory=self.device.type == "cuda",
            )
        return self._grammar_manager

    def _poll_grammars(self) -> None:
        """Move requests whose grammar compiled to the waiting queue; fail those that did not."""
        for req in list(self.grammar_queue):
            try:
                matcher = self.grammar_manager.poll(req.grammar_handle)
            except ValueError as exc:
                self.grammar_queue.remove(req)
                req.finish_reason = FinishReason("abort", message=f"invalid constraint: {exc}", status_code=400)
                self.pending_outputs.append(self._output(req, []))
                continue
            if matcher is not None:
                self.grammar_queue.remove(req)
                req.grammar, req.grammar_handle = matcher, None
                self._enqueue_constrained(req)

    def _enqueue_constrained(self, req: Req) -> None:
        """Queue a request whose grammar is ready. With jump-forward, text the grammar forces
        before any sampling (`{"name":"` of a JSON schema) joins the prompt now, so the
        prefill computes it and the first sampled token is the first free one; the jumped
        tokens stream out at once."""
        jumped = self._jump_forward(req) if self.cfg.enable_jump_forward else []
        if jumped or req.finished:
            self.pending_outputs.append(self._output(req, jumped))
        if not req.finished:
            self.waiting.append(req)

    # ---- one iteration ------------------------------------------------------------------
    def step(self) -> list[ReqTokenOutput]:
        if self.grammar_queue:
            self._poll_grammars()
        outputs, self.pending_outputs = self.pending_outputs, []
        batch = self._schedule()
        if batch is None:
            if self.is_idle and self.cfg.check_invariant_when_idle:
                self.check_invariant()
            elif self.grammar_queue and not outputs:
                time.sleep(0.001)  # only compiles pending: do not spin against their threads
            return outputs
        out_cache_loc = self._alloc_slots(batch.num_tokens)
        try:
            fb = batch.build(out_cache_loc, self.req_pool, self.kv_pool, self.device)
            logits = self.runner.forward(fb)
            verdicts, bad = self._verify_drafts(batch, logits)
            sampled, bad = self._sample_rows(batch, logits, verdicts, bad)
        except BaseException:
            # No request owns this step's slots until _process_results advances prefix_len,
            # and the outputs taken above must still reach their clients.
            self.kv_pool.free(out_cache_loc)
            self.pending_outputs = outputs + self.pending_outputs
            raise
        self._process_results(batch, logits, sampled, verdicts, bad, outputs)
        self.stats.record_step(batch)
        return outputs

    def _schedule(self) -> ScheduledBatch | None:
        reqs, lens = self._running_part()
        while self.running and sum(lens) > self.kv_pool.available_size() + self.cache.evictable_size():
            self._retract(max(self.running, key=lambda r: (r.remaining_new_tokens, -len(r.fill_ids))))
            reqs, lens = self._running_part()
        self._adjust_new_token_ratio()
        self._admit(reqs, lens, self.cfg.chunked_prefill_size - sum(lens))
        return ScheduledBatch(reqs, lens) if reqs else None

    def _running_part(self) -> tuple[list[Req], list[int]]:
        """Decodes first (one token each), then prefill chunks within the token budget."""
        reqs, lens = [], []
        budget = self.cfg.chunked_prefill_size
        for req in sorted(self.running, key=lambda r: len(r.fill_ids) - r.prefix_len > 1):
            remaining = len(req.fill_ids) - req.prefix_len
            n = 1 if remaining == 1 else self._chunk(req, remaining, budget)
            if n > 0:
                reqs.append(req)
                lens.append(n)
                budget -= n
        return reqs, lens

    def _admit(self, reqs: list[Req], lens: list[int], budget: int) -> None:
        """Move waiting requests into the batch while rows, tokens and KV memory allow."""
        if not self.waiting:
            return
        # Memory already promised: every token running requests still have to compute (this
        # step's included) plus a ratio of their future output.
        reserved = sum(
            len(r.fill_ids) - r.prefix_len + policy.output_reserve(r, self.new_token_ratio)
            for r in self.running
        )
        in_flight = [r for r, n in zip(reqs, lens) if n > 1]
        for req, match in policy.order_waiting(list(self.waiting), self.cache, self.cfg.schedule_policy):
            if budget <= 0 or len(self.running) >= self.cfg.max_running_requests:
                break
            # Deferring only pays when the first request's prefix will be cached for the rest.
            if not self.cache.disabled and policy.should_defer(req, len(match.slots), in_flight):
                continue
            remaining = len(req.fill_ids) - len(match.slots)
            n = self._chunk(req, remaining, budget)
            if n <= 0:
                break
            self.cache.inc_lock_ref(match.node)
            promise = remaining + policy.output_reserve(req, self.new_token_ratio)
            if reserved + promise > self.kv_pool.available_size() + self.cache.evictable_size():
                self.cache.dec_lock_ref(match.node)
                break
            self._start(req, match)
            self.waiting.remove(req)
            self.running.append(req)
            reqs.append(req)
            lens.append(n)
            in_flight.append(req)
            budget -= n
            reserved += promise

    @staticmethod
    def _chunk(req: Req, remaining: int, budget: int) -> int:
        """Tokens of `req` to compute this step within the budget; a chunk before the last
        leaves the last one at least `req.last_chunk_min` tokens."""
        n = min(remaining, max(budget, 0))
        if n < remaining:
            n = min(n, remaining - req.last_chunk_min)
        return n

    def _start(self, req: Req, match) -> None:
        req.req_pool_idx = self.req_pool.alloc()
        req.last_node = match.node
        req.prefix_len = len(match.slots)
        if req.prefix_len:
            self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len] = match.slots.to(torch.int32)
        if not req.admitted:
            req.admitted = True
            req.cached_tokens = min(req.prefix_len, len(req.input_ids))
            self.stats.prompt_tokens += len(req.input_ids)
            self.stats.cached_tokens += req.cached_tokens

    def _alloc_slots(self, n: int) -> torch.Tensor:
        slots = self.kv_pool.alloc(n)
        if slots is None:
            self.cache.evict(n - self.kv_pool.available_size())
            slots = self.kv_pool.alloc(n)
        if slots is None:  # _schedule retracts and admission reserves so this cannot happen
            raise RuntimeError(f"out of KV memory: need {n} slots, {self.kv_pool.available_size()} free")
        return slots

    def _adjust_new_token_ratio(self) -> None:
        """Output reserve per admitted request: decays while memory suffices, jumps on retraction."""
        self.new_token_ratio = max(
            policy.MIN_NEW_TOKEN_RATIO, self.new_token_ratio - policy.NEW_TOKEN_RATIO_DECAY
        )

    def _retract(self, req: Req) -> None:
        """Send a running request back to the queue; its computed KV stays in the cache."""
        self.running.remove(req)
        self._cache_and_free(req)
        req.prefix_len = 0
        req.num_retractions += 1
        if not req.input_token_logprobs_done:  # prompt logprobs are recomputed on resume
            req.input_token_logprobs.clear()
            req.input_top_logprobs.clear()
        self.stats.retractions += 1
        self.new_token_ratio = min(1.0, self.new_token_ratio + 0.1)
        logger.info("KV pool full: retracted request %s back to the queue", req.rid)
        self.waiting.appendleft(req)

    def _cache_and_free(self, req: Req) -> None:
        """Give the request's computed KV to the radix cache and free its row."""
        ids = req.fill_ids[: req.prefix_len]
        slots = self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len].to(torch.int64)
        self.cache.cache_finished(ids, slots, req.last_node)
        self.req_pool.free(req.req_pool_idx)
        req.req_pool_idx, req.last_node = None, None

    # ---- results ------------------------------------------------------------------------
    def _verify_drafts(self, batch: ScheduledBatch, logits: torch.Tensor):
        """Does the model pick each draft at its position? ({rid: (accepted, token)}, rids
        whose logits were NaN/inf). An accepted draft is accepted by the grammar here, so
        the sample row after it is masked from the right state."""
        pairs = [(r, rows.verify_row) for r, rows in zip(batch.reqs, batch.rows) if rows.verify_row is not None]
        if not pairs:
            return {}, set()
        reqs = [r for r, _ in pairs]
        out = self.sampler.verify(logits[[row for _, row in pairs]], reqs, [r.draft_id for r in reqs],
                                  token_bitmask=self._grammar_bitmask(reqs))
        verdicts = {}
        for r, tok, ok in zip(reqs, out.next_ids, out.accepted):
            verdicts[r.rid] = (ok and r.grammar.accept_token(r.draft_id), tok)
        return verdicts, {reqs[i].rid for i in out.bad_rows}

    def _sample_rows(self, batch: ScheduledBatch, logits: torch.Tensor, verdicts: dict, bad: set[str]):
        """(sampled, rids whose logits were NaN/inf) for the rows that sample — all but those
        of rejected drafts, whose logits followed a token that is not kept — or (None, bad)."""
        rejected = {rid for rid, (accepted, _) in verdicts.items() if not accepted}
        picks = [(r, rows.sample_row) for r, rows in zip(batch.reqs, batch.rows)
                 if rows.sample_row is not None and r.rid not in rejected]
        if not picks:
            return None, bad
        reqs = [r for r, _ in picks]
        sampled = self._sample(logits[[row for _, row in picks]], reqs)
        return sampled, bad | {reqs[i].rid for i in sampled.bad_rows}

    def _process_results(self, batch: ScheduledBatch, logits: torch.Tensor, sampled, verdicts: dict,
                         bad: set[str], outputs: list) -> None:
        for req, ext in zip(batch.reqs, batch.extend_lens):
            req.prefix_len += ext  # first, so a failure below leaves every slot owned (and freed by abort)
        k = 0
        for req, ext, rows in zip(batch.reqs, batch.extend_lens, batch.rows):
            new_ids: list[int] = []
            if req.prompt_logprob_start is not None and not req.input_token_logprobs_done:
                self._add_prompt_logprobs(req, ext, rows, logits)
            kept = True
            if req.rid in verdicts:
                kept = verdicts[req.rid][0]
                new_ids = self._settle_draft(req, *verdicts[req.rid], req.rid in bad)
            if rows.sample_row is not None and kept:
                if not req.finished:
                    new_ids += self._append_token(req, sampled, k, req.rid in bad)
                k += 1
            elif req.prefix_len == len(req.fill_ids) and req.sampling_params.max_new_tokens == 0:
                req.finish_reason = FinishReason("length", length=0)
            if ext > 1 and not req.finished:
                self._cache_prefill_progress(req)
            if new_ids or req.finished or rows.prompt_rows:
                outputs.append(self._output(req, new_ids))
        self.running = self._release_finished(self.running, outputs, emit=False)

    def _sample(self, logits: torch.Tensor, reqs: list[Req]):
        return self.sampler.sample(logits, reqs, token_bitmask=self._grammar_bitmask(reqs))

    def _grammar_bitmask(self, reqs: list[Req]) -> torch.Tensor | None:
        """Each constrained request's mask at its matcher's state (rows of others allow all)."""
        if not any(r.grammar is not None for r in reqs):
            return None
        from radixlm.runtime.constrained import reset_bitmask

        bitmask = self._bitmask[: len(reqs)]
        reset_bitmask(bitmask)
        for i, r in enumerate(reqs):
            if r.grammar is not None:
                r.grammar.fill_bitmask(bitmask, i)
        return bitmask

    def _settle_draft(self, req: Req, accepted: bool, token: int, bad: bool) -> list[int]:
        """Keep a verified draft as an output token (its KV was computed this step), or give
        its KV slot back and take the token the model drew at its position instead."""
        draft, req.draft_id = req.draft_id, None
        if accepted and not bad:
            self.stats.draft_tokens_accepted += 1
            return self._take_token(req, draft, grammar_accepted=True, jump=False)
        req.prefix_len -= 1
        slot = self.req_pool.req_to_token[req.req_pool_idx, req.prefix_len : req.prefix_len + 1]
        self.kv_pool.free(slot.to(torch.int64))
        if bad:
            req.finish_reason = FinishReason(
                "abort", message="the model produced NaN/inf logits for this request", status_code=500
            )
            return []
        self.stats.draft_tokens_rejected += 1
        return self._take_token(req, token)

    def _append_token(self, req: Req, sampled, k: int, bad: bool) -> list[int]:
        if bad:  # the token sampled from NaN/inf logits is garbage: keep the output before it
            req.finish_reason = FinishReason(
                "abort", message="the model produced NaN/inf logits for this request", status_code=500
            )
            return []
        tok = sampled.next_ids[k]
        if req.return_logprob:
            req.output_token_logprobs.append((sampled.logprobs[k], tok))
            if req.top_logprobs_num:
                req.output_top_logprobs.append(sampled.top_logprobs[k])
        return self._take_token(req, tok)

    def _take_token(self, req: Req, tok: int, grammar_accepted: bool = False, jump: bool = True) -> list[int]:
        """Append a chosen token: grammar, stop conditions, then jump-forward over what the
        grammar forces next (not after a draft: the token sampled after it comes first)."""
        req.output_ids.append(tok)
        if req.grammar is not None and not grammar_accepted and not req.grammar.accept_token(tok):
            req.finish_reason = FinishReason(
                "abort", message=f"internal error: token {tok} violates the grammar", status_code=500
            )
            return [tok]
        req.finish_reason = self.stop_checker.check(req, self.cfg.context_len)
        if jump and req.grammar is not None and not req.finished and self.cfg.enable_jump_forward:
            return [tok] + self._jump_forward(req)
        return [tok]

    def _jump_forward(self, req: Req) -> list[int]:
        """Append the text the grammar forces (compressed FSM); the next forward computes
        these tokens in one extend pass. Jumped tokens have null logprobs (not sampled)."""
        from radixlm.runtime.constrained import try_jump_forward

        jf = try_jump_forward(req.grammar, self.tokenizer, max_tokens=req.remaining_new_tokens - 1,
                              draft=self._may_draft(req))
        if jf is None:
            return []
        req.output_ids.extend(jf.token_ids)
        req.draft_id = jf.draft_id
        req.jumped_tokens += len(jf.token_ids)
        self.stats.jumped_tokens += len(jf.token_ids)
        if req.return_logprob:
            req.output_token_logprobs.extend((None, t) for t in jf.token_ids)
            if req.top_logprobs_num:
                req.output_top_logprobs.extend([None] * len(jf.token_ids))
        if req.grammar.is_terminated():
            req.finish_reason = FinishReason("stop", matched=None)
            req.draft_id = None
        return list(jf.token_ids)

    def _may_draft(self, req: Req) -> bool:
        """Drafts are verified against the distribution `Sampler.sample` draws from; left out
        where that would need more: logprobs to report, penalties that count the draft."""
        p = req.sampling_params
        return self.cfg.jump_forward_drafts and not req.return_logprob and not p.has_penalties

    def _add_prompt_logprobs(self, req: Req, ext: int, rows, logits: torch.Tensor) -> None:
        """Accumulate [logprob, id] for prompt positions from logprob_start_len; the first
        entry is null (nothing inside the span predicts it), as SGLang reports it."""
        start = req.prompt_logprob_start
        if req.prefix_len - ext <= start < req.prefix_len and not req.input_token_logprobs:
            first = req.input_ids[start]
            req.input_token_logprobs.append((None, first))
            req.input_top_logprobs.append(None)
        if rows.prompt_rows:
            lp = torch.log_softmax(logits[rows.prompt_rows], dim=-1)
            targets = torch.tensor([req.input_ids[p + 1] for p in rows.prompt_positions], device=lp.device)
            vals = lp.gather(1, targets[:, None])[:, 0].tolist()
            req.input_token_logprobs.extend(zip(vals, targets.tolist()))
            if req.top_logprobs_num:
                tv, ti = lp.topk(req.top_logprobs_num, dim=-1)
                req.input_top_logprobs.extend(list(zip(a, b)) for a, b in zip(tv.tolist(), ti.tolist()))
        if req.prefix_len >= len(req.input_ids):
            req.input_token_logprobs_done = True

    def _cache_prefill_progress(self, req: Req) -> None:
        """Insert the computed prompt into the radix cache now, so requests admitted next step
        share it instead of computing it again (and a retraction keeps it)."""
        ids = req.fill_ids[: req.prefix_len]
        slots = self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len].to(torch.int64)
        match = self.cache.cache_unfinished(ids, slots, req.last_node)
        self.req_pool.req_to_token[req.req_pool_idx, : req.prefix_len] = match.slots.to(torch.int32)
        req.last_node = match.node

    def _release_finished(self, running: list[Req], outputs: list, emit: bool = True) -> list[Req]:
        still = []
        for req in running:
            if req.finished:
                self._cache_and_free(req)
                if emit:
                    outputs.append(self._output(req, []))
            else:
                still.append(req)
        return still

    def _output(self, req: Req, new_ids: list[int]) -> ReqTokenOutput:
        out = ReqTokenOutput(
            rid=req.rid,
            new_token_ids=new_ids,
            finished=req.finished,
            finish_reason=req.finish_reason.to_json() if req.finish_reason else None,
            prompt_tokens=len(req.input_ids),
            completion_tokens=len(req.output_ids),
            cached_tokens=req.cached_tokens,
            num_retractions=req.num_retractions,
        )
        if req.return_logprob:
            sent = req.sent_output_logprobs
            out.output_token_logprobs = req.output_token_logprobs[sent:]
            out.output_top_logprobs = req.output_top_logprobs[sent:] if req.top_logprobs_num else []
            req.sent_output_logprobs = len(req.output_token_logprobs)
            if req.input_token_logprobs_done and not req.sent_input_logprobs:
                out.input_token_logprobs = req.input_token_logprobs
                out.input_top_logprobs = req.input_top_logprobs if req.top_logprobs_num else None
                req.sent_input_logprobs = True
            elif req.finished and not req.sent_input_logprobs:
                out.input_token_logprobs = []
                req.sent_input_logprobs = True
        return out

    # ---- invariants ---------------------------------------------------------------------
    def held_by_requests(self) -> int:
        """KV slots held by running requests outside the radix tree."""
        held = 0
        for r in self.running:
            cached = 0
            node = r.last_node
            while node is not None and node.parent is not None:
                cached += len(node.key)
                node = node.parent
            held += r.prefix_len - cached
        return held

    def check_invariant(self) -> None:
        """free + evictable + protected + held by requests == pool size (DESIGN §3)."""
        total = (
            self.kv_pool.available_size()
            + self.cache.evictable_size()
            + self.cache.protected_size()
            + self.held_by_requests()
        )
        if total != self.kv_pool.size:
            raise AssertionError(
                f"KV pool invariant broken: free {self.kv_pool.available_size()} + evictable "
                f"{self.cache.evictable_size()} + protected {self.cache.protected_size()} + held "
                f"{self.held_by_requests()} != {self.kv_pool.size}"
            )


@dataclass
class SchedulerStats:
    steps: int = 0
    forward_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    retractions: int = 0
    jumped_tokens: int = 0
    draft_tokens_accepted: int = 0  # back-off tokens the model picked where they were drafted
    draft_tokens_rejected: int = 0

    def record_step(self, batch: ScheduledBatch) -> None:
        self.steps += 1
        self.forward_tokens += batch.num_tokens

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
