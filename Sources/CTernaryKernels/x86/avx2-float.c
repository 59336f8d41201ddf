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

#define HALF_PREFETCH 2048

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
 * Q6_K × f32 (LM heads of other BitNet GGUFs): per half block the four 32-byte code vectors
 * (ql nibbles | qh bit pairs << 4, minus 32, as in the reference decode), converted to float 8 at a
 * time; each 16-value sub-block's dot is scaled by d·scale once. One row × up to 4 tokens.
 * Results differ from the reference only by summation order.
 * ------------------------------------------------------------------------------------------- */

TK_AVX2_INLINE void q6_k_row_avx2(const tk_block_q6_k *row, int64_t nb, const float *x, int64_t ldx,
                                  float *out, int64_t ldo, const int TT) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    __m256 acc[4];
    TK_UNROLL for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const tk_block_q6_k *blk = &row[b];
        const float d = tk_f16_to_f32(blk->d);
        TK_UNROLL for (int half = 0; half < 2; half++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * half));
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            v[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            TK_UNROLL for (int j = 0; j < 4; j++) {
                const __m256i c = _mm256_sub_epi8(v[j], k32);
                const __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
                const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
                const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
                const __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
                const __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
                const __m256 s0 = _mm256_set1_ps(d * (float)blk->scales[8 * half + 2 * j]);
                const __m256 s1 = _mm256_set1_ps(d * (float)blk->scales[8 * half + 2 * j + 1]);
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const float *xb = x + t * ldx + b * TK_QK_K + 128 * half + 32 * j;
                    const __m256 p0 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xb + 8), _mm256_mul_ps(f0, _mm256_loadu_ps(xb)));
                    const __m256 p1 = _mm256_fmadd_ps(f3, _mm256_loadu_ps(xb + 24), _mm256_mul_ps(f2, _mm256_loadu_ps(xb + 16)));
                    acc[t] = _mm256_fmadd_ps(s1, p1, _mm256_fmadd_ps(s0, p0, acc[t]));
                }
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) out[t * ldo] = hsum_ps_avx2(acc[t]);
}

TK_AVX2_FN void tk_q6_k_f32_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                      const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    TK_FLOAT_ROWS_GEMM_BODY(tk_block_q6_k, TK_QK_K, q6_k_row_avx2)
}

#endif /* __x86_64__ */
