"""The grammar backend interface: a shared compiled grammar and a per-request matcher.

Split as in SGLang's `BaseGrammarObject`: compiling is slow and done once per distinct
constraint (in the `GrammarManager`'s thread pool); matching is per request, per token, and
runs on the scheduler thread. outlines-core implements it today (`outlines_grammar.py`, `outlines_matcher.py`);
an xgrammar backend would fit behind the same two protocols.

Ownership: a `CompiledGrammar` is immutable and shared by every request with the same
constraint; a `GrammarMatcher` belongs to one `Req` (`req.grammar`) and is only touched by
the scheduler thread.
"""

from __future__ import annotations

from typing import Protocol

import torch

from radixlm.runtime.constrained.constraints import GrammarKey


class CompiledGrammar(Protocol):
    key: GrammarKey
    regex: str  # the regex every finished output matches in full
    compile_s: float  # seconds spent compiling (regex -> automata)
    size_bytes: int  # approximate memory held, for the cache's byte budget

    def new_matcher(self) -> GrammarMatcher:
        """A fresh matcher at the start of the output."""
        ...


class GrammarMatcher(Protocol):
    grammar: CompiledGrammar

    def accept_token(self, token_id: int) -> bool:
        """Advance over one sampled token. False (state unchanged) if the grammar refuses it.

        A stop token is accepted only where the output may end; it terminates the matcher.
        """
        ...

    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens (ValueError beyond `max_rollback`)."""
        ...

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into `bitmask[row]` (a CPU int32 tensor with
        contiguous rows; bit `i % 32` of word `i // 32` = token i allowed). The whole row is
        overwritten; stop tokens are allowed exactly where the output may end."""
        ...

    def is_terminated(self) -> bool:
        """True once the output is complete: a stop token was accepted, or the grammar is
        in an accepting state with no possible continuation (the request can stop now,
        without spending a forward pass on the stop token)."""
        ...

    def forced_string(self) -> str:
        """The text every valid continuation starts with ("" when none is forced)."""
        ...

    def copy(self) -> GrammarMatcher:
        """An independent matcher in the same state (shares the compiled grammar)."""
        ...
