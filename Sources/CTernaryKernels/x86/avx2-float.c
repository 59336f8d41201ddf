/*
 * avx2-float.c — AVX2 (+FMA, F16C) kernels for float weights × f32 activations: F16, BF16 (LM
 * heads, embeddings), Q8_0 and Q6_K.
 *
 * Every function carries its own target attribute: the file is compiled without -march, and
 * dispatch.c only hands these out when the CPU reports avx2, fma and f16c.
 */
#if defined(__x86_64__)

#include "avx2-common.h"

/* ---------------------------------------------------------------------------------------------
 * F16 / BF16 × f32
 *
 * nt == 1 (token generation, the LM head): one row at a time (a single sequential stream), four
 * accumulators and a software prefetch HALF_PREFETCH halves ahead; measured on Zen 1 this streamed
 * faster than four rows in flight. nt > 1: each converted weight vector is reused by four tokens.
 * Results differ from the reference only by summation order.
 * ------------------------------------------------------------------------------------------- */

TK_AVX2_INLINE __m256 load8_half(const uint16_t *p, const int bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

TK_AVX2_INLINE float half_to_f32(uint16_t h, const int bf16) {
    return bf16 ? tk_bf16_to_f32(h) : tk_f16_to_f32(h);
}

/* 512 halves = 1 KiB ahead. Measured on Zen 3 (2560 × 128,256 F16 head, one thread, best of 6):
 * no prefetch 19.6 GB/s, 256 halves 20.2, 512 21.8, 768 18.6, 2048 (the earlier setting, 4 KiB
 * ahead, always in the next page) 16.0; a plain read loop 20–21 GB/s. */
#define HALF_PREFETCH 512

/* One tile: TT tokens × RR rows; U (1, 2, 4) unrolls k by 8·U with U accumulator sets. */
TK_AVX2_INLINE void half_tile_avx2(const uint16_t *w, int64_t K, const float *x, int64_t ldx,
                                   float *out, int64_t ldo, const int TT, const int RR, const int U,
                                   const int bf16) {
    __m256 acc[4][8];
    TK_UNROLL for (int u = 0; u < U; u++)
        TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[u][i] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * U <= K; k += 8 * U) {
        TK_UNROLL for (int r = 0; r < RR; r++)
            _mm_prefetch((const char *)(w + r * K + k + HALF_PREFETCH), _MM_HINT_T0);
        TK_UNROLL for (int u = 0; u < U; u++) {
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const __m256 wv = load8_half(w + r * K + k + 8 * u, bf16);
                TK_UNROLL for (int t = 0; t < TT; t++)
                    acc[u][t * RR + r] =
                        _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k + 8 * u), acc[u][t * RR + r]);
            }
        }
    }
    for (; k + 8 <= K; k += 8) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const __m256 wv = load8_half(w + r * K + k, bf16);
            TK_UNROLL for (int t = 0; t < TT; t++)
                acc[0][t * RR + r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k), acc[0][t * RR + r]);
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            __m256 a = acc[0][t * RR + r];
            TK_UNROLL for (int u = 1; u < U; u++) a = _mm256_add_ps(a, acc[u][t * RR + r]);
            float s = hsum_ps_avx2(a);
            for (int64_t kk = k; kk < K; kk++) s += half_to_f32(w[r * K + kk], bf16) * x[t * ldx + kk];
            out[t * ldo + r] = s;
        }
    }
}

#define HALF_ROWS(TT, RR, U, BF16)                                                                   \
    do {                                                                                             \
        int64_t m_ = r0;                                                                             \
        for (; m_ + (RR) <= r1; m_ += (RR)) half_tile_avx2(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, RR, U, BF16); \
        for (; m_ < r1; m_++) half_tile_avx2(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, 1, U, BF16); \
    } while (0)

TK_AVX2_INLINE void half_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x,
                                   int64_t ldx, int64_t nt, float *out, int64_t ldo, const int bf16) {
    const uint16_t *wh = (const uint16_t *)w;
    int64_t t0 = 0;
    for (; t0 + 4 <= nt; t0 += 4) {
        const float *xt = x + t0 * ldx;
        float *ot = out + t0 * ldo;
        HALF_ROWS(4, 2, 1, bf16);
    }
    const float *xt = x + t0 * ldx;
    float *ot = out + t0 * ldo;
    switch (nt - t0) {
    case 3: HALF_ROWS(3, 2, 1, bf16); break;
    case 2: HALF_ROWS(2, 2, 1, bf16); break;
    case 1: HALF_ROWS(1, 1, 4, bf16); break;
    default: break;
    }
}

TK_AVX2_FN void tk_f16_f32_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                     const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    half_gemm_avx2(w, K, r0, r1, x, ldx, nt, out, ldo, 0);
}

TK_AVX2_FN void tk_bf16_f32_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                      const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    half_gemm_avx2(w, K, r0, r1, x, ldx, nt, out, ldo, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Q8_0 × f32: per block, 32 int8 → float, dot with x, scaled by d; one row × up to 4 tokens.
 * ------------------------------------------------------------------------------------------- */

TK_AVX2_INLINE void q8_0_row_avx2(const tk_block_q8_0 *row, int64_t nb, const float *x, int64_t ldx,
                                  float *out, int64_t ldo, const int TT) {
    __m256 acc[4];
    TK_UNROLL for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)row[b].qs);
        const __m128i lo = _mm256_castsi256_si128(qv);
        const __m128i hi = _mm256_extracti128_si256(qv, 1);
        __m256 wv[4];
        wv[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        wv[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
        wv[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        wv[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
        const __m256 d = _mm256_set1_ps(tk_f16_to_f32(row[b].d));
        TK_UNROLL for (int t = 0; t < TT; t++) {
            const float *xb = x + t * ldx + b * TK_QK8_0;
            __m256 s = _mm256_mul_ps(wv[0], _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xb + 16), s);
            s = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xb + 24), s);
            acc[t] = _mm256_fmadd_ps(d, s, acc[t]);
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) out[t * ldo] = hsum_ps_avx2(acc[t]);
}

TK_AVX2_FN void tk_q8_0_f32_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                      const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    TK_FLOAT_ROWS_GEMM_BODY(tk_block_q8_0, TK_QK8_0, q8_0_row_avx2)
}

/* ---------------------------------------------------------------------------------------------
 * Q6_K × f32 (LM heads and token embeddings of other BitNet GGUFs)
 *
 * Widening 6-bit codes to float is what limits a Q6_K gemv: vpmovsxbd + vcvtdq2ps per 8 values
 * are lane-crossing on Zen (3 cycles on one pipe each, llvm-mca znver3), and the first version of
 * this kernel ran at 2 values per cycle, compute-bound at half the memory bandwidth. Here the codes
 * u (0..63, before the −32) become floats with in-lane operations only: bytes are unpacked to words
 * and the words interleaved with 0x4B00, so each dword is 0x4B0000uu = the float 2^23 + u, and one
 * subtraction of 2^23 + 32 gives u − 32 exactly. The unpacks leave the values of a 32-value group in
 * the order [0–3 16–19] [4–7 20–23] [8–11 24–27] [12–15 28–31] (per 128-bit lane), so the
 * activations are copied once per call into that order (Q6K_XP floats on the stack: K up to 8192
 * in one pass for one token, slices of 2048 values for four); the low lane of every vector then
 * belongs to sub-block 2g and the high lane to 2g + 1, and one vector of their two scales d·sc
 * serves the whole group. Results differ from the reference only by summation order (and, for K
 * beyond one slice, by the slice sums parked in out[]). Measured (Zen 3, one thread): 2560 × 256
 * rows cache-hot 8.3 → 11.3 Gvalues/s; streamed 2560 × 128,256 (the 2B4T head) 40.7 → 30.0 ms.
 * ------------------------------------------------------------------------------------------- */

#define Q6K_PREFETCH 1024

/* x[0..n) (n a multiple of 32) in the unpack order described above. */
TK_AVX2_INLINE void q6_k_permute_x(const float *x, float *xp, int64_t n) {
    for (int64_t i = 0; i < n; i += 32) {
        const __m256 a = _mm256_loadu_ps(x + i), c = _mm256_loadu_ps(x + i + 8);
        const __m256 b = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
        _mm256_storeu_ps(xp + i, _mm256_permute2f128_ps(a, b, 0x20));
        _mm256_storeu_ps(xp + i + 8, _mm256_permute2f128_ps(a, b, 0x31));
        _mm256_storeu_ps(xp + i + 16, _mm256_permute2f128_ps(c, d, 0x20));
        _mm256_storeu_ps(xp + i + 24, _mm256_permute2f128_ps(c, d, 0x31));
    }
}

/* One row's blocks [0, nb) × TT ≤ 4 tokens (permuted activations xp + t·ldp) → sums[t]. */
TK_AVX2_INLINE void q6_k_row_avx2(const tk_block_q6_k *row, int64_t nb, const float *xp, int64_t ldp,
                                  float sums[4], const int TT) {
    __m256 acc[4][2];
    TK_UNROLL for (int t = 0; t < TT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), zero = _mm256_setzero_si256();
    const __m256i magic = _mm256_set1_epi16(0x4b00);
    const __m256 bias = _mm256_set1_ps(8388608.0f + 32.0f);
    for (int64_t b = 0; b < nb; b++) {
        const tk_block_q6_k *blk = &row[b];
        const char *pf = (const char *)blk + Q6K_PREFETCH;
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 128, _MM_HINT_T0);
        _mm_prefetch(pf + 192, _MM_HINT_T0);
        const __m256 d = _mm256_set1_ps(tk_f16_to_f32_inline(blk->d));
        const __m128i sc = _mm_loadu_si128((const __m128i *)blk->scales);
        float scl[16];
        _mm256_storeu_ps(scl, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_storeu_ps(scl + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        TK_UNROLL for (int half = 0; half < 2; half++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * half));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            TK_UNROLL for (int j = 0; j < 4; j++) {
                /* values 128·half + 32·j + 0..31: sub-blocks 8·half + 2j (low lanes) and + 1 (high) */
                const int g = 4 * half + j;
                const __m256i wl = _mm256_unpacklo_epi8(u[j], zero), wh = _mm256_unpackhi_epi8(u[j], zero);
                const __m256 f0 = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(wl, magic)), bias);
                const __m256 f1 = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(wl, magic)), bias);
                const __m256 f2 = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(wh, magic)), bias);
                const __m256 f3 = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(wh, magic)), bias);
                const __m256 s = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(scl + 2 * g)),
                                                      _mm_broadcast_ss(scl + 2 * g + 1), 1);
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const float *xb = xp + t * ldp + b * TK_QK_K + 32 * g;
                    __m256 p = _mm256_mul_ps(f0, _mm256_loadu_ps(xb));
                    p = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xb + 8), p);
                    p = _mm256_fmadd_ps(f2, _mm256_loadu_ps(xb + 16), p);
                    p = _mm256_fmadd_ps(f3, _mm256_loadu_ps(xb + 24), p);
                    acc[t][j & 1] = _mm256_fmadd_ps(s, p, acc[t][j & 1]);
                }
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) sums[t] = hsum_ps_avx2(_mm256_add_ps(acc[t][0], acc[t][1]));
}

TK_AVX2_FN void tk_q6_k_f32_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                      const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    TK_Q6K_GEMM_BODY(q6_k_permute_x, q6_k_row_avx2)
}

#endif /* __x86_64__ */
