"""Splitting a reasoning model's `<think>...</think>` block from its answer (separate_reasoning)."""

from __future__ import annotations

THINK_START, THINK_END = "<think>", "</think>"


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, content). Without `</think>` the whole text is content.

    Models such as DeepSeek-R1 put `<think>` in the prompt, so only the end marker is required.
    """
    if THINK_END not in text:
        return "", text
    reasoning, content = text.split(THINK_END, 1)
    reasoning = reasoning.split(THINK_START, 1)[-1]
    return reasoning.strip(), content.lstrip()
