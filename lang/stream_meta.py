"""Folding stream events into the (chunk, meta_info) pairs that streaming iterators yield.

Backends emit events whose logprob lists are per-event increments while counters such as
`completion_tokens` are cumulative (docs/wire-protocol.md B.6). When several events are yielded
as one chunk (events without new text fold into the next one), their increments are
concatenated so each yielded list covers exactly the tokens since the previous yield.
"""

from __future__ import annotations

# radixlm's jump_forward_positions is per event too (wire-protocol B.6)
INCREMENTAL_KEYS = ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs",
                    "jump_forward_positions")


def merge_stream_events(events: list[tuple[str, dict]]) -> tuple[str, dict]:
    """One (text, meta_info): the texts joined, the latest meta with increments concatenated."""
    text = "".join(chunk for chunk, _ in events)
    meta = dict(events[-1][1])
    for key in INCREMENTAL_KEYS:
        parts = [m[key] for _, m in events if m.get(key) is not None]
        if parts:
            meta[key] = [entry for part in parts for entry in part]
    return text, meta
