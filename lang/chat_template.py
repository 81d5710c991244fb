"""Chat templates: role markup, default system prompt and stop strings (docs/wire-protocol.md A.10).

A backend picks its template by matching the model path against the registered matchers in
registration order (first non-None wins, else `default`), exactly as SGLang's frontend does.
Backends that hold the model's own HF tokenizer can fall back to `template_from_hf` to find a
registered template with the same markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto


class ChatTemplateStyle(Enum):
    PLAIN = auto()
    LLAMA2 = auto()  # the first system message is merged into the first user turn


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    default_system_prompt: str | None
    role_prefix_and_suffix: dict[str, tuple[str, str]]
    stop_str: tuple[str, ...] = ()
    image_token: str = "<image>"
    audio_token: str = "<audio>"
    style: ChatTemplateStyle = ChatTemplateStyle.PLAIN

    def get_prefix_and_suffix(self, role: str, hist_messages: list[dict]) -> tuple[str, str]:
        """The markup around a `role` turn, given the messages recorded so far."""
        prefix, suffix = self.role_prefix_and_suffix.get(role, ("", ""))
        if self.style == ChatTemplateStyle.LLAMA2:
            if role == "system" and not hist_messages:
                user_prefix, _ = self.role_prefix_and_suffix.get("user", ("", ""))
                return user_prefix + prefix, suffix
            if role == "user" and len(hist_messages) == 1 and hist_messages[0]["content"] is not None:
                return "", suffix
        return prefix, suffix


chat_template_registry: dict[str, ChatTemplate] = {}
matching_function_registry: list[Callable[[str], str | None]] = []


def register_chat_template(template: ChatTemplate) -> None:
    chat_template_registry[template.name] = template


def register_chat_template_matching_function(func: Callable[[str], str | None]):
    matching_function_registry.append(func)
    return func


def get_chat_template(name: str) -> ChatTemplate:
    """The registered template called `name`; KeyError lists the known names."""
    try:
        return chat_template_registry[name]
    except KeyError:
        known = ", ".join(sorted(chat_template_registry))
        raise KeyError(f"unknown chat template {name!r}; registered: {known}") from None


def get_chat_template_by_model_path(model_path: str) -> ChatTemplate:
    for matcher in matching_function_registry:
        name = matcher(model_path)
        if name is not None:
            return get_chat_template(name)
    return get_chat_template("default")


# Markers that identify an HF (Jinja) chat template's markup, most specific first.
_HF_MARKERS = (
    ("<|start_header_id|>", "llama-3-instruct"),
    ("<|im_start|>", "chatml"),
    ("<start_of_turn>", "gemma-it"),
    ("<<SYS>>", "llama-2-chat"),
    ("[INST]", "mistral"),
)


def template_from_hf(model_path: str, hf_chat_template: str | None) -> ChatTemplate:
    """Match by model path first; if that gives `default`, recognise the HF template's markup.

    The model's own Jinja template is not run: programs build text turn by turn, so a
    registered template with the same markup reproduces it. ChatML models get `chatml`
    (no injected system prompt, stop string `<|im_end|>`).
    """
    template = get_chat_template_by_model_path(model_path)
    if template.name != "default" or not hf_chat_template:
        return template
    for marker, name in _HF_MARKERS:
        if marker in hf_chat_template:
            return get_chat_template(name)
    return template


def _chatml(role: str) -> tuple[str, str]:
    return f"<|im_start|>{role}\n", "<|im_end|>\n"


register_chat_template(ChatTemplate(
    name="default",
    default_system_prompt=None,
    role_prefix_and_suffix={"system": ("SYSTEM:", "\n"), "user": ("USER:", "\n"),
                            "assistant": ("ASSISTANT:", "\n")},
))
register_chat_template(ChatTemplate(
    name="claude",
    default_system_prompt=None,
    role_prefix_and_suffix={"system": ("", ""), "user": ("\n\nHuman: ", ""),
                            "assistant": ("\n\nAssistant:", "")},
))
register_chat_template(ChatTemplate(
    name="chatml",
    default_system_prompt=None,
    role_prefix_and_suffix={r: _chatml(r) for r in ("system", "user", "assistant")},
    stop_str=("<|im_end|>",),
))
register_chat_template(ChatTemplate(
    name="qwen",
    default_system_prompt="You are a helpful assistant.",
    role_prefix_and_suffix={r: _chatml(r) for r in ("system", "user", "assistant")},
    stop_str=("<|im_end|>",),
))
register_chat_template(ChatTemplate(
    name="vicuna_v1.1",
    default_system_prompt=(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
    role_prefix_and_suffix={"system": ("", " "), "user": ("USER:", " "),
                            "assistant": ("ASSISTANT:", "</s>")},
))
register_chat_template(ChatTemplate(
    name="llama-2-chat",
    default_system_prompt=None,
    role_prefix_and_suffix={"system": ("<<SYS>>\n", "\n<</SYS>>\n\n"), "user": ("[INST] ", " [/INST]"),
                            "assistant": ("", " </s><s>")},
    style=ChatTemplateStyle.LLAMA2,
))
register_chat_template(ChatTemplate(
    name="mistral",
    default_system_prompt=None,
    role_prefix_and_suffix={"system": ("[SYSTEM_PROMPT] ", " [/SYSTEM_PROMPT]"),
                            "user": ("[INST] ", " [/INST]"), "assistant": ("", " </s><s>")},
    stop_str=("</s>",),
    image_token="[IMG]",
))
register_chat_template(ChatTemplate(
    name="llama-3-instruct",
    default_system_prompt=None,
    role_prefix_and_suffix={
        r: (f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>")
        for r in ("system", "user", "assistant")
    },
    stop_str=("<|eot_id|>",),
    image_token="<|image|>",
))
register_chat_template(ChatTemplate(
    name="gemma-it",
    default_system_prompt=None,
    role_prefix_and_suffix={"system": ("", ""), "user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
                            "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")},
))
# OpenAI-style chat APIs: the server applies the markup, the client only records messages.
register_chat_template(ChatTemplate(
    name="chatgpt",
    default_system_prompt=None,
    role_prefix_and_suffix={r: ("", "") for r in ("system", "user", "assistant")},
))


def _search(pattern: str, model_path: str) -> bool:
    return re.search(pattern, model_path, re.IGNORECASE) is not None


@register_chat_template_matching_function
def match_vicuna(model_path: str) -> str | None:
    return "vicuna_v1.1" if _search(r"vicuna|llava-v1\.5|llava-next-video-7b", model_path) else None


@register_chat_template_matching_function
def match_llama2_chat(model_path: str) -> str | None:
    return "llama-2-chat" if _search(r"llama-2.*chat|codellama.*instruct", model_path) else None


@register_chat_template_matching_function
def match_mistral(model_path: str) -> str | None:
    return "mistral" if _search(r"(mistral|mixtral).*instruct", model_path) else None


@register_chat_template_matching_function
def match_llama3_instruct(model_path: str) -> str | None:
    return "llama-3-instruct" if _search(r"llama-3.*instruct", model_path) else None


@register_chat_template_matching_function
def match_chat_ml(model_path: str) -> str | None:
    if _search(r"tinyllama", model_path):
        return "chatml"
    if _search(r"qwen.*(chat|instruct)", model_path) and not _search(r"llava", model_path):
        return "qwen"
    return None


@register_chat_template_matching_function
def match_gemma_it(model_path: str) -> str | None:
    return "gemma-it" if _search(r"(gemma.*it)|(gemma-3)", model_path) else None
