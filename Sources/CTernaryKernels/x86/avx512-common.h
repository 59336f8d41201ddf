/*
 * avx512-common.h — what the AVX-512 kernel files share: the target attributes (or, in the C test
 * build with -DTK_TEST_EMULATE_AVX512, the portable emulation of the intrinsics they use) and a few
 * reductions. Included only inside `#if defined(__x86_64__)`.
 *
 * The AVX-512 files use a deliberately small set of intrinsics: each one has a C definition in
 * Tests/kernels-c/avx512-emulation.h, so the kernels' lane and index arithmetic is compared with the
 * scalar reference on machines without AVX-512 (scripts/test-kernels-cross). That checks the logic,
 * not the compiler's AVX-512 code generation: only real hardware (or `bitnetd selftest` on it) does.
 * Production builds never define TK_TEST_EMULATE_AVX512.
 */
#ifndef BITNETD_AVX512_COMMON_H
#define BITNETD_AVX512_COMMON_H

#include <immintrin.h>

#include "avx2-common.h"

#if defined(TK_TEST_EMULATE_AVX512)
#include "avx512-emulation.h"
#define TK_512_FN __attribute__((target("avx2,fma,f16c")))
#define TK_512_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define TK_VNNI_FN TK_512_FN
#define TK_VNNI_INLINE TK_512_INLINE
#else
#define TK_512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define TK_512_INLINE \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define TK_VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TK_VNNI_INLINE \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

/* 16 int32 lanes → 4 lanes with the same total (the two 256-bit halves, then their 128-bit halves). */
TK_512_INLINE __m128i fold512_epi32(__m512i v) {
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Two 256-bit vectors as the low and high halves of one 512-bit vector. */
TK_512_INLINE __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

#endif /* BITNETD_AVX512_COMMON_H */
