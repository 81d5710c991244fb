"""The plain-torch reference against a naive per-request loop: the oracle must be right.

The naive versions spell the math out per request and per head in float64 (gather the
request's K/V through req_to_token, scores, causal mask, softmax, weighted sum), with no
padding, masking tricks or head expansion that could hide a bug shared with the kernels.
"""

from __future__ import annotations

import pytest
import torch

from radixlm.kernels import reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DTYPE_IDS = ["fp32", "bf16", "fp16"]

# (prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim)
CASES = [
    pytest.param([0], [6], 2, 2, 64, id="one-request-no-prefix-mha"),
    pytest.param([0, 5, 19], [7, 1, 12], 9, 3, 64, id="ragged-gqa3"),
    pytest.param([33, 0, 2, 8], [1, 9, 4, 3], 8, 1, 128, id="ragged-mqa8-hd128"),
]


def naive_attention_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor, sm_scale: float
) -> torch.Tensor:
    """q: [n_q, heads, d]; k, v: [n_k, kv_heads, d]; query t sees keys 0..q_positions[t]."""
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    group = num_heads // num_kv_heads
    out = torch.empty(q.shape, dtype=torch.float64)
    key_pos = torch.arange(k.shape[0])
    for h in range(num_heads):
        kv_h = h // group  # query heads [g*group, (g+1)*group) share KV head g
        scores = (q[:, h].double() @ k[:, kv_h].double().T) * sm_scale  # [n_q, n_k]
        scores[key_pos[None, :] > q_positions[:, None]] = float("-inf")
        out[:, h] = torch.softmax(scores, dim=-1) @ v[:, kv_h].double()
    return out


def naive_extend(b) -> torch.Tensor:
    outs = []
    for i in range(len(b.req_pool_indices)):
        prefix, extend = int(b.prefix_lens[i]), int(b.extend_lens[i])
        slots = b.req_to_token[b.req_pool_indices[i], : prefix + extend].long()
        start = int(b.extend_start_loc[i])
        q = b.q_extend[start : start + extend]
        outs.append(
            naive_attention_rows(
                q, b.k_cache[slots], b.v_cache[slots], prefix + torch.arange(extend), b.sm_scale
            )
        )
    return torch.cat(outs)


def naive_decode(b) -> torch.Tensor:
    outs = []
    for i in range(len(b.req_pool_indices)):
        seq_len = int(b.seq_lens[i])
        slots = b.req_to_token[b.req_pool_indices[i], :seq_len].long()
        q = b.q_decode[i : i + 1]
        outs.append(
            naive_attention_rows(
                q, b.k_cache[slots], b.v_cache[slots], torch.tensor([seq_len - 1]), b.sm_scale
            )
        )
    return torch.cat(outs)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim", CASES)
def test_reference_extend_matches_naive_loop(
    attention_batch,
    assert_kernel_close,
    prefix_lens,
    extend_lens,
    num_heads,
    num_kv_heads,
    head_dim,
    dtype,
):
    b = attention_batch(
        prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim, dtype, "cpu", seed=1
    )
    out = torch.full_like(b.q_extend, float("nan"))
    reference.extend_attention(
        b.q_extend,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.prefix_lens,
        b.extend_lens,
        b.extend_start_loc,
        b.sm_scale,
        out=out,
    )
    assert_kernel_close(out, naive_extend(b), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim", CASES)
def test_reference_decode_matches_naive_loop(
    attention_batch,
    assert_kernel_close,
    prefix_lens,
    extend_lens,
    num_heads,
    num_kv_heads,
    head_dim,
    dtype,
):
    b = attention_batch(
        prefix_lens, extend_lens, num_heads, num_kv_heads, head_dim, dtype, "cpu", seed=2
    )
    out = torch.full_like(b.q_decode, float("nan"))
    reference.decode_attention(
        b.q_decode,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.seq_lens,
        b.sm_scale,
        out=out,
    )
    assert_kernel_close(out, naive_decode(b), dtype)


def test_reference_decode_equals_extend_of_the_last_token(attention_batch):
    """A decode step is an extend of one token: the two paths must agree exactly enough."""
    b = attention_batch([5, 0, 11], [3, 4, 1], 9, 3, 64, torch.float32, "cpu", seed=3)
    ext = reference.extend_attention(
        b.q_extend,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.prefix_lens,
        b.extend_lens,
        b.extend_start_loc,
        b.sm_scale,
    )
    last_token = b.extend_start_loc + b.extend_lens - 1
    dec = reference.decode_attention(
        b.q_extend[last_token],
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.seq_lens,
        b.sm_scale,
    )
    torch.testing.assert_close(dec, ext[last_token], atol=1e-6, rtol=1e-5)


def test_reference_store_kv_writes_only_the_given_slots():
    k_cache = torch.randn(10, 3, 8)
    v_cache = torch.randn(10, 3, 8)
    k_before, v_before = k_cache.clone(), v_cache.clone()
    loc = torch.tensor([7, 2, 9])
    k, v = torch.randn(3, 3, 8), torch.randn(3, 3, 8)
    reference.store_kv(k_cache, v_cache, loc, k, v)
    assert torch.equal(k_cache[loc], k) and torch.equal(v_cache[loc], v)
    untouched = torch.tensor([i not in (7, 2, 9) for i in range(10)])
    assert torch.equal(k_cache[untouched], k_before[untouched])
    assert torch.equal(v_cache[untouched], v_before[untouched])


def test_reference_rms_norm_matches_formula():
    x, residual, weight = torch.randn(4, 576), torch.randn(4, 576), torch.randn(576)
    normed, new_residual = reference.rms_norm(x, weight, 1e-6, residual)
    summed = x.double() + residual.double()
    expected = summed / torch.sqrt(summed.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.double()
    torch.testing.assert_close(new_residual, (x + residual))
    torch.testing.assert_close(normed.double(), expected, atol=1e-5, rtol=1e-5)


def test_reference_silu_and_mul_matches_formula():
    x = torch.randn(5, 2 * 48, dtype=torch.float64)
    gate, up = x[:, :48], x[:, 48:]
    expected = gate / (1 + torch.exp(-gate)) * up
    torch.testing.assert_close(reference.silu_and_mul(x), expected)
