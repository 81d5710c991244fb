"""The layers' elementwise ops in C for float32 and bfloat16 CPU tensors: SwiGLU, rotary
embedding, and RMSNorm with its residual add, each one pass over its rows.

Why: in ATen each is several ops with a temporary tensor between them: RoPE is a flip (a
copy), two multiplies and an add over q and k; SwiGLU a SiLU over a strided half and a
multiply; the residual add and the norm two passes. On a 2048-token prefill chunk of the
bundled model that is ~2.7 ms per layer against ~0.9 ms here (2 threads: RoPE 1.12 ms ->
0.09, SwiGLU 1.28 -> 0.95, add + RMSNorm 0.32 -> 0.12; docs/benchmarks.md, "Elementwise ops
in C"), and at 32 decode rows ~60 us against ~25.

Results: RoPE and the residual add are bit-identical to the torch ops (the same products and
sums in the same order: no fused multiply-adds); SiLU uses
the prelude's exp (relative error ~1e-7) and RMSNorm sums its squares in another order
(vectorised), so those two agree to float32 rounding (tests/kernels/test_cpu_elementwise.py).
In bfloat16 each op computes in float32 and rounds to bfloat16 where torch's separate ops
round (after each product and sum, to nearest even), so RoPE and the residual sum are
bit-identical there too, and SiLU and RMSNorm agree to bfloat16 rounding. Without these the
bf16 path ran the reference's ~10 ops per layer and their dtype conversions (on the AMX Xeon
~10 ms of a 45 ms 32-row decode step).

Each function returns None where it does not apply (another dtype or device, a layout it
does not take, no compiler, RADIXLM_NATIVE=0); cpu_ops.py then runs the torch ops.
"""

from __future__ import annotations

import ctypes

import torch

from radixlm.kernels.native_build import C_PRELUDE, CFLAGS, NativeLibrary

# The kernels, written once over $T (the element type) with $LD / $ST (load to and store from
# float32) and $RND (round a float32 result to $T and back: what torch does after each op in
# bfloat16; nothing in float32), instantiated per dtype below.
KERNELS = r"""
/* out [M, I] = silu(x[:, :I]) * x[:, I:] for x [M, 2I]; silu(a) = a * sigmoid(a), and
   sigmoid from e = e^-|a| so the exp never overflows: 1/(1+e) for a >= 0, e/(1+e) below,
   e = 0 past the exp's range (as torch's a / (1 + e^-a) is -0 there). */
void silu_and_mul_$S(const $T *x, int64_t M, int64_t I, $T *out, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(team(M * I, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const $T *gate = x + m * 2 * I, *up = gate + I;
        $T *o = out + m * I;
        #pragma omp simd
        for (int64_t i = 0; i < I; i++) {
            const float a = $LD(gate[i]), e = fabsf(a) > 87.0f ? 0.0f : exp_nonpositive(-fabsf(a));
            const float silu = a * ((a >= 0.0f ? 1.0f : e) / (1.0f + e));
            o[i] = $ST($RND(silu) * $LD(up[i]));
        }
    }
}

/* out [M, n, D] = x * cos + [x2, x1] * signed_sin per head, for the n heads of D at the start
   of each row of x (row stride xs); cos and signed_sin [M, D] (reference.rotary's math). */
void rotary_$S(const $T *x, int64_t xs, int64_t M, int64_t n, int64_t D, const $T *cos_t,
               const $T *signed_sin, $T *out, int nthreads) {
    const int64_t half = D / 2;
    #pragma omp parallel for schedule(static) num_threads(team(M * n * D, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const $T *c = cos_t + m * D, *s = signed_sin + m * D;
        for (int64_t h = 0; h < n; h++) {
            const $T *xh = x + m * xs + h * D;
            $T *o = out + (m * n + h) * D;
            #pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                const float x1 = $LD(xh[i]), x2 = $LD(xh[i + half]);
                o[i] = $ST($RND(x1 * $LD(c[i])) + $RND(x2 * $LD(s[i])));
                o[i + half] = $ST($RND(x2 * $LD(c[i + half])) + $RND(x1 * $LD(s[i + half])));
            }
        }
    }
}

/* h = x + residual (residual may be NULL: h = x, not written), normed = h / rms(h) * w. */
void add_rms_norm_$S(const $T *x, const $T *residual, int64_t M, int64_t N, const $T *w,
                     float eps, $T *h_out, $T *normed, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(team(M * N, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const $T *xm = x + m * N, *h = xm;
        $T *o = normed + m * N;
        float squares = 0.0f;
        if (residual) {
            const $T *r = residual + m * N;
            $T *hm = h_out + m * N;
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < N; i++) {
                const float v = $RND($LD(xm[i]) + $LD(r[i]));
                hm[i] = $ST(v);
                squares += v * v;
            }
            h = hm;
        } else {
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < N; i++) squares += $LD(xm[i]) * $LD(xm[i]);
        }
        const float inv_rms = 1.0f / sqrtf(squares / (float)N + eps);
        #pragma omp simd
        for (int64_t i = 0; i < N; i++) o[i] = $ST($LD(h[i]) * inv_rms * $LD(w[i]));
    }
}
"""

C_SOURCE = C_PRELUDE + r"""
/* Small tensors run on the calling thread: waking the OpenMP team costs more than the work. */
static int team(int64_t elements, int nthreads) { return elements < 32768 ? 1 : nthreads; }

#define SAME(v) (v)
#define ROUND_BF16(v) bf16_to_f32(f32_to_bf16(v))
""" + "".join(
    KERNELS.replace("$ST", st).replace("$LD", ld).replace("$RND", rnd).replace("$S", s).replace("$T", t)
    for t, s, ld, st, rnd in [("float", "f32", "SAME", "SAME", "SAME"),
                              ("uint16_t", "bf16", "bf16_to_f32", "f32_to_bf16", "ROUND_BF16")])

SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for s in SUFFIX.values():
        getattr(lib, f"silu_and_mul_{s}").argtypes = [p, i64, i64, p, ctypes.c_int]
        getattr(lib, f"rotary_{s}").argtypes = [p, i64, i64, i64, i64, p, p, p, ctypes.c_int]
        getattr(lib, f"add_rms_norm_{s}").argtypes = [p, p, i64, i64, p, ctypes.c_float, p, p, ctypes.c_int]
        for name in ("silu_and_mul", "rotary", "add_rms_norm"):
            getattr(lib, f"{name}_{s}").restype = None


# No reassociation (silu(a) * up, never a * up first, which overflows) and no fused
# multiply-adds (RoPE bit-identical to torch's separate products and sum).
ELEMENTWISE_CFLAGS = tuple(f for f in CFLAGS if f != "-fassociative-math") + ("-ffp-contract=off",)
_LIBRARY = NativeLibrary("elementwise", C_SOURCE, _declare, ELEMENTWISE_CFLAGS)


def _kernel(name: str, *tensors: torch.Tensor):
    """The C function `name` for these tensors' dtype, where all are CPU tensors of one dtype
    it has (float32, bfloat16); None otherwise."""
    dtype = tensors[0].dtype
    if dtype not in SUFFIX or any(t.dtype != dtype or t.device.type != "cpu" for t in tensors):
        return None
    lib = _LIBRARY.get()
    return None if lib is None else getattr(lib, f"{name}_{SUFFIX[dtype]}")


def silu_and_mul(x: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up for x = [gate | up] [M, 2I] (contiguous) -> [M, I]."""
    kernel = _kernel("silu_and_mul", x)
    if kernel is None or x.dim() != 2 or not x.is_contiguous():
        return None
    m, width = x.shape
    out = x.new_empty(m, width // 2)
    kernel(x.data_ptr(), m, width // 2, out.data_ptr(), torch.get_num_threads())
    return out


def rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor | None:
    """reference.rotary for x [T, n, D] whose heads lie contiguously in each row (a view into
    the qkv projection) and cos, signed_sin [T, 1, D] contiguous -> a new [T, n, D]."""
    kernel = _kernel("rotary", x, cos, signed_sin)
    if kernel is None or x.dim() != 3 or x.stride(2) != 1 or x.stride(1) != x.shape[2]:
        return None
    t, n, d = x.shape
    if cos.shape != (t, 1, d) or signed_sin.shape != cos.shape or not (cos.is_contiguous() and signed_sin.is_contiguous()):
        return None
    out = x.new_empty(t, n, d)
    kernel(x.data_ptr(), x.stride(0), t, n, d, cos.data_ptr(), signed_sin.data_ptr(), out.data_ptr(),
                   torch.get_num_threads())
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
    """reference.rms_norm for contiguous x [M, N] (and residual): normed, or (normed, x + residual)."""
    tensors = (x, weight) if residual is None else (x, weight, residual)
    kernel = _kernel("add_rms_norm", *tensors)
    if kernel is None or x.dim() != 2 or not all(t.is_contiguous() for t in tensors):
        return None
    if residual is not None and residual.shape != x.shape:
        return None
    m, n = x.shape
    normed = torch.empty_like(x)
    h = None if residual is None else torch.empty_like(x)
    kernel(x.data_ptr(), None if residual is None else residual.data_ptr(), m, n, weight.data_ptr(),
                         eps, None if h is None else h.data_ptr(), normed.data_ptr(), torch.get_num_threads())
    return normed if h is None else (normed, h)
