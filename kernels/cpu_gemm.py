"""Linear layers of 1-64 rows in C over weights laid out in column panels (CPU, float32).

Why: a decode step multiplies 1-64 rows by every weight of the model, and the weights come
from memory, not cache (the bundled model's 540 MB pass through once per step). oneDNN's
prepacked matmul at these row counts left the reads and the arithmetic mostly serial: on the
AMX Xeon a 32-row step's linears took 45-48 ms with cold weights against 34 ms hot. Here a
weight [N, K] is stored as panels of 32 output columns, [N/32][K][32], so each thread streams
its panels front to back and prefetches PF rows of k ahead while it multiplies; 12 rows at a
time accumulate in 24 vector registers (two 16-float vectors per row). Sums run in chunks of
KC k-steps added into the total, so rounding grows like a blocked sum's (errors as MKL's, not
a sequential sum's ~5x larger ones). Measured on the Xeon, all 30 layers + lm_head, cold,
2 threads: 1 row 18.8 vs oneDNN 23.8 ms, 16 rows 29.3 vs 34.1, 32 rows 41.3 vs 45.4, 64
rows even (docs/benchmarks.md, "Column-panel linears"). Above MAX_ROWS the oneDNN copy (or
MKL on the plain weight) takes over: larger row counts are compute-bound, where oneDNN's
blocking wins.

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
#define PF 32   /* panel rows (k) prefetched ahead: the next panel's start, past a panel's end */
#define KC 64   /* k-steps summed per chunk before joining the total */

/* y[r, n0 .. n0+ncols) = x[r, :] . panel columns, for rows r < mr (mr <= MR, a constant in
   each copy); `pf`: prefetch ahead (the first pass over a panel; later passes find it in L2). */
INLINE void tile(const float *x, int64_t K, const float *p, float *y, int64_t ldy, int64_t ncols,
                 const int mr, int pf)
{
    v16 tot[MR][2];
    for (int r = 0; r < MR; ++r) tot[r][0] = tot[r][1] = (v16){0};
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        v16 a[MR][2];
        for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = (v16){0};
        for (int64_t k = k0; k < k1; ++k) {
            if (pf) { __builtin_prefetch(p + (k + PF) * NR, 0, 1); __builtin_prefetch(p + (k + PF) * NR + 16, 0, 1); }
            v16 w0, w1;
            memcpy(&w0, p + k * NR, 64);
            memcpy(&w1, p + k * NR + 16, 64);
            for (int r = 0; r < mr; ++r) {
                const float xv = x[r * K + k];
                a[r][0] += xv * w0;
                a[r][1] += xv * w1;
            }
        }
        for (int r = 0; r < mr; ++r) { tot[r][0] += a[r][0]; tot[r][1] += a[r][1]; }
    }
    for (int r = 0; r < mr; ++r) {
        float out[NR];
        memcpy(out, &tot[r][0], 64);
        memcpy(out + 16, &tot[r][1], 64);
        memcpy(y + r * ldy, out, sizeof(float) * ncols);
    }
}

INLINE void tile_rows(const float *x, int64_t K, const float *p, float *y, int64_t ldy, int64_t ncols,
                      int mr, int pf)
{
    switch (mr) {  /* one specialised copy per row count: the accumulators stay in registers */
#define ROWS(n) case n: tile(x, K, p, y, ldy, ncols, n, pf); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
    }
}

/* y [M, N] = x [M, K] times the panels [ceil(N / NR)][K][NR] of a weight [N, K]. */
void panel_linear_f32(const float *x, int64_t M, int64_t K, const float *panels, int64_t N, float *y,
                      int nthreads)
{
    const int64_t count = (N + NR - 1) / NR;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i = 0; i < count; ++i) {  /* static: each thread streams one contiguous run */
        const float *p = panels + i * K * NR;
        const int64_t n0 = i * NR, ncols = N - n0 < NR ? N - n0 : NR;
        for (int64_t m0 = 0; m0 < M; m0 += MR)
            tile_rows(x + m0 * K, K, p, y + m0 * N + n0, N, ncols, M - m0 < MR ? (int)(M - m0) : MR, m0 == 0);
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
