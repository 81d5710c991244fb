"""Incremental detokenization with stop-string trimming, one `RequestDetokenizer` per request.

Used by the detokenizer process of the server and in-process by `runtime.Engine`. Two rules:
  * never emit half a UTF-8 character: text that ends in U+FFFD is held back until the next
    token completes it (byte-level BPE splits multi-byte characters across tokens);
  * never emit text that a stop string could still claim: while a request runs, the longest
    tail of the text that is a prefix of a stop string is held back; at the end the matched
    stop string is cut off (unless no_stop_trim) and a stop token's text is not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from radixlm.runtime.sampling.sampling_params import SamplingParams


@dataclass
class RequestDetokenizer:
    tokenizer: object
    stop: list[str] = field(default_factory=list)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    ids: list[int] = field(default_factory=list)
    text: str = ""  # all decoded text so far (may still hold a partial stop string)
    _prefix_offset: int = 0
    _read_offset: int = 0
    _emitted: int = 0  # characters of `text` already handed out

    @classmethod
    def for_params(cls, tokenizer, params: SamplingParams) -> RequestDetokenizer:
        return cls(tokenizer, stop=list(params.stop), skip_special_tokens=params.skip_special_tokens,
                   spaces_between_special_tokens=params.spaces_between_special_tokens,
                   no_stop_trim=params.no_stop_trim)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids,
            skip_special_tokens=self.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
        )

    def add_tokens(self, new_ids: list[int]) -> None:
        """Append output tokens; complete characters are added to `text`."""
        self.ids.extend(new_ids)
        # Decode a window that starts a few tokens back so tokenizers that drop a leading
        # space (SentencePiece) or merge across tokens still give the right delta.
        prefix_text = self._decode(self.ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self.ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.text += new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)

    def update(self, new_ids: list[int], finished: bool, matched_stop: int | str | None = None) -> None:
        """Feed one step's tokens; on the final step, drop a matched stop token first."""
        if finished and isinstance(matched_stop, int) and not self.no_stop_trim and new_ids:
            new_ids = new_ids[:-1]
        self.add_tokens(new_ids)
        if finished:
            self._finish(matched_stop)

    def _finish(self, matched_stop: int | str | None) -> None:
        """Flush held-back bytes and trim a matched stop string."""
        full = self._decode(self.ids[self._prefix_offset :])
        prefix_text = self._decode(self.ids[self._prefix_offset : self._read_offset])
        if len(full) >= len(prefix_text):
            self.text += full[len(prefix_text) :]
        if isinstance(matched_stop, str) and not self.no_stop_trim:
            cut = self.text.find(matched_stop)
            if cut >= 0:
                self.text = self.text[:cut]

    def visible_text(self, finished: bool) -> str:
        """Text safe to show now: all of it once finished, else minus a possible stop prefix."""
        if finished or not self.stop or self.no_stop_trim:
            return self.text
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return self.text[: len(self.text) - hold]

    def take_delta(self, finished: bool) -> str:
        """New visible text since the last call (for streaming)."""
        vis = self.visible_text(finished)
        delta = vis[self._emitted :]
        self._emitted = max(self._emitted, len(vis))
        return delta
