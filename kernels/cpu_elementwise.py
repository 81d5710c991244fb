"""The layers' elementwise ops in C for float32 CPU tensors: SwiGLU, rotary embedding, and
RMSNorm with its residual add, each one pass over its rows.

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

Each function returns None where it does not apply (another dtype or device, a layout it
does not take, no compiler, RADIXLM_NATIVE=0); cpu_ops.py then runs the torch ops.
"""

from __future__ import annotations

import ctypes

import torch

from radixlm.kernels.native_build import C_PRELUDE, CFLAGS, NativeLibrary

C_SOURCE = C_PRELUDE + r"""
/* Small tensors run on the calling thread: waking the OpenMP team costs more than the work. */
static int team(int64_t elements, int nthreads) { return elements < 32768 ? 1 : nthreads; }

/* out [M, I] = silu(x[:, :I]) * x[:, I:] for x [M, 2I]; silu(a) = a * sigmoid(a), and
   sigmoid from e = e^-|a| so the exp never overflows: 1/(1+e) for a >= 0, e/(1+e) below,
   e = 0 past the exp's range (as torch's a / (1 + e^-a) is -0 there). */
void silu_and_mul_f32(const float *x, int64_t M, int64_t I, float *out, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(team(M * I, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const float *gate = x + m * 2 * I, *up = gate + I;
        float *o = out + m * I;
        #pragma omp simd
        for (int64_t i = 0; i < I; i++) {
            const float a = gate[i], e = fabsf(a) > 87.0f ? 0.0f : exp_nonpositive(-fabsf(a));
            const float silu = a * ((a >= 0.0f ? 1.0f : e) / (1.0f + e));
            o[i] = silu * up[i];
        }
    }
}

/* out [M, n, D] = x * cos + [x2, x1] * signed_sin per head, for the n heads of D at the start
   of each row of x (row stride xs); cos and signed_sin [M, D] (reference.rotary's math). */
void rotary_f32(const float *x, int64_t xs, int64_t M, int64_t n, int64_t D, const float *cos_t,
                const float *signed_sin, float *out, int nthreads) {
    const int64_t half = D / 2;
    #pragma omp parallel for schedule(static) num_threads(team(M * n * D, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const float *c = cos_t + m * D, *s = signed_sin + m * D;
        for (int64_t h = 0; h < n; h++) {
            const float *xh = x + m * xs + h * D;
            float *o = out + (m * n + h) * D;
            #pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                o[i] = xh[i] * c[i] + xh[i + half] * s[i];
                o[i + half] = xh[i + half] * c[i + half] + xh[i] * s[i + half];
            }
        }
    }
}

/* h = x + residual (residual may be NULL: h = x, not written), normed = h / rms(h) * w. */
void add_rms_norm_f32(const float *x, const float *residual, int64_t M, int64_t N, const float *w,
                      float eps, float *h_out, float *normed, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(team(M * N, nthreads))
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * N, *h = xm;
        float *o = normed + m * N, squares = 0.0f;
        if (residual) {
            const float *r = residual + m * N;
            float *hm = h_out + m * N;
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < N; i++) {
                const float v = xm[i] + r[i];
                hm[i] = v;
                squares += v * v;
            }
            h = hm;
        } else {
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < N; i++) squares += xm[i] * xm[i];
        }
        const float inv_rms = 1.0f / sqrtf(squares / (float)N + eps);
        #pragma omp simd
        for (int64_t i = 0; i < N; i++) o[i] = h[i] * inv_rms * w[i];
    }
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.silu_and_mul_f32.argtypes = [p, i64, i64, p, ctypes.c_int]
    lib.rotary_f32.argtypes = [p, i64, i64, i64, i64, p, p, p, ctypes.c_int]
    lib.add_rms_norm_f32.argtypes = [p, p, i64, i64, p, ctypes.c_float, p, p, ctypes.c_int]
    for fn in (lib.silu_and_mul_f32, lib.rotary_f32, lib.add_rms_norm_f32):
        fn.restype = None


# No reassociation (silu(a) * up, never a * up first, which overflows) and no fused
# multiply-adds (RoPE bit-identical to torch's separate products and sum).
ELEMENTWISE_CFLAGS = tuple(f for f in CFLAGS if f != "-fassociative-math") + ("-ffp-contract=off",)
_LIBRARY = NativeLibrary("elementwise", C_SOURCE, _declare, ELEMENTWISE_CFLAGS)


def _serving(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The library, where every tensor is float32 on the CPU; None otherwise."""
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        return None
    return _LIBRARY.get()


def silu_and_mul(x: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up for x = [gate | up] [M, 2I] (contiguous) -> [M, I]."""
    lib = _serving(x)
    if lib is None or x.dim() != 2 or not x.is_contiguous():
        return None
    m, width = x.shape
    out = x.new_empty(m, width // 2)
    lib.silu_and_mul_f32(x.data_ptr(), m, width // 2, out.data_ptr(), torch.get_num_threads())
    return out


def rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor | None:
    """reference.rotary for x [T, n, D] whose heads lie contiguously in each row (a view into
    the qkv projection) and cos, signed_sin [T, 1, D] contiguous -> a new [T, n, D]."""
    lib = _serving(x, cos, signed_sin)
    if lib is None or x.dim() != 3 or x.stride(2) != 1 or x.stride(1) != x.shape[2]:
        return None
    t, n, d = x.shape
    if cos.shape != (t, 1, d) or signed_sin.shape != cos.shape or not (cos.is_contiguous() and signed_sin.is_contiguous()):
        return None
    out = x.new_empty(t, n, d)
    lib.rotary_f32(x.data_ptr(), x.stride(0), t, n, d, cos.data_ptr(), signed_sin.data_ptr(), out.data_ptr(),
                   torch.get_num_threads())
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
    """reference.rms_norm for contiguous x [M, N] (and residual): normed, or (normed, x + residual)."""
    tensors = (x, weight) if residual is None else (x, weight, residual)
    lib = _serving(*tensors)
    if lib is None or x.dim() != 2 or not all(t.is_contiguous() for t in tensors):
        return None
    if residual is not None and residual.shape != x.shape:
        return None
    m, n = x.shape
    normed = torch.empty_like(x)
    h = None if residual is None else torch.empty_like(x)
    lib.add_rms_norm_f32(x.data_ptr(), None if residual is None else residual.data_ptr(), m, n, weight.data_ptr(),
                         eps, None if h is None else h.data_ptr(), normed.data_ptr(), torch.get_num_threads())
    return normed if h is None else (normed, h)
