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

#endif /* BITNETD_AVX2_COMMON_H */
