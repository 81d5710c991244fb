"""Linear layers of 1-64 rows in C over weights laid out in column panels (CPU, float32).

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

C_SOURCE = C_PRELUDE + r"""
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));  /* one zmm, or two ymm without AVX-512 */
#define NR 32   /* panel width: two vectors */
#define MR 12   /* rows per register tile: 24 accumulators */
#define PF 128  /* panel rows (k) the prefetches run ahead of the multiply: 16 KB */
#define KC 64   /* k-steps summed per chunk before joining the total */
#define MAX_M 64

/* acc[r, 0..NR) (+)= x[r, k0..k1) . panel rows k0..k1 for rows r < mr (a constant in each copy).
   Each k-step also prefetches `lines` cache lines at the cursor *pf, up to pf_end. */
INLINE void chunk(const float *x, int64_t K, const float *p, int64_t k0, int64_t k1, float *acc,
                  const int mr, int first, const float **pf, const float *pf_end, int lines)
{
    v16 a[MR][2];
    for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = (v16){0};
    for (int64_t k = k0; k < k1; ++k) {
        for (int l = 0; l < lines && *pf < pf_end; ++l, *pf += 16) __builtin_prefetch(*pf, 0, 1);
        v16 w0, w1;
        memcpy(&w0, p + k * NR, 64);
        memcpy(&w1, p + k * NR + 16, 64);
        for (int r = 0; r < mr; ++r) {
            const float xv = x[r * K + k];
            a[r][0] += xv * w0;
            a[r][1] += xv * w1;
        }
    }
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

INLINE void chunk_rows(const float *x, int64_t K, const float *p, int64_t k0, int64_t k1, float *acc,
                       int mr, int first, const float **pf, const float *pf_end, int lines)
{
    switch (mr) {  /* one specialised copy per row count: the accumulators stay in registers */
#define ROWS(n) case n: chunk(x, K, p, k0, k1, acc, n, first, pf, pf_end, lines); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
    }
}

/* y [M, N] = x [M, K] times the panels [ceil(N / NR)][K][NR] of a weight [N, K], M <= MAX_M.
   Per panel, per chunk of KC k-steps, every block of rows multiplies the chunk while it sits
   in L1, and the prefetches spread over all the blocks' k-steps: the weights stream from
   memory during the whole multiply, not only during the first block's pass. */
void panel_linear_f32(const float *x, int64_t M, int64_t K, const float *panels, int64_t N, float *y,
                      int nthreads)
{
    const int64_t count = (N + NR - 1) / NR;
    const int64_t blocks = (M + MR - 1) / MR, per = (M + blocks - 1) / blocks;  /* even blocks */
    /* Prefetches per block's k-step: over all blocks more than the 2 lines a k-step consumes, so
       the cursor keeps PF ahead (it stops there: pf_end). */
    const int lines = blocks == 1 ? 4 : blocks == 2 ? 2 : 1;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i = 0; i < count; ++i) {  /* static: each thread streams one contiguous run */
        float acc[MAX_M * NR] __attribute__((aligned(64)));
        const float *p = panels + i * K * NR, *pf = p + PF * NR;
        const int64_t n0 = i * NR, ncols = N - n0 < NR ? N - n0 : NR;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t k1 = k0 + KC < K ? k0 + KC : K;
            for (int64_t m0 = 0; m0 < M; m0 += per)  /* past the panel's end: the next one's start */
                chunk_rows(x + m0 * K, K, p, k0, k1, acc + m0 * NR, M - m0 < per ? (int)(M - m0) : (int)per,
                           k0 == 0, &pf, p + (k1 + PF) * NR, lines);
        }
        for (int64_t r = 0; r < M; ++r) memcpy(y + r * N + n0, acc + r * NR, sizeof(float) * ncols);
    }
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    lib.panel_linear_f32.restype = None
    lib.panel_linear_f32.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]


_LIBRARY = NativeLibrary("gemm", C_SOURCE, _declare)


@dataclass(frozen=True)
class PanelWeight:
    """A float32 weight [out, in] as column panels, plus what serves more than MAX_ROWS rows:
    the oneDNN-prepacked copy where there is one (else MKL on the plain weight)."""

    panels: torch.Tensor  # [ceil(out / NR), in, NR]
    out_features: int
    large: torch.Tensor | None  # cpu_ops.prepack_weight's copy, or None

    @property
    def nbytes(self) -> int:
        return self.panels.numel() * self.panels.element_size()


def pack(weight: torch.Tensor, large: torch.Tensor | None = None) -> PanelWeight | None:
    """`weight` in panels, or None where they do not apply (not a CPU float32 matrix, no compiler)."""
    if weight.is_cuda or weight.dtype != torch.float32 or weight.dim() != 2 or _LIBRARY.get() is None:
        return None
    n, k = weight.shape
    padded = torch.zeros(-(-n // NR) * NR, k)
    padded[:n] = weight.detach()
    panels = padded.view(-1, NR, k).transpose(1, 2).contiguous()
    return PanelWeight(panels, n, large)


def serves(x: torch.Tensor, pw: PanelWeight) -> bool:
    return x.dim() == 2 and x.dtype == torch.float32 and 0 < x.shape[0] <= MAX_ROWS \
        and x.shape[1] == pw.panels.shape[1] and not x.is_cuda


def linear(x: torch.Tensor, pw: PanelWeight) -> torch.Tensor:
    """x @ weight.T for x [rows <= MAX_ROWS, in] float32 (`serves(x, pw)`)."""
    x = x.contiguous()
    y = torch.empty(x.shape[0], pw.out_features)
    _LIBRARY.get().panel_linear_f32(x.data_ptr(), x.shape[0], x.shape[1], pw.panels.data_ptr(), pw.out_features,
                                    y.data_ptr(), torch.get_num_threads())
    return y
