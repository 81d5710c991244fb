"""Deterministic workloads shared by the benchmarks (no data sets are downloaded)."""

from __future__ import annotations

import random

TOPICS = [
    "astronomy", "cooking", "geology", "music theory", "sailing", "chess", "botany", "economics",
    "architecture", "medicine", "poetry", "robotics", "history", "linguistics", "oceanography",
    "photography",
]


def few_shot_prefix(tokenizer, target_tokens: int = 400) -> str:
    """A ~target_tokens few-shot preamble of question/answer pairs."""
    lines = ["You answer questions about many subjects. Here are solved examples.\n"]
    i = 0
    while len(tokenizer("".join(lines)).input_ids) < target_tokens:
        topic = TOPICS[i % len(TOPICS)]
        lines.append(f"Question {i + 1}: Name one key idea in {topic}.\n"
                     f"Answer {i + 1}: A key idea in {topic} is careful observation of patterns.\n")
        i += 1
    return "".join(lines)


def few_shot_requests(tokenizer, n: int = 64, prefix_tokens: int = 400, seed: int = 0) -> list[str]:
    """n prompts sharing one ~prefix_tokens prefix, each with a distinct ~20-token question."""
    rng = random.Random(seed)
    prefix = few_shot_prefix(tokenizer, prefix_tokens)
    prompts = []
    for i in range(n):
        a, b = rng.sample(TOPICS, 2)
        prompts.append(prefix + f"Question {100 + i}: How does {a} relate to {b}, in one short sentence?\nAnswer {100 + i}:")
    return prompts


def random_prompts(tokenizer, n: int, min_tokens: int = 16, max_tokens: int = 256, seed: int = 1) -> list[str]:
    """n unrelated prompts of random lengths (no shared prefix beyond chance)."""
    rng = random.Random(seed)
    words = [w for t in TOPICS for w in t.split()] + ["the", "a", "of", "and", "to", "in", "is", "data"]
    prompts = []
    for i in range(n):
        target = rng.randint(min_tokens, max_tokens)
        text = f"Document {i}:"
        while len(tokenizer(text).input_ids) < target:
            text += " " + " ".join(rng.choice(words) for _ in range(8))
        prompts.append(text + "\nSummary:")
    return prompts
