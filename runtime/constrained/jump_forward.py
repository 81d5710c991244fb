"""Jump-forward: append the text a grammar forces as tokens, without sampling them one by one.

`try_jump_forward(matcher, tokenizer, max_tokens)` is called by the scheduler after a
constrained request accepted its sampled token and did not finish. It:
  1. reads `matcher.forced_string()` (whole characters only; "" inside a multi-byte char);
  2. re-tokenizes `text of the last accepted token(s) + forced text` (the context starts on
     a character boundary, at most `_MAX_CONTEXT_TOKENS` back) so the forced tokens are the
     ones a tokenizer would pick after that context. If that would change an accepted token
     (e.g. a sampled `"` followed by forced `,"age":` re-tokenizes as `","` + ...), accepted
     tokens are never rewritten (their KV is computed): the forced text is then tokenized on
     its own, after the existing token boundary;
  3. end back-off: drops the last re-tokenized token, so the model itself produces the token
     that spans the end of the forced run, under the mask (a jump never ends mid-token);
  4. trims trailing tokens that would leave a UTF-8 character unfinished, and caps the count
     at `max_tokens`;
  5. re-syncs the matcher by `matcher.accept_token(t)` for each new token, in order (all of
     them accepted, or none: a refusal rolls the accepted ones back and returns None).

On success the matcher already stands after the returned tokens. The caller appends
`token_ids` to `req.output_ids`; the request's next forward is then one extend pass over
the just-sampled token plus `token_ids` (their KV is not computed yet) instead of a one-token
decode, and the logits of its last position sample the next token under the new mask. To
drop a jump after all (e.g. no room in the KV pool), call `matcher.rollback(len(token_ids))`.
"""

from __future__ import annotations

from typing import NamedTuple

from radixlm.runtime.constrained.outlines_matcher import OutlinesMatcher, split_utf8

MIN_JUMP_CHARS = 2  # a 1-char jump saves nothing after the back-off
_MAX_CONTEXT_TOKENS = 4  # a UTF-8 character spans at most 4 byte-level tokens


class JumpForward(NamedTuple):
    text: str  # exactly the text of token_ids: a prefix of the forced string
    token_ids: list[int]  # already accepted by the matcher
    # The back-off token (only when asked for): the tokenizer's last token of the forced
    # text, ending exactly where the forced text ends. NOT accepted by the matcher: the
    # caller may run it in the same extend pass and keep it only if the model, sampling
    # under the mask at its position, picks it (speculative verification).
    draft_id: int | None = None


def try_jump_forward(matcher: OutlinesMatcher, tokenizer, max_tokens: int,
                     min_chars: int = MIN_JUMP_CHARS, draft: bool = False) -> JumpForward | None:
    """Advance `matcher` over the forced text; None (matcher untouched) if there is nothing
    worth jumping (fewer than `min_chars` forced, inside a character, only the back-off
    token, or a tokenizer that does not round-trip the text). With `draft`, the back-off
    token comes back as `draft_id` (counted in `max_tokens`), and a forced text of one token
    or one character is worth a jump of no tokens and that draft."""
    forced = matcher.forced_string()
    if not forced or max_tokens <= 0 or (len(forced) < min_chars and not draft):
        return None
    context_ids, context_text = _context(matcher)
    ids = tokenizer.encode(context_text + forced, add_special_tokens=False)
    if ids[: len(context_ids)] == context_ids:
        ids = ids[len(context_ids):]
    else:  # the forced text would merge into accepted tokens: keep the existing boundary
        ids = tokenizer.encode(forced, add_special_tokens=False)
    if not ids:
        return None
    new_ids = _whole_characters(matcher, ids[:-1][:max_tokens])
    text = _text(matcher, new_ids)
    if text is None or not forced.startswith(text):  # a normalizing tokenizer changed the text
        return None
    draft_id = None
    if draft and len(new_ids) == len(ids) - 1 < max_tokens and _text(matcher, ids) == forced:
        draft_id = ids[-1]
    if not new_ids and draft_id is None:
        return None
    return JumpForward(text, new_ids, draft_id) if _accept_all(matcher, new_ids) else None


def _text(matcher: OutlinesMatcher, ids: list[int]) -> str | None:
    """The text of `ids`, or None if it is not whole UTF-8 characters (or has special tokens)."""
    token_bytes = matcher.grammar.vocab.token_bytes
    if any(token_bytes[t] is None for t in ids):
        return None
    try:
        return b"".join(token_bytes[t] for t in ids).decode()
    except UnicodeDecodeError:
        return None


def _context(matcher: OutlinesMatcher) -> tuple[list[int], str]:
    """The shortest tail of accepted tokens whose bytes start on a character boundary
    (none: the forced text is tokenized on its own)."""
    accepted = matcher.accepted_ids
    token_bytes = matcher.grammar.vocab.token_bytes
    for k in range(1, min(_MAX_CONTEXT_TOKENS, len(accepted)) + 1):
        tail = accepted[-k:]
        if token_bytes[tail[0]] is None:  # a special/stop token: no text to re-tokenize
            break
        try:
            return tail, b"".join(token_bytes[t] for t in tail).decode("utf-8")
        except UnicodeDecodeError:
            continue
    return [], ""


def _whole_characters(matcher: OutlinesMatcher, ids: list[int]) -> list[int]:
    """The longest prefix of `ids` whose bytes end on a character boundary."""
    token_bytes = matcher.grammar.vocab.token_bytes
    if any(token_bytes[t] is None for t in ids):
        return []
    while ids and split_utf8(b"".join(token_bytes[t] for t in ids))[1]:
        ids = ids[:-1]
    return ids


def _accept_all(matcher: OutlinesMatcher, ids: list[int]) -> bool:
    for n, token_id in enumerate(ids):
        if not matcher.accept_token(token_id):
            matcher.rollback(n)
            return False
    return True
