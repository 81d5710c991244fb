"""Tokenizer loading and the model's own chat template (main process and Engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_tokenizer(folder: Path):
    """The Hugging Face fast tokenizer saved in a model folder (never fetched from a hub)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def apply_chat_template(tokenizer, messages: list[dict], add_generation_prompt: bool = True,
                        chat_template: str | None = None, **template_args: Any) -> str:
    """Render OpenAI-style messages with the model's template (or an override);
    `template_args` are the template's variables (e.g. `tools`)."""
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model has no chat template; start the server with --chat-template")
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=chat_template,
        **template_args,
    )
