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

The rest of a step lives beside this file: grammar_queue.py (requests waiting for a grammar,
masks), sampled_rows.py (what each request drew, draft verdicts), jump_forward.py,
prompt_logprobs.py, outputs.py, request_kv.py (slot ownership), policy.py, batch.py.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import torch

from radixlm.runtime.errors import RequestError
from radixlm.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool
from radixlm.runtime.mem_cache.no_radix_cache import NoRadixCache
from radixlm.runtime.mem_cache.radix_cache import RadixCache
from radixlm.runtime.model.runner import ModelRunner
from radixlm.runtime.sampling.sampler import Sampler
from radixlm.runtime.scheduler import policy
from radixlm.runtime.scheduler.batch import ScheduledBatch
from radixlm.runtime.scheduler.config import SchedulerConfig
from radixlm.runtime.scheduler.grammar_queue import GrammarConfig, GrammarQueue
from radixlm.runtime.scheduler.io import FinishReason, ReqTokenOutput, TokenizedRequest
from radixlm.runtime.scheduler.jump_forward import jump_forward
from radixlm.runtime.scheduler.outputs import build_output
from radixlm.runtime.scheduler.prompt_logprobs import add_prompt_logprobs, wants_prompt_logprobs
from radixlm.runtime.scheduler.request import Req
from radixlm.runtime.scheduler.request_checks import check_request
from radixlm.runtime.scheduler.request_kv import RequestKV
from radixlm.runtime.scheduler.sampled_rows import (
    DraftVerdict,
    SampledToken,
    sample_rows,
    verify_drafts,
)
from radixlm.runtime.scheduler.stats import SchedulerStats
from radixlm.runtime.scheduler.stop_checker import StopChecker
from radixlm.runtime.scheduler.triggers import enter_structure, leave_structure

logger = logging.getLogger(__name__)

NAN_LOGITS = "the model produced NaN/inf logits for this request"


class Scheduler:
    def __init__(self, runner: ModelRunner, tokenizer, cfg: SchedulerConfig) -> None:
        self.runner = runner
        self.cfg = cfg
        mc = runner.config
        self.device = runner.device
        self.req_pool = ReqToTokenPool(cfg.max_running_requests, cfg.context_len, self.device)
        # runner.kv_heads: this rank's KV heads under tensor parallelism (all of them at tp 1).
        self.kv_pool = KVPool(
            cfg.max_total_tokens, mc.num_layers, runner.kv_heads, mc.head_dim, runner.dtype, self.device
        )
        self.cache = NoRadixCache(self.kv_pool) if cfg.disable_radix_cache else RadixCache(self.kv_pool)
        self.kv = RequestKV(self.req_pool, self.kv_pool, self.cache)
        self.sampler = Sampler(mc.vocab_size, mc.eos_token_ids)
        self.stop_checker = StopChecker(tokenizer, mc.eos_token_ids)
        self.tokenizer = tokenizer
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.grammars = GrammarQueue(tokenizer, GrammarConfig(
            stop_ids=mc.eos_token_ids, logits_dim=mc.vocab_size, max_rows=cfg.max_running_requests,
            pin_memory=self.device.type == "cuda", whitespace_pattern=cfg.json_whitespace_pattern,
            compile_timeout_s=cfg.grammar_compile_timeout_s, jump_forward=cfg.enable_jump_forward,
            budget_completion=cfg.budget_completion, workers=cfg.grammar_workers,
            memory_limit_bytes=cfg.grammar_memory_limit_bytes, queue_timeout_s=cfg.grammar_queue_timeout_s,
        ))
        self.new_token_ratio = policy.INITIAL_NEW_TOKEN_RATIO
        self.pending_outputs: list[ReqTokenOutput] = []
        self.stats = SchedulerStats()

    # ---- requests in --------------------------------------------------------------------
    def add_request(self, tr: TokenizedRequest) -> None:
        """Queue a tokenized request. Raises ValueError if it can never be served."""
        self.validate(tr)
        req = Req.from_tokenized(tr, self.cfg.random_seed, self.device)
        if tr.sampling_params.constraint is not None:
            self.grammars.submit(req)
        else:
            self.waiting.append(req)

    def try_add_request(self, tr: TokenizedRequest) -> ReqTokenOutput | None:
        """`add_request`, or the output that rejects the request: a 400 for input it can never
        serve, a 500 for anything else (a bug met by one request must not stop the loop)."""
        try:
            self.add_request(tr)
        except ValueError as exc:
            return ReqTokenOutput.rejected(tr.rid, RequestError.invalid(str(exc)), len(tr.input_ids))
        except Exception as exc:
            logger.exception("adding request %s failed", tr.rid)
            error = RequestError.internal(f"internal error in the scheduler: {exc!r}")
            return ReqTokenOutput.rejected(tr.rid, error, len(tr.input_ids))
        return None

    def validate(self, tr: TokenizedRequest) -> None:
        check_request(tr, self.runner.config.vocab_size, self.cfg.context_len, self.kv_pool.size)

    def abort(self, rid: str, message: str = "aborted") -> None:
        """Finish `rid` with reason abort wherever it is; its KV is freed or cached."""
        self._finish(rid, FinishReason.aborted(message))

    def fail_in_flight(self, error: RequestError) -> list[ReqTokenOutput]:
        """Fail every request with `error` after a step raised: their KV returns to the cache
        or pool. Returns the outputs to deliver, pending ones included: one final output for
        every request, even one whose abort itself failed."""
        broken = []
        for req in list(self.running) + list(self.waiting) + list(self.grammars.pending):
            try:
                self._finish(req.rid, FinishReason.failed(error))
            except Exception:  # the state is already damaged; still answer the client
                logger.exception("abort of %s failed after a step error", req.rid)
                broken.append(ReqTokenOutput.rejected(req.rid, error))
        self.running = [r for r in self.running if not r.finished]
        outputs, self.pending_outputs = self.pending_outputs + broken, []
        return outputs

    def _finish(self, rid: str, reason: FinishReason) -> None:
        queued = self.grammars.remove(rid) or next((r for r in self.waiting if r.rid == rid), None)
        if queued is not None:
            if queued in self.waiting:
                self.waiting.remove(queued)
            queued.finish_reason = reason
            self.pending_outputs.append(build_output(queued, []))
        for req in self.running:
            if req.rid == rid and not req.finished:
                req.finish_reason = reason
        self.running = self._release_finished(self.running, self.pending_outputs)

    def flush_cache(self) -> bool:
        """Drop the radix cache; only possible when no request is running or waiting."""
        if self.running or self.waiting:
            return False
        self.cache.reset()
        self.check_invariant()
        return True

    @property
    def is_idle(self) -> bool:
        return not self.running and not self.waiting and not self.grammars.pending

    @property
    def is_streaming(self) -> bool:
        """Some running request has output already: the next step decodes for it, and its
        tokens go out through the detokenizer and HTTP processes as that step ends."""
        return any(req.output_ids for req in self.running)

    # ---- one iteration ------------------------------------------------------------------
    def step(self) -> list[ReqTokenOutput]:
        self._take_compiled_grammars()
        outputs, self.pending_outputs = self.pending_outputs, []
        batch = self._schedule()
        if batch is None:
            if self.is_idle and self.cfg.check_invariant_when_idle:
                self.check_invariant()
            elif self.grammars.pending and not outputs:
                time.sleep(0.001)  # only compiles pending: do not spin against their workers
            return outputs
        out_cache_loc = self.kv.alloc_slots(batch.num_tokens)
        try:
            fb = batch.build(out_cache_loc, self.req_pool, self.kv_pool, self.device)
            logits = self.runner.forward(fb)
            verdicts = verify_drafts(self.sampler, batch, logits, self.grammars.bitmask)
            sampled = sample_rows(self.sampler, batch, logits, self.grammars.bitmask, verdicts)
        except BaseException:
            # No request owns this step's slots until _process_results advances prefix_len,
            # and the outputs taken above must still reach their clients.
            self.kv_pool.free(out_cache_loc)
            self.pending_outputs = outputs + self.pending_outputs
            raise
        self._process_results(batch, logits, sampled, verdicts, outputs)
        self.stats.record_step(batch)
        return outputs

    def _take_compiled_grammars(self) -> None:
        """Queue the requests whose grammar compiled, answer those whose grammar failed. With
        jump-forward, text the grammar forces before any sampling (`{"name":"` of a JSON
        schema) joins the prompt now, so the prefill computes it and it streams out at once."""
        if not self.grammars.pending:
            return
        ready, failed = self.grammars.poll()
        self.pending_outputs.extend(build_output(req, []) for req in failed)
        for req in ready:
            jumped = self._jump(req) if self.cfg.enable_jump_forward and req.grammar is not None else []
            if jumped or req.finished:
                self.pending_outputs.append(build_output(req, jumped))
            if not req.finished:
                self.waiting.append(req)

    def _schedule(self) -> ScheduledBatch | None:
        reqs, lens = self._running_part()
        while self.running and sum(lens) > self.kv.room():
            self._retract(max(self.running, key=lambda r: (r.remaining_new_tokens, -len(r.fill_ids))))
            reqs, lens = self._running_part()
        self.new_token_ratio = policy.decay_new_token_ratio(self.new_token_ratio)
        self._admit(reqs, lens, self.cfg.chunked_prefill_size - sum(lens))
        return ScheduledBatch(reqs, lens) if reqs else None

    def _running_part(self) -> tuple[list[Req], list[int]]:
        """Decodes first (one token each), then prefill chunks within the token budget less
        what waiting requests are kept (policy.newcomer_reserve)."""
        reqs, lens = [], []
        budget = self.cfg.chunked_prefill_size - policy.newcomer_reserve(self.waiting, self.cfg.chunked_prefill_size)
        for req in sorted(self.running, key=lambda r: len(r.fill_ids) - r.prefix_len > 1):
            remaining = len(req.fill_ids) - req.prefix_len
            n = 1 if remaining == 1 else policy.chunk_len(req, remaining, budget)
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
        reserved = sum(len(r.fill_ids) - r.prefix_len + policy.output_reserve(r, self.new_token_ratio)
                       for r in self.running)
        in_flight = [r for r, n in zip(reqs, lens) if n > 1]
        for req, match in policy.order_waiting(list(self.waiting), self.cache, self.cfg.schedule_policy):
            if budget <= 0 or len(self.running) >= self.cfg.max_running_requests:
                break
            # Deferring only pays when the first request's prefix will be cached for the rest.
            if not self.cache.disabled and policy.should_defer(req, len(match.slots), in_flight):
                continue
            remaining = len(req.fill_ids) - len(match.slots)
            n = policy.chunk_len(req, remaining, budget)
            if n <= 0:
                break
            self.cache.inc_lock_ref(match.node)  # first: a locked prefix is no longer evictable
            promise = remaining + policy.output_reserve(req, self.new_token_ratio)
            if reserved + promise > self.kv.room():
                self.cache.dec_lock_ref(match.node)
                break
            self._start(req, match)
            reqs.append(req)
            lens.append(n)
            in_flight.append(req)
            budget -= n
            reserved += promise

    def _start(self, req: Req, match) -> None:
        """Admit `req` (its cache match already locked)."""
        self.waiting.remove(req)
        self.running.append(req)
        self.kv.attach(req, match)
        if not req.admitted:
            req.admitted = True
            req.cached_tokens = min(req.prefix_len, len(req.input_ids))
            self.stats.prompt_tokens += len(req.input_ids)
            self.stats.cached_tokens += req.cached_tokens

    def _retract(self, req: Req) -> None:
        """Send a running request back to the queue; its computed KV stays in the cache."""
        self.running.remove(req)
        self.kv.cache_and_free(req)
        req.prefix_len = 0
        req.num_retractions += 1
        if not req.input_token_logprobs_done:  # prompt logprobs are recomputed on resume
            req.input_token_logprobs.clear()
            req.input_top_logprobs.clear()
        self.stats.retractions += 1
        self.new_token_ratio = policy.raise_new_token_ratio(self.new_token_ratio)
        logger.info("KV pool full: retracted request %s back to the queue", req.rid)
        self.waiting.appendleft(req)

    def _release_finished(self, running: list[Req], outputs: list, emit: bool = True) -> list[Req]:
        still = []
        for req in running:
            if req.finished:
                self.kv.cache_and_free(req)
                if emit:
                    outputs.append(build_output(req, []))
            else:
                still.append(req)
        return still

    # ---- results ------------------------------------------------------------------------
    def _process_results(self, batch: ScheduledBatch, logits: torch.Tensor, sampled: dict[str, SampledToken],
                         verdicts: dict[str, DraftVerdict], outputs: list[ReqTokenOutput]) -> None:
        for req, ext in zip(batch.reqs, batch.extend_lens):
            req.prefix_len += ext  # first, so a failure below leaves every slot owned (and freed by abort)
        for req, ext, rows in zip(batch.reqs, batch.extend_lens, batch.rows):
            if wants_prompt_logprobs(req):
                add_prompt_logprobs(req, ext, rows, logits)
            new_ids = [] if req.rid not in verdicts else self._settle_draft(req, verdicts[req.rid])
            token = sampled.get(req.rid)
            if token is not None and not req.finished:
                new_ids += self._append_sampled(req, token)
            if req.sampling_params.max_new_tokens == 0 and req.prefix_len == len(req.fill_ids):
                req.finish_reason = FinishReason("length", length=0)
            if ext > 1 and not req.finished:
                self.kv.cache_progress(req)
            if new_ids or req.finished or rows.prompt_rows:
                outputs.append(build_output(req, new_ids))
        self.running = self._release_finished(self.running, outputs, emit=False)

    def _settle_draft(self, req: Req, verdict: DraftVerdict) -> list[int]:
        """Keep a verified draft as an output token (its KV was computed this step), or give
        its KV slot back and take the token the model drew at its position instead."""
        draft, req.draft_id = req.draft_id, None
        if verdict.accepted and not verdict.bad:
            self.stats.draft_tokens_accepted += 1
            return self._take_token(req, draft, grammar_accepted=True, jump=False)
        self.kv.drop_last(req)
        if verdict.bad:
            req.finish_reason = FinishReason.failed(RequestError.internal(NAN_LOGITS))
            return []
        self.stats.draft_tokens_rejected += 1
        return self._take_token(req, verdict.token_id)

    def _append_sampled(self, req: Req, token: SampledToken) -> list[int]:
        if token.bad:  # the token sampled from NaN/inf logits is garbage: keep the output before it
            req.finish_reason = FinishReason.failed(RequestError.internal(NAN_LOGITS))
            return []
        if req.return_logprob:
            req.output_token_logprobs.append((token.logprob, token.token_id))
            if req.top_logprobs_num:
                req.output_top_logprobs.append(token.top_logprobs)
        return self._take_token(req, token.token_id)

    def _take_token(self, req: Req, tok: int, grammar_accepted: bool = False, jump: bool = True) -> list[int]:
        """Append a chosen token: grammar, stop conditions, then jump-forward over what the
        grammar forces next (not after a draft: the token sampled after it comes first)."""
        req.output_ids.append(tok)
        if req.grammar is not None and not grammar_accepted and not req.grammar.accept_token(tok):
            req.finish_reason = FinishReason.failed(
                RequestError.internal(f"internal error: token {tok} violates the grammar"))
            return [tok]
        new_ids = [tok]
        if req.in_structure and req.grammar.is_terminated():  # a structural_tag structure ended
            leave_structure(req)
        elif req.triggers and req.grammar is None:
            new_ids = enter_structure(req, self.tokenizer) or new_ids
        req.finish_reason = self.stop_checker.check(req, self.cfg.context_len)
        if jump and req.grammar is not None and not req.finished and self.cfg.enable_jump_forward:
            return new_ids + self._jump(req)
        return new_ids

    def _jump(self, req: Req) -> list[int]:
        jumped = jump_forward(req, self.tokenizer, self.cfg.jump_forward_drafts)
        self.stats.jumped_tokens += len(jumped)
        return jumped

    # ---- invariants ---------------------------------------------------------------------
    def held_by_requests(self) -> int:
        return self.kv.held_by_requests(self.running)

    def check_invariant(self) -> None:
        self.kv.check_invariant(self.running)
