"""TokenVocab: the byte string of every token, and the outlines-core `Vocabulary` built from it.

Built once per tokenizer from the local Hugging Face tokenizer (never the hub). Handles
byte-level BPE (GPT-2, SmolLM, Llama-3, Qwen2: the GPT-2 byte<->unicode table inverted) and
SentencePiece byte-fallback (Llama-2, Mistral: `<0xNN>` is one byte, `▁` is a space).
Special tokens and every stop id are left out of the token map: outlines-core knows only one
eos (`stop_ids[0]`); the matcher treats the other stop ids as that eos itself.

The map also holds one fake token, the end sentinel (`END_SENTINEL`, under an unused special
id): grammars are compiled as `(?:regex)<sentinel>`, and "the output may end here" becomes
"the sentinel leads to a final state". Why: outlines-core 0.2.14 drops every token
transition from a complete match to a still-incomplete text (its DFA reports matches one
byte late), so with the bare regex `dog(s|22)?` the token "2" after "dog" is never allowed.
Real tokens holding the sentinel's lead byte (0xF4, which only starts private-use plane-16
characters) are left out so that no token sequence can spell the sentinel.

Owned by the `GrammarManager`; immutable after construction and shared by all grammars.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache

from outlines_core import Vocabulary

logger = logging.getLogger(__name__)

SPIECE_SPACE = "\u2581"  # "▁"
END_SENTINEL = "\U0010ffff"  # a noncharacter: no tokenizer spells it as one token
_SENTINEL_LEAD_BYTE = 0xF4  # starts only U+100000..U+10FFFF (private use plane 16)


@lru_cache(maxsize=1)
def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
    68 bytes were given the code points 256, 257, ... in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in type(decoder).__name__ + repr(decoder)


def _byte_level_bytes(piece: str) -> bytes | None:
    table = _gpt2_unicode_to_byte()
    try:
        return bytes(table[ch] for ch in piece)
    except KeyError:  # not a byte-level piece (should not happen in a byte-level vocabulary)
        return None


def _sentencepiece_bytes(piece: str) -> bytes:
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    return piece.replace(SPIECE_SPACE, " ").encode()


def token_byte_table(tokenizer) -> list[bytes | None]:
    """bytes of each token id (None for special tokens and ids the tokenizer lacks).

    Non-special added tokens are literal text; the rest go through the tokenizer's own
    byte mapping. Index = token id; length = the largest id + 1.
    """
    vocab: dict[str, int] = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special |= {i for i, t in added.items() if getattr(t, "special", False)}
    byte_level = _is_byte_level(tokenizer)
    table: list[bytes | None] = [None] * (max(vocab.values()) + 1)
    for piece, token_id in vocab.items():
        if token_id in special:
            continue
        if token_id in added:
            data = added[token_id].content.encode()
        elif byte_level:
            data = _byte_level_bytes(piece)
        else:
            data = _sentencepiece_bytes(piece)
        table[token_id] = data or None  # an empty token can never advance a regex
    return table


@dataclass(frozen=True)
class TokenVocab:
    """Token bytes, stop ids and the outlines-core Vocabulary of one tokenizer."""

    token_bytes: tuple[bytes | None, ...]  # [tokenizer vocab], None = never allowed
    stop_ids: tuple[int, ...]  # stop_ids[0] is the eos outlines-core knows
    sentinel_id: int  # the fake END_SENTINEL token; never sampled, never text
    vocabulary: Vocabulary
    fingerprint: str  # tokenizer identity, part of every grammar cache key

    @property
    def eos_id(self) -> int:
        return self.stop_ids[0]

    @property
    def size(self) -> int:
        """Largest id in use + 1 (the bitmask must cover at least this many bits)."""
        return max(len(self.token_bytes), max(self.stop_ids) + 1, self.sentinel_id + 1)


def build_token_vocab(tokenizer, stop_ids: tuple[int, ...]) -> TokenVocab:
    """Build the vocabulary of `tokenizer`; `stop_ids` (non-empty) end a constrained output."""
    if not stop_ids:
        raise ValueError("constrained decoding needs at least one eos/stop token id")
    table = token_byte_table(tokenizer)
    for stop_id in stop_ids:  # stop ids must be transitions to "finished", never text
        if stop_id < len(table):
            table[stop_id] = None
    table = [None if data and _SENTINEL_LEAD_BYTE in data else data for data in table]
    token_map: dict[bytes, list[int]] = {}
    for token_id, data in enumerate(table):
        if data is not None:
            token_map.setdefault(data, []).append(token_id)
    sentinel_id = _sentinel_id(table, stop_ids)
    token_map[END_SENTINEL.encode()] = [sentinel_id]
    digest = hashlib.sha256(repr((sorted(token_map.items()), stop_ids)).encode()).hexdigest()
    logger.info("grammar vocabulary: %d token strings, stop ids %s", len(token_map), stop_ids)
    return TokenVocab(tuple(table), tuple(stop_ids), sentinel_id,
                      Vocabulary(stop_ids[0], token_map), digest[:16])


def _sentinel_id(table: list[bytes | None], stop_ids: tuple[int, ...]) -> int:
    """An id that is no text and no stop (a special token the grammar never allows), else
    the first id past the tokenizer (needs a logits dim larger than the tokenizer)."""
    free = (i for i, data in enumerate(table) if data is None and i not in stop_ids)
    return next(free, len(table))
