"""Choice-scoring methods for `select` (docs/wire-protocol.md A.3), pure Python.

Each method is a callable taking the per-choice logprob lists a backend computed and
returning a ChoicesDecision. Logprob entries are `[logprob | None, token_id, text | None]`;
a None logprob (the first prompt position has no predictor) counts as 0.0 in matrices and
is skipped in means.
"""

from __future__ import annotations

from typing import Any

from radixlm.lang.ir import ChoicesDecision


class ChoicesSamplingMethod:
    requires_unconditional_logprobs = False

    def __call__(
        self,
        *,
        choices: list[str],
        normalized_prompt_logprobs: list[float],
        input_token_logprobs: list[list[Any]],
        output_token_logprobs: list[list[Any]],
        unconditional_token_logprobs: list[list[Any]] | None = None,
    ) -> ChoicesDecision:
        raise NotImplementedError


def _argmax(values: list[float]) -> int:
    """Index of the largest value; ties go to the first."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _base_meta(normalized, input_lp, output_lp) -> dict[str, Any]:
    return {"normalized_prompt_logprobs": normalized, "input_token_logprobs": input_lp,
            "output_token_logprobs": output_lp}


def _values(entries: list[Any]) -> list[float]:
    return [e[0] if e[0] is not None else 0.0 for e in entries]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class TokenLengthNormalized(ChoicesSamplingMethod):
    """Argmax of the mean prompt logprob of each choice."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:
        best = _argmax(normalized_prompt_logprobs)
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        return ChoicesDecision(choices[best], meta)


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Keep the choices reaching each column's max, column by column, until one is left.

    Shorter choices are padded with their own mean logprob. A column where every remaining
    choice has the same token is a tie: those entries are the shared prompt tokens, equal in
    exact arithmetic, and batching noise in their last digits must not pick the winner.
    """

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:
        width = max(len(option) for option in input_token_logprobs)
        matrix = []
        for option in input_token_logprobs:
            row = _values(option)
            pad = _mean([e[0] for e in option if e[0] is not None])
            matrix.append(row + [pad] * (width - len(row)))
        remaining = list(range(len(choices)))
        for col in range(width):
            if _same_token(input_token_logprobs, remaining, col):
                continue
            top = max(matrix[i][col] for i in remaining)
            remaining = [i for i in remaining if matrix[i][col] == top]
            if len(remaining) == 1:
                break
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        meta["greedy_logprob_matrix"] = matrix
        return ChoicesDecision(choices[remaining[0]], meta)


def _same_token(options: list[list[Any]], rows: list[int], col: int) -> bool:
    ids = {options[i][col][1] if col < len(options[i]) else None for i in rows}
    return len(ids) == 1 and None not in ids


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """Argmax of mean(conditional - unconditional logprob): corrects for a priori likely choices."""

    requires_unconditional_logprobs = True

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs,
                 output_token_logprobs, unconditional_token_logprobs=None) -> ChoicesDecision:
        if unconditional_token_logprobs is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional_token_logprobs")
        normalized_uncond = [
            _mean([c - u for c, u in zip(_values(cond), _values(uncond))])
            for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs)
        ]
        best = _argmax(normalized_uncond)
        meta = _base_meta(normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs)
        meta["unconditional_token_logprobs"] = unconditional_token_logprobs
        meta["normalized_unconditional_prompt_logprobs"] = normalized_uncond
        return ChoicesDecision(choices[best], meta)


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()
