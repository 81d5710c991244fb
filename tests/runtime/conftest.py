"""Fixtures for runtime tests: varied prompts (chat-templated and raw, short and long)."""

from __future__ import annotations

PARAGRAPH = (
    "The radix tree keeps every computed key and value entry so that later requests which "
    "share a prefix with earlier ones can skip the work. Shared system prompts, few-shot "
    "examples and multi-turn histories are common in real programs, and each of them turns "
    "into cached tokens instead of new computation. "
)

RAW_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 4, 5,",
    "Once upon a time, in a small village by the sea,",
    "Q: What is 12 plus 7?\nA:",
    "The three primary colors are",
    PARAGRAPH * 6 + "\nIn one sentence, the radix tree",  # several hundred tokens
    "Translate to French: Good morning, my friend. ->",
    "List of fruits:\n- apple\n- banana\n-",
    PARAGRAPH * 3 + "Summary:",
]

CHAT_QUESTIONS = [
    "What is the capital of Japan?",
    "Write a haiku about the sea.",
    "Explain what a prefix cache is in two sentences. " + PARAGRAPH * 4,
    "Give me three tips for learning Python.",
    "What is 15 times 3?",
    "Name a famous physicist.",
]


def chat_prompt(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def all_prompts(tokenizer) -> list[str]:
    return RAW_PROMPTS + [chat_prompt(tokenizer, q) for q in CHAT_QUESTIONS]


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prompts(tokenizer) -> list[str]:
    return all_prompts(tokenizer)
