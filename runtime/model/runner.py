"""ModelRunner: loads the model onto a device and runs one ForwardBatch (scheduler process).

Also sizes the KV pool: `kv_pool_capacity` turns --mem-fraction (or --max-total-tokens) into
a slot count, logged at start-up.

Under tensor parallelism (`tp`, runtime/distributed/) the runner holds this rank's shard,
loaded slice by slice; on rank 0 `forward` first broadcasts the batch to the other ranks,
which run the same forward (runtime/distributed/worker.py). The compiled one-token forward
is off there: its fused layer graphs have no place for the all-reduces.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from radixlm.runtime.distributed.batch_sync import send_batch
from radixlm.runtime.model.config import ModelConfig
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.model.host_memory import keep_freed_memory
from radixlm.runtime.model.loader import iter_safetensors
from radixlm.runtime.model.models.llama import LlamaForCausalLM
from radixlm.runtime.model.models.llama_compiled_decode import CompiledDecode
from radixlm.runtime.model.path_selection import (
    PathCache,
    PathChoice,
    PathRequest,
    cache_key,
    choose,
    selection_enabled,
)
from radixlm.runtime.model.path_timing import ModelPaths, time_paths

logger = logging.getLogger(__name__)

MODEL_CLASSES = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": LlamaForCausalLM,
}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # float32 on the CPU: its greedy tokens equal HF float32's token for token. bfloat16
        # (`--dtype bfloat16`) is faster on CPUs with bf16 dot products but only agrees within a
        # tolerance (tests/runtime/test_parity_bf16.py). CUDA runs bf16 (docs/architecture.md §4).
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16 (got {dtype!r})")
    return table[dtype]


def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 << 30


class ModelRunner:
    def __init__(
        self, folder: Path, config: ModelConfig, device: torch.device, dtype: torch.dtype,
        paths: PathRequest = PathRequest("eager", "plain"), tp=None,
    ) -> None:
        """`paths`: the CPU float32 forward paths (path_selection.py; `auto` halves are timed
        here). `tp`: this rank's TPGroup (runtime/distributed/group.py), None on one device."""
        self.config = config
        self.device = device
        self.dtype = dtype
        self.tp = tp
        self.tp_ranks: list[dict] = []  # every rank's start-up facts (pid, weight bytes), tp > 1
        if device.type == "cpu":
            keep_freed_memory()  # each step's activations reuse the last step's pages
        start = time.perf_counter()
        with torch.device("meta"):
            model = MODEL_CLASSES[config.architecture](config, tp)
        model = model.to_empty(device=device)
        model.load_weights(iter_safetensors(folder, model.shard if tp is not None else None))
        self.model = model.to(dtype).eval()
        self.model.layers[0].self_attn.rotary.place(device)  # one table shared by all layers
        self.kv_heads = model.shard.num_kv_heads  # per rank: what this rank's KV pool holds
        shard = "" if tp is None else f", tp rank {tp.rank} of {tp.size}: {self.param_bytes() / 2**20:.0f} MiB"
        logger.info("loaded %s (%s, %s%s) in %.1f s", folder, device, dtype, shard, time.perf_counter() - start)
        self.paths = self._set_up_paths(paths, folder)

    def param_bytes(self) -> int:
        """Bytes of this rank's parameters (the prepacked copies not included)."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def _set_up_paths(self, request: PathRequest, folder: Path) -> PathChoice | None:
        """Put the model on the requested CPU paths, timing the `auto` ones (or reading their
        last timing from the cache); returns the choice (None off the CPU float32 / bfloat16
        paths)."""
        if self.device.type != "cpu" or self.dtype not in (torch.float32, torch.bfloat16):
            return None  # neither path exists there: CUDA (and float16) run the plain forward
        if self.dtype == torch.bfloat16 and request.decode != "eager":
            # The compiled one-token forward is float32 only; the bf16 speed is in the weights.
            if request.decode == "compiled":
                logger.info("bfloat16: the compiled one-token forward is float32 only; running eagerly")
            request = PathRequest("eager", request.weights)
        timed = request.is_auto and self.tp is None and selection_enabled()
        key = cache_key(folder, str(self.dtype), torch.get_num_threads(), request) if timed else ""
        cached = PathCache.default().get(key) if timed else None
        choice = cached or request.fixed()
        wanted = request.candidates() if timed and cached is None else [choice]
        paths = ModelPaths(self.model)
        if any(c.weights in ("prepacked", "panels") for c in wanted):  # panels: oneDNN above 64 rows
            logger.info("prepacked linear weights for oneDNN: %.0f MiB", paths.prepack() / 2**20)
        if any(c.weights == "panels" for c in wanted):
            logger.info("linear weights in column panels: %.0f MiB", paths.build_panels() / 2**20)
        if any(c.decode == "compiled" for c in wanted):
            paths.compiled = self._compile_decode()
        if timed and cached is None:
            choice = self._measure(paths, wanted, key)
        elif timed:
            logger.info("CPU paths: %s (measured before on this CPU and model: %s)", choice, PathCache.default().path)
        return paths.keep(choice)

    def _measure(self, paths: ModelPaths, candidates: list[PathChoice], key: str) -> PathChoice:
        available = [c for c in candidates if paths.available(c)]
        if not available:  # e.g. compiled forced, the compiler missing: keep() falls back
            return candidates[0]
        start = time.perf_counter()
        timings = time_paths(paths, available)
        steps = {**timings.one_token, **{f"batch+{w}": t for w, t in timings.batch.items()}}
        measured = (f"timed in {time.perf_counter() - start:.1f} s, {100 * timings.cpu_share:.0f}% of the "
                    f"threads' time: {', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in steps.items())}")
        if timings.contended:  # the ranking is the contention's: keep the default, time again next start
            logger.warning("CPU paths: %s; other processes used the cores while timing (%s), so not "
                           "chosen by it nor cached", available[0], measured)
            return available[0]
        choice = choose(timings, available)
        PathCache.default().put(key, choice, timings)
        logger.info("CPU paths: %s, faster on this CPU (%s)", choice, measured)
        return choice

    def _compile_decode(self) -> CompiledDecode | None:
        """Compile the one-token forward (llama_compiled_decode.py); without a working C++
        toolchain Inductor fails, and the runner keeps the eager path rather than not start."""
        if self.tp is not None:
            logger.info("tp %d: the compiled one-token forward is off (its fused layer graphs have no "
                        "all-reduce); every forward runs eagerly", self.tp.size)
            return None
        if not CompiledDecode.supported(self.model):
            return None
        compiled = CompiledDecode(self.model)
        try:
            seconds = compiled.warm_up()
        except Exception as exc:  # noqa: BLE001 — any compiler failure means: run eagerly
            logger.warning("one-token forward not compiled, running eagerly: %s", str(exc).splitlines()[0])
            return None
        logger.info("compiled the one-token CPU forward in %.1f s", seconds)
        return compiled

    def forward(self, fb: ForwardBatch) -> torch.Tensor:
        if self.tp is not None:  # rank 0: every rank runs this forward (distributed/worker.py)
            send_batch(self.tp, fb)
        return self.model(fb.input_ids, fb.positions, fb)


def kv_pool_capacity(
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    mem_fraction: float,
    max_total_tokens: int | None,
    kv_heads: int | None = None,
) -> int:
    """Number of KV slots: --max-total-tokens if given, else mem_fraction of free memory.
    `kv_heads`: the KV heads one slot holds on this rank (default: all of the model's)."""
    from radixlm.runtime.mem_cache.memory_pool import KVPool

    heads = kv_heads or config.num_kv_heads
    per_token = KVPool.bytes_per_token(config.num_layers, heads, config.head_dim, dtype)
    if max_total_tokens is not None:
        return max_total_tokens
    return max(int(available_memory_bytes(device) * mem_fraction) // per_token, 256)
