"""The Triton implementations, one name per op, with the signatures of `reference.py`.

Importing this module imports triton; `radixlm.kernels` only does so on demand (CUDA
tensors, or the "triton" backend), so the package loads without triton installed. Each
function also takes keyword-only tuning arguments (block sizes, KV splits) after the
reference parameters; see the module that defines it.
"""

from __future__ import annotations

from radixlm.kernels.triton_activation import silu_and_mul
from radixlm.kernels.triton_decode_attention import decode_attention
from radixlm.kernels.triton_extend_attention import extend_attention
from radixlm.kernels.triton_norm import rms_norm
from radixlm.kernels.triton_store_kv import store_kv

__all__ = ["decode_attention", "extend_attention", "rms_norm", "silu_and_mul", "store_kv"]
