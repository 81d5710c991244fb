"""Attention over the KV pool in C, compiled on first use (CPU; K/V float32 or bfloat16): decode
rows (one query per row) and extend tiles (a prefill chunk's tokens, causal).

Why: the torch version (cpu_attention.py) gathers every query row's K and V out of the pool
into new tensors, then runs batched matmuls and a softmax over them: at 64 decode rows of
~100 keys that is ~10 MB copied and re-read per layer, ~3 ms of a ~12 ms layer. Here each
row reads its keys straight from the pool through `req_to_token`, so K/V are read once and
nothing is materialised.

In a decode step the K/V rows are cold: the layer's weight matmuls ran in between and
evicted them. So the loop is laid out for memory, not arithmetic: a key's slot holds all KV
heads contiguously, and a row reads it once for all its heads (not once per head), with the
next rows prefetched; keys go in blocks of 64 (scores, then one softmax rescale per head per
block, then the V sums), with a branch-free exp, so the inner loops vectorise. Measured on a
16-row step of the bundled model (1 thread, AVX-512 EPYC): 1.4 ms per layer cold -> 0.47 ms
(docs/benchmarks.md, "Decode attention rows in C"). With AVX-512 and a head size of 64 or 128
a body in intrinsics scores 16 keys per head at once (`attend_row_avx512`): 1.3x at 40-300
keys, 2.1x at 300-600 on the AMX Xeon (2 threads, 64 rows).

Extend tiles (`extend_into`): the torch path for prefill chunks pads them into groups and
runs batched matmuls with a -inf causal mask over a score tensor; here 8 tokens' query heads
share each key row, a key block is transposed once so scores are axpys over keys computed 4
query vectors at a time in registers, and a token's causal edge is a count, not a mask:
2.7x the torch path at 165-512 tokens; with AVX-512 (accumulators in registers, keys
transposed 16 x 16 in registers) another 2-2.3x on the AMX Xeon. The same tiles serve the batch's shared prefix (every
decode query against the common prefix keys, `prefix_tiles`) (docs/benchmarks.md).

Built on first use (native_build.py); OpenMP threads match `torch.get_num_threads()`.
Without a compiler, or with RADIXLM_NATIVE=0, `decode_rows()` returns None (`extend_into`
False) and callers keep the torch path.
"""

from __future__ import annotations

import ctypes

import torch

from radixlm.kernels import native_build
from radixlm.kernels.native_build import C_PRELUDE, NativeLibrary

C_SOURCE = C_PRELUDE + r"""
#include <string.h>

#define BLOCK 64    /* keys scored per block: the block's scores, [heads][BLOCK], stay in L1 */
#define AHEAD 8     /* key rows prefetched ahead of the one being scored */

/* Element i of a K/V row: float32, or bfloat16 (the upper half of a float32). */
INLINE float kv_at(const void *row, int64_t i, int bf16) {
    if (!bf16) return ((const float *)row)[i];
    union { uint32_t u; float f; } x = { .u = (uint32_t)((const uint16_t *)row)[i] << 16 };
    return x.f;
}

INLINE const char *row_at(const void *base, const int32_t *slots, int64_t s, int64_t row_bytes) {
    return (const char *)base + (int64_t)slots[s] * row_bytes;
}

INLINE void prefetch_row(const char *p, int64_t bytes) {
    for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(p + i);  /* one cache line each */
}

/* One block of n scores p of one query vector into its running softmax (max m, sum l, the
   weighted V sum acc [D]): a new maximum rescales what was summed so far; p becomes the
   block's unnormalised probabilities. */
/* max(init, p[0..n)): in 16 lanes, then across them. A plain running max is a chain of
   dependent scalar maxes (the compiler may not reorder it: NaN semantics), which took a fifth
   of the extend tiles' time. */
INLINE float max_of(const float *p, int64_t n, float init) {
    float lanes[16];
    for (int i = 0; i < 16; ++i) lanes[i] = init;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int i = 0; i < 16; ++i) lanes[i] = p[j + i] > lanes[i] ? p[j + i] : lanes[i];
    for (; j < n; ++j) lanes[0] = p[j] > lanes[0] ? p[j] : lanes[0];
    float mx = init;
    for (int i = 0; i < 16; ++i) mx = lanes[i] > mx ? lanes[i] : mx;
    return mx;
}

INLINE void online_softmax(float *p, int64_t n, float *m, float *l, float *acc, int64_t D) {
    const float mx = max_of(p, n, *m);
    if (mx > *m) {
        const float c = expf(*m - mx);
        *l *= c;
        for (int64_t d = 0; d < D; ++d) acc[d] *= c;
        *m = mx;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) { p[j] = exp_nonpositive(p[j] - mx); sum += p[j]; }
    *l += sum;
}

/* A row's nh heads out of their running softmax: o = acc / l, lse = m + log l (-inf, and
   zeros, where no key was seen). */
INLINE void finish_heads(const float *m, const float *l, const float *acc, int64_t nh, int64_t D,
                         float *o, float *lse) {
    for (int64_t h = 0; h < nh; ++h) {
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int64_t d = 0; d < D; ++d) o[h * D + d] = acc[h * D + d] * inv;
        lse[h] = l[h] > 0.0f ? m[h] + logf(l[h]) : -INFINITY;
    }
}

/* Heads [h0, h1) (whole KV groups) of row r attend to keys [start, end) through `slots`. A key
   row holds every KV head ([KV, D], contiguous), so it is read once per block for all heads;
   within a block the scores are computed first, then one softmax rescale per head, then the
   V sums: no per-key branch, and the dot and V loops vectorise. `bf16` is a constant in each
   caller, so each K/V type gets its own specialised copy. */
INLINE void attend_row(const float *qr, const void *k, const void *v, const int32_t *slots,
                       int64_t start, int64_t end, int64_t h0, int64_t h1, int64_t G, int64_t KV,
                       int64_t D, float scale, float *o, float *lse, int bf16)
{
    const int64_t nh = h1 - h0, esize = bf16 ? 2 : 4, row_bytes = KV * D * esize;
    float m[nh], l[nh], acc[nh * D], p[nh * BLOCK];
    for (int64_t h = 0; h < nh; ++h) { m[h] = -INFINITY; l[h] = 0.0f; }
    memset(acc, 0, sizeof(float) * nh * D);
    for (int64_t b0 = start; b0 < end; b0 += BLOCK) {
        const int64_t nb = end - b0 < BLOCK ? end - b0 : BLOCK;
        for (int64_t j = 0; j < nb; ++j) {
            if (j + AHEAD < nb) prefetch_row(row_at(k, slots, b0 + j + AHEAD, row_bytes), row_bytes);
            prefetch_row(row_at(v, slots, b0 + j, row_bytes), row_bytes);  /* for the V pass below */
            const char *kr = row_at(k, slots, b0 + j, row_bytes);
            for (int64_t h = 0; h < nh; ++h) {
                const float *qh = qr + (h0 + h) * D;
                const char *kh = kr + ((h0 + h) / G) * D * esize;
                float dot = 0.0f;
                for (int64_t d = 0; d < D; ++d) dot += qh[d] * kv_at(kh, d, bf16);
                p[h * BLOCK + j] = dot * scale;
            }
        }
        for (int64_t h = 0; h < nh; ++h) online_softmax(p + h * BLOCK, nb, m + h, l + h, acc + h * D, D);
        for (int64_t j = 0; j < nb; ++j) {
            if (j < AHEAD && b0 + BLOCK + j < end)  /* the next block's first key rows */
                prefetch_row(row_at(k, slots, b0 + BLOCK + j, row_bytes), row_bytes);
            const char *vr = row_at(v, slots, b0 + j, row_bytes);
            for (int64_t h = 0; h < nh; ++h) {
                const float pj = p[h * BLOCK + j];
                const char *vh = vr + ((h0 + h) / G) * D * esize;
                float *ah = acc + h * D;
                for (int64_t d = 0; d < D; ++d) ah[d] += pj * kv_at(vh, d, bf16);
            }
        }
    }
    finish_heads(m, l, acc, nh, D, o, lse);
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* 16 elements of a K/V row from element i, as float32. */
INLINE __m512 kv16(const char *row, int64_t i, int bf16) {
    if (!bf16) return _mm512_loadu_ps((const float *)row + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Lane i of the result is the sum of v[i]'s 16 lanes: 16 dot products' partial vectors
   reduced together in 45 shuffles and adds (one horizontal sum each would take ~8 per dot). */
INLINE __m512 sum16(const __m512 *v) {
    __m512 a[8], b[4], c[2];
    for (int i = 0; i < 8; ++i)  /* per 128-bit lane: halves of v[2i], v[2i+1] summed, interleaved */
        a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {  /* per 128-bit lane: that lane's sums of v[4i..4i+3] */
        const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
        b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    for (int i = 0; i < 2; ++i)  /* 128-bit lanes paired: (0+1, 2+3) of b[2i], then of b[2i+1] */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* r[i][j] -> r[j][i] for a 16 x 16 float block in 16 registers (64 shuffles). */
INLINE void transpose16(__m512 *r) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; ++i) {  /* per 128-bit lane: pairs of rows 2i, 2i+1 interleaved */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  /* s[4i + e], 128-bit lane L: element 4L + e of rows 4i..4i+3 */
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        s[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        s[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        s[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        s[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int e = 0; e < 4; ++e) {  /* column 4L + e gathers lane L of s[e], s[4+e], s[8+e], s[12+e] */
        const __m512 ab_lo = _mm512_shuffle_f32x4(s[e], s[4 + e], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 ab_hi = _mm512_shuffle_f32x4(s[e], s[4 + e], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512 cd_lo = _mm512_shuffle_f32x4(s[8 + e], s[12 + e], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 cd_hi = _mm512_shuffle_f32x4(s[8 + e], s[12 + e], _MM_SHUFFLE(3, 2, 3, 2));
        r[e] = _mm512_shuffle_f32x4(ab_lo, cd_lo, _MM_SHUFFLE(2, 0, 2, 0));
        r[4 + e] = _mm512_shuffle_f32x4(ab_lo, cd_lo, _MM_SHUFFLE(3, 1, 3, 1));
        r[8 + e] = _mm512_shuffle_f32x4(ab_hi, cd_hi, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + e] = _mm512_shuffle_f32x4(ab_hi, cd_hi, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* attend_row with AVX-512, for D a multiple of 16 up to 128 (a constant in each caller).
   Scores go 16 keys at a time per head: the head's query stays in registers, each key's dot
   product is a partial vector, and sum16 turns the 16 into the 16 scores. The V sums keep a
   head's accumulator in registers over the block. The generic loop above spent most of its
   time in per-dot horizontal sums and accumulator loads/stores: it ran at ~15 GFLOP/s per
   core on a 64-row step, compute-bound where the K/V reads allow twice that. */
INLINE void attend_row_avx512(const float *qr, const void *k, const void *v, const int32_t *slots,
                              int64_t start, int64_t end, int64_t h0, int64_t h1, int64_t G, int64_t KV,
                              const int64_t D, float scale, float *o, float *lse, int bf16)
{
    const int64_t nh = h1 - h0, esize = bf16 ? 2 : 4, row_bytes = KV * D * esize, DV = D / 16;
    float m[nh], l[nh], acc[nh * D], p[nh * BLOCK];
    for (int64_t h = 0; h < nh; ++h) { m[h] = -INFINITY; l[h] = 0.0f; }
    memset(acc, 0, sizeof(float) * nh * D);
    for (int64_t b0 = start; b0 < end; b0 += BLOCK) {
        const int64_t nb = end - b0 < BLOCK ? end - b0 : BLOCK;
        for (int64_t j0 = 0; j0 < nb; j0 += 16) {
            const int64_t ng = nb - j0 < 16 ? nb - j0 : 16;
            for (int64_t j = 0; j < 16 && b0 + j0 + 16 + j < end; ++j)  /* the next 16 keys */
                prefetch_row(row_at(k, slots, b0 + j0 + 16 + j, row_bytes), row_bytes);
            for (int64_t j = 0; j < ng; ++j) prefetch_row(row_at(v, slots, b0 + j0 + j, row_bytes), row_bytes);
            for (int64_t h = 0; h < nh; ++h) {
                const float *qh = qr + (h0 + h) * D;
                const int64_t kv_off = ((h0 + h) / G) * D * esize;
                __m512 qv[DV], part[16];
                for (int64_t d = 0; d < DV; ++d) qv[d] = _mm512_loadu_ps(qh + 16 * d);
                for (int64_t j = 0; j < 16; ++j) {
                    part[j] = _mm512_setzero_ps();
                    if (j >= ng) continue;
                    const char *kh = row_at(k, slots, b0 + j0 + j, row_bytes) + kv_off;
                    for (int64_t d = 0; d < DV; ++d) part[j] = _mm512_fmadd_ps(qv[d], kv16(kh, 16 * d, bf16), part[j]);
                }
                _mm512_storeu_ps(p + h * BLOCK + j0, _mm512_mul_ps(sum16(part), _mm512_set1_ps(scale)));
            }
        }
        for (int64_t h = 0; h < nh; ++h) online_softmax(p + h * BLOCK, nb, m + h, l + h, acc + h * D, D);
        for (int64_t j = 0; j < AHEAD && b0 + BLOCK + j < end; ++j)  /* the next block's first key rows */
            prefetch_row(row_at(k, slots, b0 + BLOCK + j, row_bytes), row_bytes);
        for (int64_t h = 0; h < nh; ++h) {
            const int64_t kv_off = ((h0 + h) / G) * D * esize;
            __m512 a[DV];
            for (int64_t d = 0; d < DV; ++d) a[d] = _mm512_loadu_ps(acc + h * D + 16 * d);
            for (int64_t j = 0; j < nb; ++j) {
                const __m512 pj = _mm512_set1_ps(p[h * BLOCK + j]);
                const char *vh = row_at(v, slots, b0 + j, row_bytes) + kv_off;
                for (int64_t d = 0; d < DV; ++d) a[d] = _mm512_fmadd_ps(pj, kv16(vh, 16 * d, bf16), a[d]);
            }
            for (int64_t d = 0; d < DV; ++d) _mm512_storeu_ps(acc + h * D + 16 * d, a[d]);
        }
    }
    finish_heads(m, l, acc, nh, D, o, lse);
}
#endif

/* attend_row on the fastest body this CPU and head size have. */
INLINE void attend_row_d(const float *qr, const void *k, const void *v, const int32_t *slots,
                         int64_t start, int64_t end, int64_t h0, int64_t h1, int64_t G, int64_t KV,
                         int64_t D, float scale, float *o, float *lse, int bf16)
{
#if defined(__AVX512F__)
    if (D == 64) {
        attend_row_avx512(qr, k, v, slots, start, end, h0, h1, G, KV, 64, scale, o, lse, bf16);
        return;
    }
    if (D == 128) {
        attend_row_avx512(qr, k, v, slots, start, end, h0, h1, G, KV, 128, scale, o, lse, bf16);
        return;
    }
#endif
    attend_row(qr, k, v, slots, start, end, h0, h1, G, KV, D, scale, o, lse, bf16);
}

/* Row r (query q[r], H heads of D, float32) attends to keys [start, seq[r]) of pool row
   pool_rows[r]: key position s sits in slot table[pool_rows[r] * table_stride + s] of k/v
   [slots, KV, D] (float32, or bfloat16 when bf16 != 0). Writes o[r] ([H, D], float32) and
   lse[r] ([H], natural log; -inf for an empty key range). With fewer rows than threads, each
   KV head of a row is its own work item. */
INLINE void decode_rows(const float *q, const void *k, const void *v, const int32_t *table,
                        int64_t table_stride, const int64_t *pool_rows, const int64_t *seq,
                        int64_t start, int64_t n, int64_t H, int64_t KV, int64_t D, float scale,
                        float *o, float *lse, int nthreads, int bf16)
{
    const int64_t G = H / KV, split = n < nthreads ? KV : 1, per = H / split;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t item = 0; item < n * split; ++item) {
        const int64_t r = item / split, h0 = (item % split) * per;
        attend_row_d(q + r * H * D, k, v, table + pool_rows[r] * table_stride, start, seq[r],
                   h0, h0 + per, G, KV, D, scale, o + (r * H + h0) * D, lse + r * H + h0, bf16);
    }
}

/* Extend tiles: the new tokens of a prefill chunk, QTILE at a time. Each tile is one work item
   per KV head: its tokens' G heads (QTILE * G query vectors) share every key row it reads.
   A block of keys is transposed once into kt[D][BLOCK], so each score row is an axpy over
   the block (vectorised over keys, no horizontal sums); causal masking is a per-token count
   of visible keys. Same block-wise online softmax as the decode rows. */
#define QTILE 8

/* Scores of 4 query vectors (q4: 4 rows of D) against a transposed key block kt [D][BLOCK]:
   16 vector accumulators, each key vector loaded once for the 4. */
INLINE void scores4_generic(const float *q4, const float *kt, int64_t D, float *s4) {
    float a[4][BLOCK];
    memset(a, 0, sizeof a);
    for (int64_t d = 0; d < D; ++d) {
        const float *kd = kt + d * BLOCK;
        const float q0 = q4[d], q1 = q4[D + d], q2 = q4[2 * D + d], q3 = q4[3 * D + d];
        for (int j = 0; j < BLOCK; ++j) {
            a[0][j] += q0 * kd[j]; a[1][j] += q1 * kd[j]; a[2][j] += q2 * kd[j]; a[3][j] += q3 * kd[j];
        }
    }
    memcpy(s4, a, sizeof a);
}

/* acc4 (4 rows of D) += p4 (4 rows of BLOCK probabilities) times the V block vt [nb][D]. */
INLINE void values4_generic(const float *p4, const float *vt, int64_t nb, int64_t D, float *acc4) {
    for (int64_t j = 0; j < nb; ++j) {
        const float p0 = p4[j], p1 = p4[BLOCK + j], p2 = p4[2 * BLOCK + j], p3 = p4[3 * BLOCK + j];
        const float *vj = vt + j * D;
        for (int64_t d = 0; d < D; ++d) {
            acc4[d] += p0 * vj[d]; acc4[D + d] += p1 * vj[d]; acc4[2 * D + d] += p2 * vj[d];
            acc4[3 * D + d] += p3 * vj[d];
        }
    }
}

/* scores4 / values4 with AVX-512 where D is a multiple of 16: the 16 accumulators named as
   registers. Written as loops over arrays, the compiler kept them on the stack and stored
   them back on every step of d (scores) or j (values). */
INLINE void scores4(const float *q4, const float *kt, int64_t D, float *s4) {
#if defined(__AVX512F__)
    if (D % 16 == 0) {
        __m512 a[4][BLOCK / 16];
        for (int r = 0; r < 4; ++r) for (int c = 0; c < BLOCK / 16; ++c) a[r][c] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; ++d) {
            __m512 kd[BLOCK / 16];
            for (int c = 0; c < BLOCK / 16; ++c) kd[c] = _mm512_loadu_ps(kt + d * BLOCK + 16 * c);
            for (int r = 0; r < 4; ++r) {
                const __m512 qb = _mm512_set1_ps(q4[r * D + d]);
                for (int c = 0; c < BLOCK / 16; ++c) a[r][c] = _mm512_fmadd_ps(qb, kd[c], a[r][c]);
            }
        }
        for (int r = 0; r < 4; ++r) for (int c = 0; c < BLOCK / 16; ++c) _mm512_storeu_ps(s4 + r * BLOCK + 16 * c, a[r][c]);
        return;
    }
#endif
    scores4_generic(q4, kt, D, s4);
}

INLINE void values4(const float *p4, const float *vt, int64_t nb, int64_t D, float *acc4) {
#if defined(__AVX512F__)
    if (D % 64 == 0) {
        for (int64_t d0 = 0; d0 < D; d0 += 64) {  /* 64 columns at a time: 16 accumulators */
            __m512 a[4][4];
            for (int r = 0; r < 4; ++r) for (int c = 0; c < 4; ++c) a[r][c] = _mm512_loadu_ps(acc4 + r * D + d0 + 16 * c);
            for (int64_t j = 0; j < nb; ++j) {
                __m512 vj[4];
                for (int c = 0; c < 4; ++c) vj[c] = _mm512_loadu_ps(vt + j * D + d0 + 16 * c);
                for (int r = 0; r < 4; ++r) {
                    const __m512 pb = _mm512_set1_ps(p4[r * BLOCK + j]);
                    for (int c = 0; c < 4; ++c) a[r][c] = _mm512_fmadd_ps(pb, vj[c], a[r][c]);
                }
            }
            for (int r = 0; r < 4; ++r) for (int c = 0; c < 4; ++c) _mm512_storeu_ps(acc4 + r * D + d0 + 16 * c, a[r][c]);
        }
        return;
    }
#endif
    values4_generic(p4, vt, nb, D, acc4);
}

/* A block's keys transposed into kt [D][BLOCK] (columns past nb zero: finite scores, masked
   later) and its values into vt [nb][D], both float32, from the K/V rows at byte offset off.
   With AVX-512 and D a multiple of 16 the keys go 16 x 16 at a time through registers; element
   by element, the scattered stores into kt took longer than the block's scores. */
INLINE void load_block(const void *k, const void *v, const int32_t *slots, int64_t b0, int64_t nb,
                       int64_t off, int64_t row_bytes, int64_t D, float *kt, float *vt, int bf16)
{
    for (int64_t j = 0; j < nb; ++j) {
        const char *vr = row_at(v, slots, b0 + j, row_bytes) + off;
        for (int64_t d = 0; d < D; ++d) vt[j * D + d] = kv_at(vr, d, bf16);
    }
#if defined(__AVX512F__)
    if (D % 16 == 0) {
        for (int64_t j0 = 0; j0 < BLOCK; j0 += 16) {
            const char *kr[16];
            for (int64_t j = 0; j < 16; ++j) kr[j] = j0 + j < nb ? row_at(k, slots, b0 + j0 + j, row_bytes) + off : 0;
            for (int64_t d0 = 0; d0 < D; d0 += 16) {
                __m512 r[16];
                for (int64_t j = 0; j < 16; ++j) r[j] = kr[j] ? kv16(kr[j], d0, bf16) : _mm512_setzero_ps();
                transpose16(r);
                for (int64_t d = 0; d < 16; ++d) _mm512_storeu_ps(kt + (d0 + d) * BLOCK + j0, r[d]);
            }
        }
        return;
    }
#endif
    for (int64_t j = 0; j < nb; ++j) {
        const char *kr = row_at(k, slots, b0 + j, row_bytes) + off;
        for (int64_t d = 0; d < D; ++d) kt[d * BLOCK + j] = kv_at(kr, d, bf16);
    }
    for (int64_t j = nb; j < BLOCK; ++j)
        for (int64_t d = 0; d < D; ++d) kt[d * BLOCK + j] = 0.0f;
}

INLINE void extend_tile(const float *q, int64_t q_row0, int64_t nq, int64_t pos0, int64_t end,
                        const void *k, const void *v, const int32_t *slots, int64_t start, int64_t kvh,
                        int64_t G, int64_t H, int64_t KV, int64_t D, float scale, float *o, float *lse,
                        int bf16)
{
    /* Query vectors padded to a multiple of 4 with zero rows (computed, never written out). */
    const int64_t nv = nq * G, nv4 = (nv + 3) / 4 * 4, esize = bf16 ? 2 : 4, row_bytes = KV * D * esize;
    float m[nv4], l[nv4], acc[nv4 * D], s[nv4 * BLOCK], kt[D * BLOCK], vt[BLOCK * D], qs[nv4 * D];
    memset(qs, 0, sizeof(float) * nv4 * D);
    memset(acc, 0, sizeof(float) * nv4 * D);
    memset(s, 0, sizeof(float) * nv4 * BLOCK);
    for (int64_t vi = 0; vi < nv; ++vi) {
        const float *qv = q + ((q_row0 + vi / G) * H + kvh * G + vi % G) * D;
        for (int64_t d = 0; d < D; ++d) qs[vi * D + d] = qv[d] * scale;
        m[vi] = -INFINITY; l[vi] = 0.0f;
    }
    for (int64_t b0 = start; b0 < end; b0 += BLOCK) {
        const int64_t nb = end - b0 < BLOCK ? end - b0 : BLOCK;
        load_block(k, v, slots, b0, nb, kvh * D * esize, row_bytes, D, kt, vt, bf16);
        for (int64_t vi = 0; vi < nv4; vi += 4) scores4(qs + vi * D, kt, D, s + vi * BLOCK);
        for (int64_t vi = 0; vi < nv; ++vi) {
            float *sv = s + vi * BLOCK;
            const int64_t seen = pos0 + vi / G + 1 - b0;  /* keys of this block the token sees */
            const int64_t nvis = seen < 0 ? 0 : (seen < nb ? seen : nb);
            online_softmax(sv, nvis, m + vi, l + vi, acc + vi * D, D);
            for (int64_t j = nvis; j < BLOCK; ++j) sv[j] = 0.0f;  /* keys after the token: none */
        }
        for (int64_t j = nv * BLOCK; j < nv4 * BLOCK; ++j) s[j] = 0.0f;  /* the padding rows */
        for (int64_t vi = 0; vi < nv4; vi += 4) values4(s + vi * BLOCK, vt, nb, D, acc + vi * D);
    }
    for (int64_t vi = 0; vi < nv; ++vi) {
        const int64_t row = (q_row0 + vi / G) * H + kvh * G + vi % G;
        const float inv = l[vi] > 0.0f ? 1.0f / l[vi] : 0.0f;
        for (int64_t d = 0; d < D; ++d) o[row * D + d] = acc[vi * D + d] * inv;
        lse[row] = l[vi] > 0.0f ? m[vi] + logf(l[vi]) : -INFINITY;
    }
}

/* The tile body with the head size a constant where it is a common one, so the inner loops
   of scores4 / values4 unroll into registers. */
INLINE void extend_tile_d(const float *q, const int64_t *t, const void *k, const void *v,
                          const int32_t *slots, int64_t start, int64_t kvh, int64_t G, int64_t H,
                          int64_t KV, int64_t D, float scale, float *o, float *lse, int bf16)
{
    const int64_t row = t[0], n = t[1], pos = t[2], end = t[3];
    if (D == 64)
        extend_tile(q, row, n, pos, end, k, v, slots, start, kvh, G, H, KV, 64, scale, o, lse, bf16);
    else if (D == 128)
        extend_tile(q, row, n, pos, end, k, v, slots, start, kvh, G, H, KV, 128, scale, o, lse, bf16);
    else
        extend_tile(q, row, n, pos, end, k, v, slots, start, kvh, G, H, KV, D, scale, o, lse, bf16);
}

/* tiles[i] = (first q row, tokens, absolute position of the first, end of its keys,
   req_to_token row): the tile's token t attends to keys [start, min(position + t + 1, end)):
   causal for a prefill chunk (end = position + tokens), all of [start, end) for queries
   placed after them (position = end: the batch's shared prefix). o [T, H, D] and lse [T, H]
   (float32) receive the tiles' rows. */
INLINE void extend_tiles(const float *q, const void *k, const void *v, const int32_t *table,
                         int64_t table_stride, const int64_t *tiles, int64_t n, int64_t start,
                         int64_t H, int64_t KV, int64_t D, float scale, float *o, float *lse,
                         int nthreads, int bf16)
{
    const int64_t G = H / KV;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t item = 0; item < n * KV; ++item) {
        const int64_t *t = tiles + (item / KV) * 5;
        extend_tile_d(q, t, k, v, table + t[4] * table_stride, start, item % KV, G, H, KV, D, scale, o, lse,
                      bf16);
    }
}

#define EXTEND_TILES_ARGS const float *q, const void *k, const void *v, const int32_t *table, \
    int64_t table_stride, const int64_t *tiles, int64_t n, int64_t start, int64_t H, int64_t KV, \
    int64_t D, float scale, float *o, float *lse, int nthreads
#define EXTEND_TILES_CALL q, k, v, table, table_stride, tiles, n, start, H, KV, D, scale, o, lse, nthreads

void extend_tiles_f32(EXTEND_TILES_ARGS) { extend_tiles(EXTEND_TILES_CALL, 0); }
void extend_tiles_bf16(EXTEND_TILES_ARGS) { extend_tiles(EXTEND_TILES_CALL, 1); }

#define DECODE_ROWS_ARGS const float *q, const void *k, const void *v, const int32_t *table, \
    int64_t table_stride, const int64_t *pool_rows, const int64_t *seq, int64_t start, int64_t n, \
    int64_t H, int64_t KV, int64_t D, float scale, float *o, float *lse, int nthreads
#define DECODE_ROWS_CALL q, k, v, table, table_stride, pool_rows, seq, start, n, H, KV, D, scale, o, lse, nthreads

void decode_rows_f32(DECODE_ROWS_ARGS) { decode_rows(DECODE_ROWS_CALL, 0); }
void decode_rows_bf16(DECODE_ROWS_ARGS) { decode_rows(DECODE_ROWS_CALL, 1); }
"""

def _declare(lib: ctypes.CDLL) -> None:
    for fn in (lib.decode_rows_f32, lib.decode_rows_bf16):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p] + \
            [ctypes.c_int64] * 5 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    for fn in (lib.extend_tiles_f32, lib.extend_tiles_bf16):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_void_p] + [ctypes.c_int64] * 5 + \
            [ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]


_LIBRARY = NativeLibrary("attention", C_SOURCE, _declare)
set_enabled = native_build.set_enabled  # the switch is shared by every C kernel library


def available() -> bool:
    return _LIBRARY.get() is not None


KV_DTYPES = (torch.float32, torch.bfloat16)


def _serving(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             req_to_token: torch.Tensor) -> ctypes.CDLL | None:
    """The library, where the C kernels serve these tensors: a float32 or bfloat16 K/V pool
    (both alike), contiguous, on the CPU; None otherwise (or without a compiler)."""
    lib = _LIBRARY.get()
    if lib is None or k_cache.dtype not in KV_DTYPES or v_cache.dtype != k_cache.dtype:
        return None
    if any(t.is_cuda for t in (q, k_cache, v_cache)):
        return None
    if not (k_cache.is_contiguous() and v_cache.is_contiguous() and req_to_token.is_contiguous()):
        return None
    return lib


def decode_rows(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, req_to_token: torch.Tensor,
                pool_rows: torch.Tensor, seq: torch.Tensor, start: int,
                scale: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Row r of q [n, H, D] against keys [start, seq[r]) of request row pool_rows[r] ->
    (o [n, H, D], lse [n, H]), both float32, or None where this path does not apply (a K/V
    pool not float32 or bfloat16, not on the CPU, no compiler): the caller then runs the torch
    version. q may be any float dtype; it is multiplied in float32."""
    lib = _serving(q, k_cache, v_cache, req_to_token)
    if lib is None:
        return None
    n, H, D = q.shape
    q = q.to(torch.float32).contiguous()
    pool_rows = pool_rows.to(torch.int64).contiguous()
    seq = seq.to(torch.int64).contiguous()
    table = req_to_token if req_to_token.dtype == torch.int32 else req_to_token.to(torch.int32)
    o = torch.empty(n, H, D, dtype=torch.float32)
    lse = torch.empty(n, H, dtype=torch.float32)
    fn = lib.decode_rows_f32 if k_cache.dtype == torch.float32 else lib.decode_rows_bf16
    fn(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), table.data_ptr(), table.stride(0),
       pool_rows.data_ptr(), seq.data_ptr(), start, n, H, k_cache.shape[1], D, scale, o.data_ptr(),
       lse.data_ptr(), torch.get_num_threads())
    return o, lse


QTILE = 8  # tokens per extend tile (QTILE in the C source)


def extend_tiles(q_rows: list[int], lens: list[int], positions: list[int], pool_rows: list[int]) -> torch.Tensor:
    """The tile table for `extend_into`: request i's lens[i] new tokens sit at q rows
    q_rows[i].. and absolute positions positions[i].., its keys in req_to_token row pool_rows[i];
    each token sees the keys up to its own position."""
    tiles = [(r + t, min(QTILE, n - t), p + t, p + min(t + QTILE, n), row)  # keys up to its last token
             for r, n, p, row in zip(q_rows, lens, positions, pool_rows) for t in range(0, n, QTILE)]
    return torch.tensor(tiles, dtype=torch.int64).reshape(-1, 5)


def prefix_tiles(num_queries: int, prefix_len: int, pool_row: int) -> torch.Tensor:
    """The tile table for `extend_into` of q rows [0, num_queries) each against all keys
    [start, prefix_len) of req_to_token row pool_row (the batch's shared prefix)."""
    tiles = [(r, min(QTILE, num_queries - r), prefix_len, prefix_len, pool_row)
             for r in range(0, num_queries, QTILE)]
    return torch.tensor(tiles, dtype=torch.int64).reshape(-1, 5)


def extend_into(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, req_to_token: torch.Tensor,
                tiles: torch.Tensor, start: int, scale: float, o: torch.Tensor, lse: torch.Tensor) -> bool:
    """Attention of the q rows in `tiles` (from `extend_tiles`: causal, or `prefix_tiles`) over
    keys from `start`, written into their rows of o [T, H, D] and lse [T, H] (float32,
    contiguous). False (nothing written) where this path does not apply, as `decode_rows`."""
    lib = _serving(q, k_cache, v_cache, req_to_token)
    if lib is None or req_to_token.dtype != torch.int32:
        return False
    _, H, D = q.shape
    q = q.to(torch.float32).contiguous()
    fn = lib.extend_tiles_f32 if k_cache.dtype == torch.float32 else lib.extend_tiles_bf16
    fn(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), req_to_token.data_ptr(), req_to_token.stride(0),
       tiles.data_ptr(), tiles.shape[0], start, H, k_cache.shape[1], D, scale, o.data_ptr(), lse.data_ptr(),
       torch.get_num_threads())
    return True
