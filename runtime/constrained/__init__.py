"""Constrained decoding: regex, JSON schema, choices and dtype constraints, with jump-forward.

Map of the package (docs/architecture.md §7; facts behind it in docs/constrained-decoding.md):
  constraints.py        kind + spec -> canonical key text -> regex (`ValueError` on bad input)
  vocabulary.py         `TokenVocab`: bytes of every token + outlines-core `Vocabulary`
  char_dfa.py           `CharDFA`: interegular char DFA, forced (singular) chains precomputed
  base.py               the backend protocols: `CompiledGrammar`, `GrammarMatcher`
  outlines_grammar.py   `OutlinesGrammar` + `compile_outlines_grammar` (worker threads)
  outlines_matcher.py   `OutlinesMatcher`: per-request Guide + char-DFA cursor
  grammar_manager.py    `GrammarManager`: thread pool, cache, time/size caps
  bitmask.py            allocate / reset / apply the int32 token bitmask
  jump_forward.py       `try_jump_forward`: forced text -> tokens, matcher re-synced

Scheduler integration (the whole contract; every call on the scheduler thread):

  setup   manager = GrammarManager.from_tokenizer(tokenizer, model_config.eos_token_ids,
              logits_dim, whitespace_pattern="", limits=GrammarLimits(compile_timeout_s=30),
              jump_forward=not args.disable_jump_forward)      # ~1 s: builds the vocabulary
          bitmask = allocate_token_bitmask(max_running_requests, logits_dim,
                                           pin_memory=device.type == "cuda")
  arrive  kind, spec = req.sampling_params.constraint   (regex | json_schema | choices | dtype;
          other kinds fail at poll) -> req_handle = manager.submit(kind, spec) (never raises);
          park the request in a grammar queue.
  loop    matcher = manager.poll(req_handle):  None -> keep waiting;  ValueError(reason) ->
          finish the request as abort (HTTP 400, message = reason);  else req.grammar =
          matcher and move it to the waiting queue. manager.cancel(req_handle) when a request
          is aborted while it waits.
  sample  rows = bitmask[:batch_size]; reset_bitmask(rows); for i, req in enumerate(reqs): if
          req.grammar: req.grammar.fill_bitmask(rows, i)   (CPU; ~3 us narrow, ~0.2 ms wide)
          logits = apply_token_bitmask_(logits, rows.to(logits.device, non_blocking=True))
          -- in Sampler.sample after penalties and the min-token bans, before temperature;
          i.e. `allowed_mask: bool [B, V]` becomes `token_bitmask: int32 [B, ceil(V/32)] | None`
          and the masked_fill line becomes `apply_token_bitmask_(logits, token_bitmask)`.
          A row never ends up all -inf: a matcher that allows only stop tokens is terminated,
          and the StopChecker finishes its request before it is sampled again.
  accept  after sampling, for each constrained req: req.grammar.accept_token(next_id) (False
          cannot happen under the mask: treat it as an internal error and abort). The
          StopChecker then ends the request with reason stop once is_terminated() (complete
          and nothing but a stop token may follow: no extra pass for eos). max_new_tokens
          still ends it first with reason length; that output may be an incomplete match.
  jump    unless jump-forward is disabled, for each constrained req that did not finish:
          jf = try_jump_forward(req.grammar, tokenizer, max_tokens=req.remaining_new_tokens - 1)
          -> None, or JumpForward(text, token_ids) with the matcher already advanced over
          token_ids: req.output_ids += token_ids, and the request's next forward is one extend
          over (the just-sampled token + token_ids) instead of a decode; its last logits sample
          the next token under the new mask. Jumped tokens have no sampled logprobs. Stop
          strings are checked by the StopChecker on the next sampled token (its tail window
          covers the jumped text). Undo a jump with req.grammar.rollback(len(token_ids)).
  retract a retracted request keeps its matcher (its output_ids are kept too).

Mask sizing: bitmask words = ceil(logits_dim / 32) from the model, never the tokenizer.
"""

from typing import Any

# Lazy, so a compile worker process (compile_worker.py) can import this package's light
# modules without torch, which the bitmask and matcher modules need.
_EXPORTS = {
    "KINDS": "constraints", "GrammarKey": "constraints",
    "GrammarHandle": "grammar_manager", "GrammarLimits": "grammar_manager", "GrammarManager": "grammar_manager",
    "JumpForward": "jump_forward", "try_jump_forward": "jump_forward",
    "allocate_token_bitmask": "bitmask", "apply_token_bitmask_": "bitmask", "reset_bitmask": "bitmask",
    "unpack_bitmask": "bitmask",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"radixlm.runtime.constrained.{_EXPORTS[name]}"), name)
