"""How the server names its model: the served name and the `model_path` it reports.

SGLang's frontend picks its chat template (and extra stop strings) by matching regexes
against `/get_model_info`'s `model_path` (docs/wire-protocol.md A.10). A bare "SmolLM2-135M-Instruct"
matches nothing and would get the `default` template (`USER:` / `ASSISTANT:`), a format the
model was never trained on. So `model_path` is the served name, except when that name
matches no frontend template and the model's own chat template is ChatML: then we append
"(chatml, as tinyllama)", which selects the frontend's `chatml` template (`<|im_start|>role`
... `<|im_end|>`, stop string `<|im_end|>`, no injected system prompt) -- the markup SmolLM2
was trained on. Pass --served-model-name to report an exact string instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from radixlm.runtime.model.loader import BUNDLED_GGUF_NAME
from radixlm.runtime.server_args import ServerArgs

# The frontend's matchers for small-model templates (docs/wire-protocol.md A.10).
FRONTEND_TEMPLATE_PATTERNS = (
    r"tinyllama", r"qwen.*(chat|instruct)", r"llama-3.*instruct", r"llama-2.*chat",
    r"(gemma.*it)|(gemma-3)", r"(mistral|mixtral).*instruct",
)
CHATML_HINT = " (chatml, as tinyllama)"


def served_model_name(args: ServerArgs) -> str:
    """--served-model-name, else the model's file or folder name without quantization tags."""
    if args.served_model_name:
        return args.served_model_name
    path = Path(args.model_path) if args.model_path else Path(BUNDLED_GGUF_NAME)
    name = path.name
    if name.endswith(".gguf"):
        name = name[: -len(".gguf")].split(".")[0]  # SmolLM2-135M-Instruct.Q4_1.gguf -> SmolLM2-135M-Instruct
    return name


def frontend_model_path(args: ServerArgs, tokenizer) -> str:
    """The `model_path` string that makes SGLang's frontend pick a matching template."""
    name = served_model_name(args)
    if args.served_model_name or _matches_frontend_template(name):
        return name
    template = getattr(tokenizer, "chat_template", None) or ""
    return name + CHATML_HINT if "<|im_start|>" in template else name


def _matches_frontend_template(name: str) -> bool:
    return any(re.search(p, name, re.IGNORECASE) for p in FRONTEND_TEMPLATE_PATTERNS)
