"""The checks a request can only get where the model and the KV pool are known.

Everything about a request's own fields is checked when its SamplingParams are built (the
HTTP routes and the Engine do that before it reaches the scheduler); these need the model's
vocabulary and context length and the pool's size. A failure is a `ValueError` whose
message says what to change; the scheduler answers it as a 400. The server's tokenizer
manager runs them first, before a prompt crosses the IPC (server/tokenizer_pool.py), with
the names of the route the client called.
"""

from __future__ import annotations

from collections.abc import Mapping

from radixlm.runtime.scheduler.io import TokenizedRequest

MAX_TOP_LOGPROBS = 20


def check_request(tr: TokenizedRequest, vocab_size: int, context_len: int, pool_size: int,
                  names: Mapping[str, str] | None = None) -> None:
    """The O(1) checks first, then those that scan the prompt (a prompt far over the context
    is refused without reading it). `names` maps `max_new_tokens` and `input_ids` to the
    fields the client sent them as (the OpenAI routes: `max_tokens`, `prompt`)."""
    names = names or {}
    max_new_name, ids_name = names.get("max_new_tokens", "max_new_tokens"), names.get("input_ids", "input_ids")
    n = len(tr.input_ids)
    if n == 0:
        raise ValueError("the prompt is empty: send at least one token of text or input_ids")
    max_new = tr.sampling_params.max_new_tokens
    if n + max_new > context_len:
        raise ValueError(
            f"the prompt ({n} tokens) plus {max_new_name} ({max_new}) exceeds the context "
            f"length of {context_len} tokens; shorten the prompt or lower {max_new_name}"
        )
    if n + max_new > pool_size:
        raise ValueError(
            f"the prompt plus {max_new_name} ({n + max_new} tokens) exceeds the KV pool "
            f"({pool_size} tokens); raise --mem-fraction or lower {max_new_name}"
        )
    if tr.logprob_start_len >= n and tr.return_logprob:
        raise ValueError(f"logprob_start_len ({tr.logprob_start_len}) must be < the prompt length ({n})")
    if not 0 <= tr.top_logprobs_num <= MAX_TOP_LOGPROBS:
        raise ValueError(f"top_logprobs_num must be in [0, {MAX_TOP_LOGPROBS}] (got {tr.top_logprobs_num})")
    if any(not 0 <= t < vocab_size for t in tr.input_ids):
        raise ValueError(f"{ids_name} must be token ids in [0, {vocab_size})")
    tr.sampling_params.check_vocab(vocab_size)
    constraint = tr.sampling_params.constraint
    if constraint is not None and constraint[0] == "structural_tag":
        from radixlm.runtime.constrained.structural_tag import parse_structural_tag

        parse_structural_tag(constraint[1])  # its own errors, before the request queues
