"""One-token forwards of the Llama model on the CPU, compiled by TorchInductor.

Why: a single stream decodes one token per forward, and on a CPU that step is bound by
reading every weight once (538 MB of float32 for SmolLM2-135M). ATen's GEMV streams them at
~10 GB/s on this 2-core machine where a plain reduction over the same bytes runs at
~20 GB/s, and each layer also pays ~15 small ops of dispatch (norms, RoPE, residual adds,
SiLU) that a batch amortises and one stream does not. Written as multiply-and-sum, the
matrix-vector products are reductions that Inductor turns into vectorised OpenMP loops over
the weights (15-24 GB/s measured), fusing the small ops around them.

One graph per decoder layer (`_layer`), taking the layer's weights as arguments so the same
compiled code serves all layers; attention is an opaque custom op
(`radixlm::pool_attention_one`: store K/V, attend over the pool through the request's
slots), so the key count is the graph's only dynamic size. Compiled once per process at
start-up (`warm_up`: ~20 s the first time on 2 cores, ~4 s with Inductor's on-disk cache).
Results equal the eager path's up to float32 summation order (tests/runtime/test_parity.py).
"""

from __future__ import annotations

import time

import torch

from radixlm.kernels import cpu_attention, cpu_native, reference


def _gemv(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x [1, in] times weight [out, in]^T as a reduction Inductor streams at full bandwidth."""
    return (weight * x).sum(-1).unsqueeze(0)


def _pre_attention(x, residual, norm_w, qkv_w, qkv_b, cos, signed_sin, eps: float, heads: int, kv_heads: int):
    """-> q [1, H, D], k [1, KV, D], v [1, KV, D], new residual [1, hidden]."""
    normed, h = reference.rms_norm(x, norm_w, eps, residual)
    qkv = _gemv(qkv_w, normed)
    if qkv_b is not None:
        qkv = qkv + qkv_b
    d = cos.shape[-1]
    qk = reference.rotary(qkv[:, : (heads + kv_heads) * d].view(1, heads + kv_heads, d), cos, signed_sin)
    q, k = qk.split([heads, kv_heads], dim=1)
    v = qkv[:, (heads + kv_heads) * d :].view(1, kv_heads, d)
    return q.contiguous(), k.contiguous(), v.contiguous(), h


def _post_attention(attn, residual, o_w, norm_w, gate_up_w, down_w, eps: float):
    """-> MLP output [1, hidden], new residual [1, hidden]."""
    normed, h = reference.rms_norm(_gemv(o_w, attn), norm_w, eps, residual)
    return _gemv(down_w, reference.silu_and_mul(_gemv(gate_up_w, normed))), h


ZERO = torch.zeros(1, dtype=torch.int64)  # the one request's row in its [1, S] slot table


def _pool_attention_one(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    loc: torch.Tensor, slots: torch.Tensor, seq: torch.Tensor, scale: float,
) -> torch.Tensor:
    """Store this token's K/V in the pool, then attend over the request's keys at `slots`
    ([1, S] int32, its own last; seq = [S], built once per forward). Opaque to the compiler: Inductor's own code for a gather
    over a dynamic key count ran 1.5-8x slower than the eager gather; the C decode row
    (kernels/cpu_native.py) reads the keys in place, 3-4x faster again than that gather."""
    k_cache.index_copy_(0, loc, k)
    v_cache.index_copy_(0, loc, v)
    own = cpu_native.decode_rows(q, k_cache, v_cache, slots, ZERO, seq, 0, scale)
    if own is not None:
        return own[0].reshape(1, -1)
    rows = cpu_attention.head_rows(slots.long(), k_cache.shape[1])  # the torch path: no compiler for C
    return cpu_attention.attend_rows(q, k_cache, v_cache, rows, scale).reshape(1, -1)


# Registered through the low-level library API, not `torch.library.custom_op`: that one wraps
# every call in Python (argument defaults, an aliasing check, version bumps of the mutated
# pool), ~45 us a call, 30 calls a token: 1.4 ms of a 23 ms step.
_OPS = torch.library.Library("radixlm", "FRAGMENT")
_OPS.define("pool_attention_one(Tensor q, Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!) v_cache, "
            "Tensor loc, Tensor slots, Tensor seq, float scale) -> Tensor")
_OPS.impl("pool_attention_one", _pool_attention_one, "CPU")


@torch.library.register_fake("radixlm::pool_attention_one", lib=_OPS)
def _(q, k, v, k_cache, v_cache, loc, slots, seq, scale):
    return q.new_empty((1, q.shape[1] * q.shape[2]))


def _logits(x, residual, norm_w, lm_w, eps: float):
    return _gemv(lm_w, reference.rms_norm(x, norm_w, eps, residual)[0])


def _layer(x, residual, weights, k_cache, v_cache, loc, slots, seq, cos, signed_sin, consts):
    """One decoder layer for one token: -> (MLP output, residual), both [1, hidden]."""
    in_norm, qkv_w, qkv_b, o_w, post_norm, gate_up_w, down_w = weights
    eps, heads, kv_heads, scale = consts
    q, k, v, residual = _pre_attention(x, residual, in_norm, qkv_w, qkv_b, cos, signed_sin, eps, heads, kv_heads)
    o = torch.ops.radixlm.pool_attention_one(q, k, v, k_cache, v_cache, loc, slots, seq, scale)
    return _post_attention(o, residual, o_w, post_norm, gate_up_w, down_w, eps)


class CompiledDecode:
    """The compiled one-token forward of one LlamaForCausalLM (float32, CPU)."""

    def __init__(self, model) -> None:
        self.model = model
        cfg = model.cfg
        self.consts = (cfg.rms_norm_eps, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim**-0.5)
        self.weights = [
            (layer.input_layernorm.weight, layer.self_attn.qkv_proj.weight, layer.self_attn.qkv_proj.bias,
             layer.self_attn.o_proj.weight, layer.post_attention_layernorm.weight,
             layer.mlp.gate_up_proj.weight, layer.mlp.down_proj.weight)
            for layer in model.layers
        ]
        self.layer = torch.compile(_layer, fullgraph=True)
        self.logits = torch.compile(_logits, fullgraph=True, dynamic=False)
        self.calls = 0  # forwards served (tests check the path is taken)

    @staticmethod
    def supported(model) -> bool:
        p = model.embed_tokens.weight
        return p.device.type == "cpu" and p.dtype == torch.float32

    @staticmethod
    def applies(input_ids: torch.Tensor, fb) -> bool:
        """One token whose logits are needed, with at least one key before it (a sequence
        of one would make the compiler specialise the key count)."""
        return input_ids.shape[0] == 1 and fb.logits_indices.shape[0] == 1 and fb.max_seq_len >= 2

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, fb) -> torch.Tensor:
        """Same contract as LlamaForCausalLM.forward, for a batch `applies` accepts."""
        slots = fb.req_to_token[fb.req_pool_indices[0], : fb.max_seq_len]
        return self.run(input_ids, positions, fb.out_cache_loc, slots, fb.k_buffers, fb.v_buffers)

    def run(self, input_ids, positions, loc, slots, k_buffers, v_buffers) -> torch.Tensor:
        """Logits [1, vocab] for one token at `positions` whose K/V go to slot `loc`,
        attending over the KV `slots` [S] (its own last)."""
        m = self.model
        slots = slots.to(torch.int32).contiguous()[None]  # [1, S]: the C row's slot table
        torch._dynamo.mark_dynamic(slots, 1)
        seq = torch.tensor([slots.shape[1]])  # the C row's key count, once for all layers
        x = m.embed_tokens(input_ids)
        cos, sin = m.layers[0].self_attn.rotary.lookup(positions, x.dtype)
        residual = torch.zeros_like(x)
        for i, w in enumerate(self.weights):
            x, residual = self.layer(x, residual, w, k_buffers[i], v_buffers[i], loc, slots, seq, cos, sin,
                                     self.consts)
        self.calls += 1
        return self.logits(x, residual, m.norm.weight, m.lm_head_weight, self.consts[0])

    def warm_up(self) -> float:
        """Compile now, on a throwaway two-slot KV pool; returns the seconds it took."""
        start = time.perf_counter()
        cfg, device = self.model.cfg, self.model.embed_tokens.weight.device
        pool = [torch.zeros(3, cfg.num_kv_heads, cfg.head_dim, device=device) for _ in range(2 * cfg.num_layers)]
        for buffer in pool:  # compiled for any pool size (the real one is sized later)
            torch._dynamo.mark_dynamic(buffer, 0)
        # Built outside inference mode, like the scheduler's tensors: the graph's guards
        # include that, and a mismatch would compile it a second time on the first request.
        ids, positions, loc = (torch.tensor([i], device=device) for i in (0, 1, 2))
        slots = torch.tensor([1, 2], dtype=torch.int32, device=device)  # as req_to_token holds them
        with torch.inference_mode():
            self.run(ids, positions, loc, slots, pool[: cfg.num_layers], pool[cfg.num_layers :])
        self.calls = 0
        return time.perf_counter() - start
