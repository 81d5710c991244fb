"""Linear layers of 1-64 rows in C over weights laid out in column panels (CPU, float32 and
bfloat16).

Why: a decode step multiplies 1-64 rows by every weight of the model, and the weights come
from memory, not cache (the bundled model's 540 MB pass through once per step). oneDNN's
prepacked matmul at these row counts left the reads and the arithmetic mostly serial: on the
AMX Xeon a 32-row step's linears took 45-48 ms with cold weights against 34 ms hot. Here a
weight [N, K] is stored as panels of 32 output columns, [N/32][K][32], so each thread streams
its panels front to back; per chunk of KC k-steps every block of up to 12 rows multiplies the
chunk while it sits in L1, accumulating in 24 vector registers (two 16-float vectors per
row), and the prefetches, PF k-rows ahead, are spread over all blocks' k-steps so memory
streams during the whole multiply. Chunk sums are added into the total, so rounding grows
like a blocked sum's (errors as MKL's, not a sequential sum's ~5x larger ones). Measured on
the Xeon, all 30 layers + lm_head, cold, 2 threads (`benchmarks/bench_linear.py --cold`):
1 row 19.4 vs oneDNN 25.0 ms, 16 rows 27.1 vs 37.6, 32 rows 35-44 vs 50-61, 64 rows 62.5 vs
77.3 (docs/benchmarks.md, "Column-panel linears"). Above MAX_ROWS the oneDNN copy (or MKL on
the plain weight) takes over: larger row counts are compute-bound, where oneDNN's blocking
wins.

Which layout runs is chosen by timing at start-up (runtime/model/path_selection.py: `panels`
next to `prepacked` and `plain`). Built on first use (native_build.py); without a compiler
`pack` returns None and the layer keeps its other path.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from radixlm.kernels.native_build import C_PRELUDE, NativeLibrary

NR = 32  # output columns per panel
MAX_ROWS = 64  # above this the panels are not used (compute-bound: oneDNN's blocking wins)
# In bfloat16 the dot products are the bound sooner: on the AMX Xeon (cold weights, 2 threads)
# panels 10.4 / 11.6 / 15.4 ms per forward at 1 / 4 / 8 rows against oneDNN's AMX 13.9 /
# 13.7 / 14.4, and 39.0 vs 17.0 at 32.
BF16_MAX_ROWS = 4

# The multiply over a weight's panels, once per element type ($T, with chunk_$S and store_$S).
DRIVER = r"""
INLINE void chunk_rows_$S(const $T *x, int64_t K, const $T *p, int64_t k0, int64_t k1, float *acc,
                          int mr, int first, const char **pf, const char *pf_end, int lines)
{
    switch (mr) {  /* one specialised copy per row count: the accumulators stay in registers */
#define ROWS(n) case n: chunk_$S(x, K, p, k0, k1, acc, n, first, pf, pf_end, lines); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#undef ROWS
    }
}

/* y [M, N] = x [M, K] times the panels [ceil(N / NR)] (each K x NR) of a weight [N, K], M <= MAX_M.
   Per panel, per chunk of KC k-steps, every block of rows multiplies the chunk while it sits
   in L1, and the prefetches spread over all the blocks' k-steps: the weights stream from
   memory during the whole multiply, not only during the first block's pass. */
void panel_linear_$S(const $T *x, int64_t M, int64_t K, const $T *panels, int64_t N, $T *y, int nthreads)
{
    const int64_t count = (N + NR - 1) / NR;
    const int64_t blocks = (M + MR - 1) / MR, per = (M + blocks - 1) / blocks;  /* even blocks */
    /* Prefetches per block's k-step: over all blocks more than the 2 lines a step consumes, so
       the cursor keeps PF_BYTES ahead (it stops there: pf_end). */
    const int lines = blocks == 1 ? 4 : blocks == 2 ? 2 : 1;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i = 0; i < count; ++i) {  /* static: each thread streams one contiguous run */
        float acc[MAX_M * NR] __attribute__((aligned(64)));
        const $T *p = panels + i * K * NR;
        const char *pf = (const char *)p + PF_BYTES;  /* past the panel's end: the next one's start */
        const int64_t n0 = i * NR, ncols = N - n0 < NR ? N - n0 : NR;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t k1 = k0 + KC < K ? k0 + KC : K;
            for (int64_t m0 = 0; m0 < M; m0 += per)
                chunk_rows_$S(x + m0 * K, K, p, k0, k1, acc + m0 * NR, M - m0 < per ? (int)(M - m0) : (int)per,
                              k0 == 0, &pf, (const char *)(p + k1 * NR) + PF_BYTES, lines);
        }
        for (int64_t r = 0; r < M; ++r) store_$S(y + r * N + n0, acc + r * NR, ncols);
    }
}
"""

C_SOURCE = C_PRELUDE + r"""
#include <string.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

typedef float v16 __attribute__((vector_size(64)));  /* one zmm, or two ymm without AVX-512 */
#define NR 32   /* panel width: two vectors */
#define MR 12   /* rows per register tile: 24 accumulators */
#define PF_BYTES 16384  /* how far the prefetches run ahead of the multiply */
#define KC 64   /* k-steps summed per chunk before joining the total */
#define MAX_M 64

/* Prefetch `lines` cache lines at the cursor *pf, up to pf_end. */
INLINE void prefetch_ahead(const char **pf, const char *pf_end, int lines) {
    for (int l = 0; l < lines && *pf < pf_end; ++l, *pf += 64) __builtin_prefetch(*pf, 0, 1);
}

/* acc[r, 0..NR) = (first ? 0 : acc[r, 0..NR)) + a[r] for rows r < mr. */
INLINE void join_chunk(v16 a[MR][2], float *acc, const int mr, int first) {
    for (int r = 0; r < mr; ++r) {
        v16 t0 = a[r][0], t1 = a[r][1];
        if (!first) {
            v16 s0, s1;
            memcpy(&s0, acc + r * NR, 64);
            memcpy(&s1, acc + r * NR + 16, 64);
            t0 += s0;
            t1 += s1;
        }
        memcpy(acc + r * NR, &t0, 64);
        memcpy(acc + r * NR + 16, &t1, 64);
    }
}

/* acc[r, 0..NR) (+)= x[r, k0..k1) . panel rows k0..k1 for rows r < mr (a constant in each copy).
   float32 panels: [K][NR]. */
INLINE void chunk_f32(const float *x, int64_t K, const float *p, int64_t k0, int64_t k1, float *acc,
                      const int mr, int first, const char **pf, const char *pf_end, int lines)
{
    v16 a[MR][2];
    for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = (v16){0};
    for (int64_t k = k0; k < k1; ++k) {
        prefetch_ahead(pf, pf_end, lines);
        v16 w0, w1;
        memcpy(&w0, p + k * NR, 64);
        memcpy(&w1, p + k * NR + 16, 64);
        for (int r = 0; r < mr; ++r) {
            const float xv = x[r * K + k];
            a[r][0] += xv * w0;
            a[r][1] += xv * w1;
        }
    }
    join_chunk(a, acc, mr, first);
}

INLINE void store_f32(float *y, const float *acc, int64_t ncols) { memcpy(y, acc, sizeof(float) * ncols); }

#ifdef __AVX512BF16__
/* The same in bfloat16: panels [K/2][NR][2], each 32-bit lane a column's pair of k-steps, so
   one AVX512-BF16 dot product (vdpbf16ps) adds two k-steps' products into float32. */
INLINE void chunk_bf16(const uint16_t *x, int64_t K, const uint16_t *p, int64_t k0, int64_t k1, float *acc,
                       const int mr, int first, const char **pf, const char *pf_end, int lines)
{
    v16 a[MR][2];
    for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = (v16){0};
    for (int64_t k = k0; k < k1; k += 2) {
        prefetch_ahead(pf, pf_end, lines);
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(p + k * NR);
        const __m512bh w1 = (__m512bh)_mm512_loadu_si512(p + k * NR + 32);
        for (int r = 0; r < mr; ++r) {
            int32_t pair;
            memcpy(&pair, x + r * K + k, 4);
            const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
            a[r][0] = _mm512_dpbf16_ps(a[r][0], xv, w0);
            a[r][1] = _mm512_dpbf16_ps(a[r][1], xv, w1);
        }
    }
    join_chunk(a, acc, mr, first);
}

INLINE void store_bf16(uint16_t *y, const float *acc, int64_t ncols) {
    for (int64_t c = 0; c < ncols; ++c) y[c] = f32_to_bf16(acc[c]);
}
#endif
""" + DRIVER.replace("$T", "float").replace("$S", "f32") \
  + "#ifdef __AVX512BF16__" + DRIVER.replace("$T", "uint16_t").replace("$S", "bf16") + "#endif\n"

def _declare(lib: ctypes.CDLL) -> None:
    for suffix in SUFFIX.values():
        fn = getattr(lib, f"panel_linear_{suffix}", None)  # bf16: only with AVX512-BF16
        if fn is not None:
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.c_void_p, ctypes.c_int]


SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}
_LIBRARY = NativeLibrary("gemm", C_SOURCE, _declare)


@dataclass(frozen=True)
class PanelWeight:
    """A float32 or bfloat16 weight [out, in] as column panels, plus what serves more than
    `max_rows` rows: the oneDNN-prepacked copy where there is one (else MKL on the plain weight)."""

    panels: torch.Tensor  # float32 [ceil(out / NR), in, NR]; bfloat16 [ceil(out / NR), in / 2, NR, 2]
    out_features: int
    in_features: int
    large: torch.Tensor | None  # cpu_ops.prepack_weight's copy, or None

    @property
    def nbytes(self) -> int:
        return self.panels.numel() * self.panels.element_size()

    @property
    def max_rows(self) -> int:
        return MAX_ROWS if self.panels.dtype == torch.float32 else BF16_MAX_ROWS


def _kernel(dtype: torch.dtype):
    lib = _LIBRARY.get() if dtype in SUFFIX else None
    return None if lib is None else getattr(lib, f"panel_linear_{SUFFIX[dtype]}", None)


def pack(weight: torch.Tensor, large: torch.Tensor | None = None) -> PanelWeight | None:
    """`weight` in panels, or None where they do not apply (not a CPU float32 / bfloat16
    matrix, no compiler; bfloat16 also needs AVX512-BF16 and an even number of inputs)."""
    if weight.is_cuda or weight.dim() != 2 or _kernel(weight.dtype) is None:
        return None
    n, k = weight.shape
    if weight.dtype == torch.bfloat16 and k % 2:
        return None
    padded = weight.new_zeros(-(-n // NR) * NR, k)
    padded[:n] = weight.detach()
    if weight.dtype == torch.float32:
        panels = padded.view(-1, NR, k).transpose(1, 2).contiguous()
    else:  # pairs of k-steps side by side per column, for the bf16 dot product
        panels = padded.view(-1, NR, k // 2, 2).transpose(1, 2).contiguous()
    return PanelWeight(panels, n, k, large)


def serves(x: torch.Tensor, pw: PanelWeight) -> bool:
    return x.dim() == 2 and x.dtype == pw.panels.dtype and 0 < x.shape[0] <= pw.max_rows \
        and x.shape[1] == pw.in_features and not x.is_cuda


def linear(x: torch.Tensor, pw: PanelWeight) -> torch.Tensor:
    """x @ weight.T for x [rows <= MAX_ROWS, in] of the weight's dtype (`serves(x, pw)` says where it is the faster way)."""
    x = x.contiguous()
    y = x.new_empty(x.shape[0], pw.out_features)
    _kernel(x.dtype)(x.data_ptr(), x.shape[0], x.shape[1], pw.panels.data_ptr(), pw.out_features, y.data_ptr(),
                     torch.get_num_threads())
    return y
