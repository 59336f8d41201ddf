/*
 * avx2-ternary.c — AVX2 (+FMA, F16C) kernels for the ternary weights and their int8 activations:
 * activation quantization, I2_S, TQ2_0 and TQ1_0 (the TQ pieces shared with AVX-512: avx2-tq.h).
 * Float-weight kernels: avx2-float.c; AVX-512: avx512-ternary.c, avx512-float.c.
 *
 * Every function carries its own target attribute: the file is compiled without -march, and
 * dispatch.c only hands these out when the CPU reports avx2, fma and f16c.
 */
#if defined(__x86_64__)

#include "avx2-common.h"
#include "avx2-tq.h"

/* ---------------------------------------------------------------------------------------------
 * Activation quantization: bit-identical to tk_quantize_row_i8_ref.
 * x·s is one float multiply; cvtps2dq rounds it to nearest-even (default MXCSR, like rintf); packs
 * saturate to [-128, 127] exactly like the reference's clamp.
 * ------------------------------------------------------------------------------------------- */

TK_AVX2_FN float tk_quantize_row_i8_avx2(const float *x, int8_t *q, int64_t n, int32_t *sum) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int64_t i = 0;
    /* max(|x|, vmax) keeps vmax when |x| is NaN, as the reference's `a > amax` does. */
    for (; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absmask), vmax);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    const float s = tk_i8_scale_from_amax(amax);

    const __m256 vs = _mm256_set1_ps(s);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i vsum = _mm256_setzero_si256();
    i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vs));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vs));
        const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vs));
        /* For finite x, |x·s| ≤ 127·(1 + 2^-24), so the int32 values already lie in [-127, 127]
         * and summing them equals summing the saturated bytes. */
        vsum = _mm256_add_epi32(vsum, _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        /* packs work per 128-bit lane; the dword permutation restores element order. */
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
    }
    int32_t acc = hsum_epi32_avx2(vsum);
    for (; i < n; i++) {
        const float v = rintf(x[i] * s);
        const int32_t qi = v >= 127.0f ? 127 : v <= -128.0f ? -128 : (int32_t)v;
        q[i] = (int8_t)qi;
        acc += qi;
    }
    *sum = acc;
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * I2_S × int8
 *
 * A 32-byte block gives four code vectors (bytes >> 6, 4, 2, 0, masked with 3; the 16-bit shifts
 * leak bits across bytes and the mask removes them) that line up with the four 32-byte activation
 * groups of the block. A tile of TT tokens × RR rows decodes each weight block once and multiplies
 * it with every token's activations.
 *
 * Tiles are one row tall (RR = 1): on the CPUs measured (Zen 1) one sequential weight stream plus a
 * software prefetch I2S_PREFETCH bytes ahead kept the gemv at its in-cache speed, while 2–8 rows in
 * flight were 25–40% slower once the matrix came from L3/DRAM. Rows are contiguous, so the next
 * row's bytes are what the prefetch touches at the end of a row.
 *
 * Range invariant: a maddubs lane is c_a·q_a + c_b·q_b with codes c ≤ 3 and |q| ≤ 128, so
 * |lane| ≤ 768 (maddubs never saturates); one block adds four lanes (≤ 3072) into an int16
 * accumulator, which is widened into int32 every I2S_WIDEN = 8 blocks: |acc16| ≤ 24576 < 32767.
 * The int32 totals are bounded by 3·128·K (no overflow for the K this file ever sees).
 * ------------------------------------------------------------------------------------------- */

#define I2S_WIDEN 8
#define I2S_PREFETCH 2048

TK_AVX2_INLINE void i2s_tile_avx2(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                  int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[16];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[i] = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += I2S_WIDEN) {
        const int64_t b1 = b0 + I2S_WIDEN < nb ? b0 + I2S_WIDEN : nb;
        __m256i a16[16];
        TK_UNROLL for (int i = 0; i < TT * RR; i++) a16[i] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b1; b++) {
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const __m256i wb = _mm256_loadu_si256((const __m256i *)(w + r * row_bytes + b * 32));
                _mm_prefetch((const char *)(w + r * row_bytes + b * 32 + I2S_PREFETCH), _MM_HINT_T0);
                const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(wb, 6), m3);
                const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(wb, 4), m3);
                const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(wb, 2), m3);
                const __m256i c3 = _mm256_and_si256(wb, m3);
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const int8_t *qb = q + t * ldq + b * 128;
                    __m256i p = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)qb));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i *)(qb + 32))));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i *)(qb + 64))));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i *)(qb + 96))));
                    a16[t * RR + r] = _mm256_add_epi16(a16[t * RR + r], p);
                }
            }
        }
        TK_UNROLL for (int i = 0; i < TT * RR; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a16[i], ones));
    }
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++) out[t * ldo + r] = hsum_epi32_avx2(acc[t * RR + r]);
}

/* One row × one token (generation). The gemv cannot spread the code decode over several tokens,
 * and on Zen 1 the four 16-bit shifts of the tile above compete with the multiplies for the
 * vector pipes. Here one shift serves the whole block: the codes of bits 6–7 and 2–3 are masked in
 * place as 4·c (x >> 4 & 12 and x & 12), those of bits 4–5 and 0–1 as c. The 4·c products are
 * summed apart and divided by 4 at the end (exact: the sum is a multiple of 4).
 * Range: a 4·c maddubs lane is ≤ 2·12·128 = 3072, so s4 gains ≤ 6144 per block and s1 ≤ 1536;
 * both are widened every I2S_GEMV_WIDEN = 4 blocks (≤ 24576 < 32767).
 * Measured (2560 × 6912, cache-hot, one thread, Zen 1): 27.8–29.1 → 30.2–31.9 GMAC/s. */
#define I2S_GEMV_WIDEN 4

TK_AVX2_INLINE void i2s_gemv_avx2(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                  int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    (void)row_bytes, (void)ldq, (void)ldo, (void)TT, (void)RR; /* one row, one token */
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m12 = _mm256_set1_epi8(12);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc1 = _mm256_setzero_si256(), acc4 = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += I2S_GEMV_WIDEN) {
        const int64_t b1 = b0 + I2S_GEMV_WIDEN < nb ? b0 + I2S_GEMV_WIDEN : nb;
        __m256i s1 = _mm256_setzero_si256(), s4 = _mm256_setzero_si256();
        for (int64_t b = b0; b < b1; b++) {
            const __m256i wb = _mm256_loadu_si256((const __m256i *)(w + b * 32));
            _mm_prefetch((const char *)(w + b * 32 + I2S_PREFETCH), _MM_HINT_T0);
            const __m256i h = _mm256_srli_epi16(wb, 4);
            const int8_t *qb = q + b * 128;
            const __m256i p4 = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_and_si256(h, m12), _mm256_loadu_si256((const __m256i *)qb)),
                _mm256_maddubs_epi16(_mm256_and_si256(wb, m12), _mm256_loadu_si256((const __m256i *)(qb + 64))));
            const __m256i p1 = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_and_si256(h, m3), _mm256_loadu_si256((const __m256i *)(qb + 32))),
                _mm256_maddubs_epi16(_mm256_and_si256(wb, m3), _mm256_loadu_si256((const __m256i *)(qb + 96))));
            s4 = _mm256_add_epi16(s4, p4);
            s1 = _mm256_add_epi16(s1, p1);
        }
        acc4 = _mm256_add_epi32(acc4, _mm256_madd_epi16(s4, ones));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(s1, ones));
    }
    out[0] = hsum_epi32_avx2(acc1) + hsum_epi32_avx2(acc4) / 4;
}

TK_AVX2_FN void tk_i2s_i8_gemm_avx2(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                    const int8_t *q, int64_t ldq, int64_t nt, int32_t *out, int64_t ldo) {
    const int64_t row_bytes = K / 4;
    const int64_t nb = K / TK_I2S_BLOCK;
    int64_t t0 = 0;
    /* Eight tokens per weight pass where there are eight (one decode per 32 maddubs instead of
     * 16: 32.5 → 33.6 GMAC/s on Zen 1, whose maddubs + add + load stream itself tops out near
     * 35.5 GMAC/s per core), then four. */
    for (; t0 + 8 <= nt; t0 += 8) {
        const int8_t *qt = q + t0 * ldq;
        int32_t *ot = out + t0 * ldo;
        I2S_ROWS(i2s_tile_avx2, 8, 1);
    }
    for (; t0 + 4 <= nt; t0 += 4) {
        const int8_t *qt = q + t0 * ldq;
        int32_t *ot = out + t0 * ldo;
        I2S_ROWS(i2s_tile_avx2, 4, 1);
    }
    const int8_t *qt = q + t0 * ldq;
    int32_t *ot = out + t0 * ldo;
    switch (nt - t0) {
    case 3: I2S_ROWS(i2s_tile_avx2, 3, 1); break;
    case 2: I2S_ROWS(i2s_tile_avx2, 2, 1); break;
    case 1: I2S_ROWS(i2s_gemv_avx2, 1, 1); break;
    default: break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * TQ2_0 / TQ1_0 × int8 (shared pieces and the range argument: avx2-tq.h)
 * ------------------------------------------------------------------------------------------- */

/* One TQ2_0 block × one token, as eight int32 lanes summing to Σ c·q: the generation path, where
 * the decode is not shared by several tokens. One 16-bit shift per 32 bytes instead of three: the
 * codes of bits 2–3 and 6–7 are masked in place as 4·c, the others as c and then scaled by 4 with
 * one shift of their int16 sum (lanes: 4·4·768 + 4·(4·768) = 24576 < 32767); every lane is then a
 * multiple of 4 and the final shift right by 2 is exact. */
TK_AVX2_INLINE __m256i tq2_dot_gemv_avx2(const tk_block_tq2_0 *blk, const int8_t *q) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    __m256i p1 = _mm256_setzero_si256(), p4 = _mm256_setzero_si256();
    TK_UNROLL for (int h = 0; h < 2; h++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * h));
        const __m256i v4 = _mm256_srli_epi16(v, 4);
        const int8_t *qh = q + 128 * h;
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(_mm256_and_si256(v, m3), _mm256_loadu_si256((const __m256i *)qh)));
        p4 = _mm256_add_epi16(p4, _mm256_maddubs_epi16(_mm256_and_si256(v, m12), _mm256_loadu_si256((const __m256i *)(qh + 32))));
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(_mm256_and_si256(v4, m3), _mm256_loadu_si256((const __m256i *)(qh + 64))));
        p4 = _mm256_add_epi16(p4, _mm256_maddubs_epi16(_mm256_and_si256(v4, m12), _mm256_loadu_si256((const __m256i *)(qh + 96))));
    }
    return _mm256_srai_epi32(_mm256_madd_epi16(_mm256_add_epi16(p4, _mm256_slli_epi16(p1, 2)), _mm256_set1_epi16(1)), 2);
}

/* One block × TT tokens: dots[t][i] (four int32 lanes summing to Σ c·q). */
TK_AVX2_INLINE void tq_block_dots_avx2(const uint8_t *blk, const int8_t *q, int64_t ldq, __m128i dots[4][TQ_CHUNK],
                                       int i, const int TT, const int tq1) {
    if (!tq1 && TT == 1) {
        dots[0][i] = half_sum_epi32(tq2_dot_gemv_avx2((const tk_block_tq2_0 *)blk, q));
        return;
    }
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i c[8];
    if (tq1) tq1_codes_avx2((const tk_block_tq1_0 *)blk, c);
    else tq2_codes_avx2((const tk_block_tq2_0 *)blk, c);
    TK_UNROLL for (int t = 0; t < TT; t++) {
        const int8_t *qb = q + t * ldq;
        __m256i p = _mm256_maddubs_epi16(c[0], _mm256_loadu_si256((const __m256i *)qb));
        TK_UNROLL for (int g = 1; g < 8; g++)
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c[g], _mm256_loadu_si256((const __m256i *)(qb + 32 * g))));
        dots[t][i] = half_sum_epi32(_mm256_madd_epi16(p, ones16));
    }
}

/* One row × TT tokens over nb blocks (TQ2_0 or TQ1_0, bsz bytes each); acc[t] carries the float
 * sum in block order. */
TK_AVX2_INLINE void tq_row_avx2(const uint8_t *row, const int64_t bsz, int64_t nb, const int8_t *q, int64_t ldq,
                                const int32_t (*bs)[TQ_KBLOCKS], float *acc, const int TT, const int tq1) {
    TQ_ROW_BODY(tq_block_dots_avx2)
}

TK_AVX2_FN void tk_tq2_i8_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                    const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tq_row_avx2, 0)
}

TK_AVX2_FN void tk_tq1_i8_gemm_avx2(const void *w, int64_t K, int64_t r0, int64_t r1,
                                    const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tq_row_avx2, 1)
}

#endif /* __x86_64__ */
