"""How big an outlines-core token index a regex would build, estimated before building it.

The index has one edge per (state, allowed token). A position that allows any character
(`.`, `[^"]`, a JSON string's character class) allows nearly the whole vocabulary, and a
bounded repetition copies its body's states `hi` times: `"[^"]{0,100}"` builds ~4.6 million
edges (26 MiB, 1.4 s here), a 2000-character `maxLength` ~90 million. Such a grammar goes
to the llguidance backend instead, which builds lexer states lazily.

The estimate walks Python's parse of the regex: wide positions count the vocabulary size,
narrow ones a few hundred tokens, bounded repeats multiply, unbounded loops count once. It
does not see subset-construction blow-ups (`(a|b)*a(a|b){20}`): those are caught by the
compile worker's time and memory limits. A regex Python cannot parse (Rust-only syntax such
as `\\p{L}`) has no estimate and is tried on outlines-core.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    from re import _constants as sre_constants
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants
    import sre_parse

NARROW_POSITION_EDGES = 500  # tokens starting with one given character, about
WIDE_CLASS_CHARS = 64  # a character class this large allows about the whole vocabulary


def estimated_index_edges(regex: str, vocab_size: int) -> int | None:
    """Estimated (state, token) edges of the index of `regex`; None if it cannot be parsed."""
    try:
        parsed = sre_parse.parse(regex)
    except (re.error, RecursionError, OverflowError):
        return None
    return _weight(parsed, vocab_size)


def _weight(items: Any, vocab: int) -> int:
    total = 0
    for op, av in items:
        total += _item_weight(op, av, vocab)
    return total


def _item_weight(op, av, vocab: int) -> int:
    c = sre_constants
    if op in (c.LITERAL,):
        return NARROW_POSITION_EDGES
    if op in (c.ANY, c.NOT_LITERAL):
        return vocab
    if op == c.IN:
        return _class_weight(av, vocab)
    if op == c.SUBPATTERN:
        return _weight(av[-1], vocab)
    if op == c.BRANCH:
        return sum(_weight(branch, vocab) for branch in av[1])
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        lo, hi, body = av
        copies = max(lo, 1) if hi == c.MAXREPEAT else hi
        return copies * _weight(body, vocab)
    return 0  # anchors, group references: no positions of their own


def _class_weight(items, vocab: int) -> int:
    c = sre_constants
    chars = 0
    for op, av in items:
        if op == c.NEGATE:
            return vocab
        if op == c.RANGE:
            chars += av[1] - av[0] + 1
        elif op == c.CATEGORY:
            chars += WIDE_CLASS_CHARS
        else:
            chars += 1
    return vocab if chars >= WIDE_CLASS_CHARS else min(vocab, chars * NARROW_POSITION_EDGES)
