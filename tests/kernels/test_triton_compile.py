"""The GPU path compiles: each Triton kernel lowered to PTX and cubin for NVIDIA targets.

No GPU is needed (triton ships its own ptxas), so a CPU-only CI still catches what the
interpreter cannot see: tl.dot shape and dtype rules, constexpr typing, shared-memory
budgets, and whether the attention kernels really use tensor cores. This pytest process
runs with TRITON_INTERPRET=1, under which kernels cannot be compiled, so the compilation
happens in a subprocess running this file as a script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip(
    "triton", reason="triton is not importable (pip install triton)", exc_type=ImportError
)

# Shared memory one block may use: sm_80 (A100) 163 KiB, sm_90 (H100) 227 KiB.
SHARED_MEMORY_LIMIT = {80: 166912, 90: 232448}
ATTENTION_KERNELS = ("_extend_attention_kernel", "_decode_partial_kernel")


def compile_kernels(arch: int, dtype: str) -> list[dict]:
    """Run this file as a script without the interpreter; one JSON record per kernel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, __file__, str(arch), dtype],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 3:
        pytest.skip(
            f"this triton cannot compile for NVIDIA GPUs here: {proc.stderr.strip()[-300:]}"
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def check_compiled(records: list[dict], arch: int, dtype: str) -> None:
    assert {r["kernel"] for r in records} >= {
        *ATTENTION_KERNELS,
        "_decode_reduce_kernel",
        "_rms_norm_kernel",
        "_silu_and_mul_kernel",
        "_store_kv_kernel",
    }
    for r in records:
        assert r["shared"] <= SHARED_MEMORY_LIMIT[arch], r
        # fp32 pools ask tl.dot for exact "ieee" products, which tensor cores do not give.
        if r["kernel"] in ATTENTION_KERNELS and dtype != "fp32":
            assert r["tensor_cores"], f"{r['kernel']} does not use tensor cores on sm_{arch}: {r}"


def test_kernels_compile_for_h100_in_bf16():
    """The serving configuration: bfloat16 on sm_90, SmolLM2's heads and head_dim 128."""
    check_compiled(compile_kernels(90, "bf16"), 90, "bf16")


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, dtype",
    [(80, "bf16"), (90, "fp16"), (90, "fp32")],
    ids=["a100-bf16", "h100-fp16", "h100-fp32"],
)
def test_kernels_compile_for_other_dtypes_and_archs(arch, dtype):
    check_compiled(compile_kernels(arch, dtype), arch, dtype)


def _compile_all(arch: int, dtype: str) -> None:
    """Compile every kernel with the constexprs its launcher would pick; print JSON lines."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from radixlm.kernels import (
        triton_activation,
        triton_decode_attention,
        triton_extend_attention,
        triton_norm,
        triton_store_kv,
        triton_utils,
    )

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    index_ptrs = {
        "req_to_token_ptr": "*i32",
        "out_cache_loc_ptr": "*i64",
        "mid_o_ptr": "*fp32",
        "mid_lse_ptr": "*fp32",
    }

    def signature(kernel) -> dict[str, str]:
        sig = {}
        for p in kernel.params:
            if p.is_constexpr:
                sig[p.name] = "constexpr"
            elif p.name in index_ptrs:
                sig[p.name] = index_ptrs[p.name]
            elif p.name.endswith(("_lens_ptr", "_loc_ptr", "_indices_ptr")):
                sig[p.name] = "*i64"
            elif p.name.endswith("_ptr"):
                sig[p.name] = f"*{dtype}"
            elif p.name in ("qk_scale", "eps"):
                sig[p.name] = "fp32"
            else:
                sig[p.name] = "i32"
        return sig

    def compile_one(kernel, num_warps: int, **constexprs) -> None:
        src = ASTSource(kernel, signature(kernel), constexprs=constexprs)
        compiled = triton.compile(
            src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps}
        )
        ptx = compiled.asm["ptx"]
        record = {
            "kernel": kernel.fn.__name__,
            "constexprs": {k: str(v) for k, v in constexprs.items()},
            "shared": compiled.metadata.shared,
            "tensor_cores": bool(re.search(r"\bw?gmma\.|\bmma\.sync\.", ptx)),
        }
        print(json.dumps(record), flush=True)

    dot = {
        "DOT_DTYPE": triton_utils.dot_operand_dtype(torch_dtype, torch.device("cuda")),
        "DOT_PRECISION": triton_utils.dot_precision(torch_dtype),
    }
    for head_dim in (64, 128):
        block_m, block_n, num_warps = triton_extend_attention._default_blocks(head_dim)
        compile_one(
            triton_extend_attention._extend_attention_kernel,
            num_warps,
            KV_GROUP=3,
            HEAD_DIM=head_dim,
            BLOCK_D=head_dim,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            **dot,
        )
        compile_one(
            triton_decode_attention._decode_partial_kernel,
            4,
            KV_GROUP=3,
            HEAD_DIM=head_dim,
            NUM_SPLITS=8,
            BLOCK_H=16,
            BLOCK_D=head_dim,
            BLOCK_N=64,
            **dot,
        )
    compile_one(
        triton_decode_attention._decode_reduce_kernel,
        2,
        HEAD_DIM=64,
        NUM_SPLITS=8,
        BLOCK_S=8,
        BLOCK_D=64,
    )
    compile_one(triton_norm._rms_norm_kernel, 4, HAS_RESIDUAL=True, BLOCK=1024)
    compile_one(triton_activation._silu_and_mul_kernel, 4, BLOCK=1024)
    compile_one(
        triton_store_kv._store_kv_kernel, 4, NUM_KV_HEADS=3, HEAD_DIM=64, BLOCK_H=4, BLOCK_D=64
    )


if __name__ == "__main__":
    try:
        from triton.backends import backends

        if "nvidia" not in backends:
            raise RuntimeError(f"no nvidia backend in this triton (has {sorted(backends)})")
    except Exception as exc:  # any failure to find the backend means "cannot test here"
        print(exc, file=sys.stderr)
        sys.exit(3)
    _compile_all(int(sys.argv[1]), sys.argv[2])
