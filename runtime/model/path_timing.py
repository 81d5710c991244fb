"""Time the candidate CPU forward paths on a loaded model (for path_selection.choose).

`ModelPaths` switches one LlamaForCausalLM between the paths in place, without reloading:
the prepacked weight copies and the compiled one-token forward are built once and then
attached or detached (`use`). `time_paths` runs every candidate side by side — one forward
of each per round, ROUNDS rounds, medians — because on a shared machine the speed drifts
over seconds, and timing one path after the other would measure the drift. Each forward
runs on a throwaway KV pool with CONTEXT keys per request, like a short conversation.
Cost on the 2-core EPYC with the bundled 135M model: ~1.5 s on a quiet machine (the compile
itself not counted: the default path pays it anyway); capped near BUDGET_S where steps are
slow. The CPU share the process got while timing tells a contended timing (not cached).
"""

from __future__ import annotations

import statistics
import time

import torch

from radixlm import kernels
from radixlm.kernels.cpu_gemm import PanelWeight
from radixlm.runtime.model.forward_batch import ForwardBatch
from radixlm.runtime.model.layers.linear import Linear
from radixlm.runtime.model.path_selection import PathChoice, Timings, one_token_key

BATCH_ROWS = 16  # a batch the prepacked layout is for (its gain was measured at 2-128 rows)
CONTEXT = 64  # keys before each timed token
ROUNDS = 5  # after one warm-up round
# Wall seconds after which no new round starts (one measured round always runs): start-up
# must stay quick even where a step is slow (a larger model, or cores shared with others).
BUDGET_S = 3.0


class ModelPaths:
    """The candidate paths of one model: `prepack()` and `compiled` make them available,
    `use(choice)` puts the model on one, `keep(choice)` also frees what the others built."""

    def __init__(self, model) -> None:
        self.model = model
        self.linears = [m for m in model.modules() if isinstance(m, Linear)]
        self.packs: dict[Linear, torch.Tensor] | None = None
        self.lm_head_pack: torch.Tensor | None = None
        self.panels: dict[Linear, PanelWeight] | None = None
        self.lm_head_panels: PanelWeight | None = None
        self.compiled = None  # a warmed-up CompiledDecode, if the caller built one

    def prepack(self) -> int:
        """Build the prepacked copies (kept even while `use` picks plain); returns their bytes."""
        nbytes = self.model.prepack_weights()
        self.packs = {m: m.packed for m in self.linears if m.packed is not None}
        self.lm_head_pack = self.model.lm_head_packed
        return nbytes

    def build_panels(self) -> int:
        """Build the column-panel copies (kernels.panel_weight; above its row limit they use
        the prepacked copies, so call `prepack` first where both are wanted); their bytes."""
        packs = self.packs or {}
        built = {m: kernels.panel_weight(m.weight, packs.get(m)) for m in self.linears}
        self.panels = {m: pw for m, pw in built.items() if pw is not None}
        self.lm_head_panels = kernels.panel_weight(self.model.lm_head_weight, self.lm_head_pack)
        every = [*self.panels.values(), *([self.lm_head_panels] if self.lm_head_panels else [])]
        return sum(pw.nbytes for pw in every)

    def _layout(self, weights: str) -> tuple[dict | None, object]:
        return {"prepacked": (self.packs, self.lm_head_pack),
                "panels": (self.panels, self.lm_head_panels)}.get(weights, (None, None))

    def available(self, choice: PathChoice) -> bool:
        if choice.weights != "plain" and not self._layout(choice.weights)[0]:
            return False  # no oneDNN (or it disagreed with F.linear) / no compiler: MKL
        return choice.decode == "eager" or self.compiled is not None

    def use(self, choice: PathChoice) -> None:
        copies, lm_head = self._layout(choice.weights)
        for m in self.linears:
            m.packed = copies.get(m) if copies else None
        self.model.lm_head_packed = lm_head if copies else None
        self.model.compiled_decode = self.compiled if choice.decode == "compiled" else None

    def keep(self, choice: PathChoice) -> PathChoice:
        """Put the model on `choice` as far as it is available (a compiler failure leaves
        eager, no oneDNN or no panels leave plain), drop the copies it does not use (each
        layout is another copy of the weights in memory); returns the choice in effect."""
        weights = choice.weights if self._layout(choice.weights)[0] else "plain"
        actual = PathChoice("compiled" if choice.decode == "compiled" and self.compiled is not None else "eager",
                            weights)
        self.use(actual)
        if actual.weights != "prepacked":  # the panels hold on to the oneDNN copies they use
            self.packs, self.lm_head_pack = None, None
        if actual.weights != "panels":
            self.panels, self.lm_head_panels = None, None
        if actual.decode != "compiled":
            self.compiled = None
        return actual


def _throwaway_batch(model, rows: int) -> ForwardBatch:
    """A decode step of `rows` requests with CONTEXT keys each, on its own small KV pool."""
    cfg, p = model.cfg, model.embed_tokens.weight
    slots = rows * (CONTEXT + 1) + 1  # slot 0 unused, as in the real pool
    pool = [torch.zeros(slots, model.shard.num_kv_heads, cfg.head_dim, dtype=p.dtype, device=p.device)
            for _ in range(2 * cfg.num_layers)]
    req_to_token = (1 + torch.arange(slots - 1, dtype=torch.int32)).view(rows, CONTEXT + 1)
    return ForwardBatch.build(
        input_ids=[1] * rows, req_pool_indices=list(range(rows)), prefix_lens=[CONTEXT] * rows,
        extend_lens=[1] * rows, out_cache_loc=req_to_token[:, CONTEXT].long(),
        logits_indices=list(range(rows)), req_to_token=req_to_token,
        k_buffers=pool[: cfg.num_layers], v_buffers=pool[cfg.num_layers :], device=p.device,
    )


def _seconds(model, fb: ForwardBatch) -> float:
    fb.kernel_memo.clear()  # as for a fresh batch: the scheduler builds one per step
    start = time.perf_counter()
    model(fb.input_ids, fb.positions, fb)
    return time.perf_counter() - start


def time_paths(paths: ModelPaths, candidates: list[PathChoice], rounds: int | None = None) -> Timings:
    """Median forward seconds of every candidate that `paths` has available, the candidates
    interleaved round by round (ROUNDS by default, fewer past BUDGET_S); leaves the model on
    the first candidate. Also measures the CPU time the process got over the wall time of
    its threads (Timings.cpu_share): other processes competing for the cores show as a low
    share."""
    runnable = [c for c in candidates if paths.available(c)]
    one = {one_token_key(c): c for c in runnable}  # compiled + any layout: one step (plain weights)
    batch = {c.weights: PathChoice("eager", c.weights) for c in runnable}
    single, many = _throwaway_batch(paths.model, 1), _throwaway_batch(paths.model, BATCH_ROWS)
    wall, cpu = time.perf_counter(), time.process_time()
    samples = _interleaved(paths, [("one", one, single), ("batch", batch, many)],
                           ROUNDS if rounds is None else rounds)
    share = (time.process_time() - cpu) / ((time.perf_counter() - wall) * torch.get_num_threads())
    if runnable:
        paths.use(runnable[0])
    med = {k: statistics.median(v) for k, v in samples.items()}
    return Timings(one_token={n: med["one", n] for n in one}, batch={n: med["batch", n] for n in batch},
                   cpu_share=share)


def _interleaved(paths: ModelPaths, tables, rounds: int) -> dict[tuple[str, str], list[float]]:
    """Seconds of each (kind, name) -> choice of `tables`, one forward each per round; round
    0 is a warm-up (caches, lazily built kernels) and not kept."""
    samples: dict[tuple[str, str], list[float]] = {}
    start = time.perf_counter()
    for r in range(rounds + 1):
        if r >= 2 and time.perf_counter() - start > BUDGET_S:
            break
        for kind, table, fb in tables:
            for name, choice in table.items():
                paths.use(choice)
                seconds = _seconds(paths.model, fb)
                if r:
                    samples.setdefault((kind, name), []).append(seconds)
    return samples
