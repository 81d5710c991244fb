"""Which waiting requests to admit next, in what order, and how much of each per step.

* Ordering: longest-prefix-match first (requests that reuse the most cached KV run together
  while it is still cached), FCFS when the queue is long (matching every request each step
  would cost more than it saves).
* In-batch prefix deduplication: a request that shares a long uncached prefix with one
  already admitted in this step waits one step, so the prefix is computed once and then hit
  in the radix cache (the first request inserts its prompt right after its prefill).
* Admission: the new tokens plus a reserve for future output must fit in free + evictable
  KV memory after the reserves of the requests already running. The reserve ratio decays
  while memory suffices and jumps when a request had to be retracted.
* Chunking: a prompt is computed in chunks within the step's token budget; while requests
  wait, running prefills leave part of it to them (`newcomer_reserve`).
"""

from __future__ import annotations

from collections.abc import Iterator

from radixlm.runtime.scheduler.request import Req

LPM_QUEUE_LIMIT = 128
# A shared-but-uncached prefix at least this long defers the later request by a step.
DEDUP_MIN_SHARED_TOKENS = 32
# Output tokens reserved per request at most when admitting (the ratio below scales it).
RESERVE_CAP_TOKENS = 4096
INITIAL_NEW_TOKEN_RATIO = 0.4
MIN_NEW_TOKEN_RATIO = 0.1
NEW_TOKEN_RATIO_DECAY = 0.002
NEW_TOKEN_RATIO_RETRACT_STEP = 0.1
# While requests wait, running prefills leave them up to this share of a step's tokens.
NEWCOMER_SHARE = 0.25


def match_limit(req: Req) -> int:
    """How many leading fill_ids may come from the cache: at least `req.last_chunk_min` must be
    computed, and prompt logprobs need every position from logprob_start_len computed."""
    limit = len(req.fill_ids) - req.last_chunk_min
    start = req.prompt_logprob_start
    if start is not None and not req.input_token_logprobs_done:
        limit = min(limit, start)
    return max(limit, 0)


def order_waiting(waiting: list[Req], cache, policy: str) -> Iterator[tuple[Req, object]]:
    """The queue in admission order, each request with its MatchResult (nothing is locked).

    Admission uses these matches directly: nothing between ordering and admission changes the
    paths they hold (locking does not; a later match may split a node, but the matched node
    stays the lower half, so its path is unchanged; eviction happens only when the step
    allocates). FCFS matches lazily, only the requests admission actually reaches."""
    def with_match(r: Req) -> tuple[Req, object]:
        return r, cache.match_prefix(r.fill_ids[: match_limit(r)])

    if policy == "fcfs" or len(waiting) > LPM_QUEUE_LIMIT or getattr(cache, "disabled", False):
        return map(with_match, waiting)
    # Stable sort: equal matches keep their arrival order.
    return iter(sorted(map(with_match, waiting), key=lambda rm: -len(rm[1].slots)))


def shared_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: prompts that share a prefix usually share hundreds of tokens.
    while i + 64 <= n and a[i : i + 64] == b[i : i + 64]:
        i += 64
    while i < n and a[i] == b[i]:
        i += 1
    return i


def should_defer(req: Req, cached_len: int, in_flight: list[Req]) -> bool:
    """True if `req` shares a long not-yet-cached prefix with a request computing it now."""
    ids = req.fill_ids
    for other in in_flight:
        shared = shared_prefix_len(ids, other.fill_ids)
        if shared - cached_len >= DEDUP_MIN_SHARED_TOKENS:
            return True
    return False


def output_reserve(req: Req, ratio: float) -> int:
    """KV tokens to keep free for this request's future output."""
    return int(min(req.remaining_new_tokens, RESERVE_CAP_TOKENS) * ratio)


def decay_new_token_ratio(ratio: float) -> float:
    """One step without retraction: reserve a little less output room per request."""
    return max(MIN_NEW_TOKEN_RATIO, ratio - NEW_TOKEN_RATIO_DECAY)


def raise_new_token_ratio(ratio: float) -> float:
    """A request was retracted: the reserves were too small."""
    return min(1.0, ratio + NEW_TOKEN_RATIO_RETRACT_STEP)


def chunk_len(req: Req, remaining: int, budget: int) -> int:
    """Tokens of `req` to compute this step within the budget; a chunk before the last
    leaves the last one at least `req.last_chunk_min` tokens."""
    n = min(remaining, max(budget, 0))
    if n < remaining:
        n = min(n, remaining - req.last_chunk_min)
    return n


def newcomer_reserve(waiting: list[Req], chunk_size: int) -> int:
    """Prefill tokens a step keeps from running prefills for waiting requests. Without it a
    long prompt takes every step's whole budget until it is computed, and a short request
    behind it waits that long (a 1-token request behind a 4,000-token prompt at chunk 512:
    66 s on 2 cores). Never more than the waiting prompts could use."""
    if not waiting:
        return 0
    return min(int(chunk_size * NEWCOMER_SHARE), sum(len(r.fill_ids) for r in waiting))
