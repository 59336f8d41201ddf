/*
 * avx2-common.h — what the AVX2 kernel files share: the target attributes and horizontal sums.
 * Included only inside `#if defined(__x86_64__)`.
 */
#ifndef BITNETD_AVX2_COMMON_H
#define BITNETD_AVX2_COMMON_H

#include <immintrin.h>
#include <string.h>
#include <math.h>

#include "../kernels-internal.h"

#define TK_AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define TK_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define TK_UNROLL _Pragma("GCC unroll 16")

TK_AVX2_INLINE int32_t hsum_epi32_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

TK_AVX2_INLINE float hsum_ps_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight 8-lane int32 vectors → one vector of their eight horizontal sums, in order. */
TK_AVX2_INLINE __m256i hsum8_epi32_x8(const __m256i p[8]) {
    const __m256i s01 = _mm256_hadd_epi32(p[0], p[1]), s23 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i s45 = _mm256_hadd_epi32(p[4], p[5]), s67 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                            _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

/* Body of the x86 split-Q8_0 × Q8_0 gemms (the Q8_0 LM-head copy: tk_q8s_q8_0_gemm_avx2 in
 * attention.c, tk_q8s_q8_0_gemm_avx512vnni): per token, the activation blocks' scales, values and
 * 128·Σx (for kernels that bias the weights) are copied out once; per row, eight blocks at a time,
 * SUMS8(w, x, xbias) gives their eight exact integer block sums, scaled and accumulated with one
 * multiply-add; the last nb mod 8 blocks are summed in plain C. More than 512 blocks: the reference. */
#define TK_Q8S_GEMM_BODY(SUMS8)                                                                     \
    const int64_t nb = K / TK_QK8_0;                                                               \
    if (nb > 512) {                                                                                \
        tk_q8s_q8_0_gemm_ref(wq, wd, K, r0, r1, xq, nt, out, ldo);                                 \
        return;                                                                                    \
    }                                                                                              \
    float dx[512];                                                                                 \
    int32_t xbias[512];                                                                            \
    int8_t xs[512 * TK_QK8_0];                                                                     \
    for (int64_t t = 0; t < nt; t++) {                                                             \
        const tk_block_q8_0 *x = (const tk_block_q8_0 *)xq + t * nb;                               \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            dx[b] = tk_f16_to_f32_inline(x[b].d);                                                  \
            memcpy(xs + b * TK_QK8_0, x[b].qs, TK_QK8_0);                                          \
            int32_t s = 0;                                                                         \
            for (int j = 0; j < TK_QK8_0; j++) s += x[b].qs[j];                                    \
            xbias[b] = 128 * s;                                                                    \
        }                                                                                          \
        for (int64_t m = r0; m < r1; m++) {                                                        \
            const int8_t *row = wq + m * K;                                                        \
            const float *d = wd + m * nb;                                                          \
            _mm_prefetch((const char *)(d + nb), _MM_HINT_T0);                                     \
            __m256 acc = _mm256_setzero_ps();                                                      \
            int64_t b = 0;                                                                         \
            for (; b + 8 <= nb; b += 8) {                                                          \
                const __m256i sums = SUMS8(row + b * TK_QK8_0, xs + b * TK_QK8_0, xbias + b);      \
                const __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(d + b), _mm256_loadu_ps(dx + b));  \
                acc = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(sums), acc);                          \
            }                                                                                      \
            float r = hsum_ps_avx2(acc);                                                           \
            for (; b < nb; b++) {                                                                  \
                int32_t s = 0;                                                                     \
                for (int j = 0; j < TK_QK8_0; j++)                                                 \
                    s += (int32_t)row[b * TK_QK8_0 + j] * (int32_t)xs[b * TK_QK8_0 + j];           \
                r += d[b] * dx[b] * (float)s;                                                      \
            }                                                                                      \
            out[t * ldo + m] = r;                                                                  \
        }                                                                                          \
    }

#endif /* BITNETD_AVX2_COMMON_H */
