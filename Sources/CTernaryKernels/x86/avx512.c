/*
 * avx512.c — AVX-512 kernels (F + BW + VL, with and without VNNI).
 *
 * Per-function target attributes only; dispatch.c hands these out when the CPU reports avx512f,
 * avx512bw and avx512vl (and avx512vnni for the *_avx512vnni kernel). The operations the AVX-512
 * table does not list here reuse the AVX2 kernels.
 *
 * The file uses a deliberately small set of intrinsics. The C test build can compile it with
 * -DTK_TEST_EMULATE_AVX512, which maps exactly those intrinsics onto portable C
 * (Tests/kernels-c/avx512-emulation.h), so the index arithmetic is checked against the reference on
 * machines without AVX-512; production builds never define it.
 */
#if defined(__x86_64__)

#include <immintrin.h>

#include "../kernels-internal.h"

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

#define TK_UNROLL _Pragma("GCC unroll 16")

/* ---------------------------------------------------------------------------------------------
 * I2_S × int8
 *
 * One 32-byte block is broadcast into both halves of a zmm register; a per-half variable shift
 * (6 | 4, then 2 | 0) and the mask 3 give two 64-lane code vectors whose lanes line up with the
 * block's activations q[0..63] and q[64..127], so both activation loads are plain contiguous
 * 64-byte loads.
 * ------------------------------------------------------------------------------------------- */

static const uint16_t i2s_shift_01[32] = {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                          4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};
static const uint16_t i2s_shift_23[32] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

#define I2S_ROWS(TILE, TT, RR)                                                                     \
    do {                                                                                           \
        int64_t m_ = r0;                                                                           \
        for (; m_ + (RR) <= r1; m_ += (RR))                                                        \
            TILE(w + m_ * row_bytes, row_bytes, nb, qt, ldq, ot + m_, ldo, TT, RR);                \
        for (; m_ < r1; m_++) TILE(w + m_ * row_bytes, row_bytes, nb, qt, ldq, ot + m_, ldo, TT, 1); \
    } while (0)

/* Tiles of 4 tokens × 2 rows; the remaining 1–3 tokens as 3×2, 2×2 and, for token generation, one
 * row at a time (a single sequential weight stream with a software prefetch, which streamed best
 * in the AVX2 measurements, avx2-ternary.c). */
#define I2S_GEMM_BODY(TILE)                                                                        \
    const int64_t row_bytes = K / 4;                                                               \
    const int64_t nb = K / TK_I2S_BLOCK;                                                           \
    int64_t t0 = 0;                                                                                \
    for (; t0 + 4 <= nt; t0 += 4) {                                                                \
        const int8_t *qt = q + t0 * ldq;                                                           \
        int32_t *ot = out + t0 * ldo;                                                              \
        I2S_ROWS(TILE, 4, 2);                                                                      \
    }                                                                                              \
    const int8_t *qt = q + t0 * ldq;                                                               \
    int32_t *ot = out + t0 * ldo;                                                                  \
    switch (nt - t0) {                                                                             \
    case 3: I2S_ROWS(TILE, 3, 2); break;                                                           \
    case 2: I2S_ROWS(TILE, 2, 2); break;                                                           \
    case 1: I2S_ROWS(TILE, 1, 1); break;                                                           \
    default: break;                                                                                \
    }

#define I2S_PREFETCH 2048

/* VNNI: vpdpbusd multiplies the unsigned codes by the signed activations and adds groups of four
 * products straight into int32 lanes (non-saturating), so no int16 stage exists; each lane gains at
 * most 4·3·128 per instruction and the totals are bounded by 3·128·K. The two halves of a block
 * go to two accumulators, so a one-row tile has two independent vpdpbusd chains. */
TK_VNNI_INLINE void i2s_tile_vnni(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                  int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_loadu_si512((const void *)i2s_shift_01);
    const __m512i sh23 = _mm512_loadu_si512((const void *)i2s_shift_23);
    __m512i acc0[8], acc1[8];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) {
        acc0[i] = _mm512_setzero_si512();
        acc1[i] = _mm512_setzero_si512();
    }
    for (int64_t b = 0; b < nb; b++) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const uint8_t *wb = w + r * row_bytes + b * 32;
            const __m512i wv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wb));
            _mm_prefetch((const char *)(wb + I2S_PREFETCH), _MM_HINT_T0);
            const __m512i c01 = _mm512_and_si512(_mm512_srlv_epi16(wv, sh01), m3);
            const __m512i c23 = _mm512_and_si512(_mm512_srlv_epi16(wv, sh23), m3);
            TK_UNROLL for (int t = 0; t < TT; t++) {
                const int8_t *qb = q + t * ldq + b * 128;
                acc0[t * RR + r] = _mm512_dpbusd_epi32(acc0[t * RR + r], c01, _mm512_loadu_si512((const void *)qb));
                acc1[t * RR + r] = _mm512_dpbusd_epi32(acc1[t * RR + r], c23, _mm512_loadu_si512((const void *)(qb + 64)));
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++)
            out[t * ldo + r] = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0[t * RR + r], acc1[t * RR + r]));
}

TK_VNNI_FN void tk_i2s_i8_gemm_avx512vnni(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, int32_t *out,
                                          int64_t ldo) {
    I2S_GEMM_BODY(i2s_tile_vnni)
}

/* AVX-512BW without VNNI. Range invariant: a maddubs lane is c_a·q_a + c_b·q_b with c ≤ 3,
 * |q| ≤ 128, so |lane| ≤ 768 (no saturation); one block adds two lanes (≤ 1536) into int16, and the
 * int16 accumulators are widened to int32 every I2S_WIDEN = 8 blocks: |acc16| ≤ 12288 < 32767. */
#define I2S_WIDEN 8

TK_512_INLINE void i2s_tile_bw(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                               int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i ones = _mm512_set1_epi16(1);
    const __m512i sh01 = _mm512_loadu_si512((const void *)i2s_shift_01);
    const __m512i sh23 = _mm512_loadu_si512((const void *)i2s_shift_23);
    __m512i acc[8];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[i] = _mm512_setzero_si512();
    for (int64_t b0 = 0; b0 < nb; b0 += I2S_WIDEN) {
        const int64_t b1 = b0 + I2S_WIDEN < nb ? b0 + I2S_WIDEN : nb;
        __m512i a16[8];
        TK_UNROLL for (int i = 0; i < TT * RR; i++) a16[i] = _mm512_setzero_si512();
        for (int64_t b = b0; b < b1; b++) {
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const uint8_t *wb = w + r * row_bytes + b * 32;
                const __m512i wv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wb));
                _mm_prefetch((const char *)(wb + I2S_PREFETCH), _MM_HINT_T0);
                const __m512i c01 = _mm512_and_si512(_mm512_srlv_epi16(wv, sh01), m3);
                const __m512i c23 = _mm512_and_si512(_mm512_srlv_epi16(wv, sh23), m3);
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const int8_t *qb = q + t * ldq + b * 128;
                    const __m512i p0 = _mm512_maddubs_epi16(c01, _mm512_loadu_si512((const void *)qb));
                    const __m512i p1 = _mm512_maddubs_epi16(c23, _mm512_loadu_si512((const void *)(qb + 64)));
                    a16[t * RR + r] = _mm512_add_epi16(a16[t * RR + r], _mm512_add_epi16(p0, p1));
                }
            }
        }
        TK_UNROLL for (int i = 0; i < TT * RR; i++)
            acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(a16[i], ones));
    }
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++) out[t * ldo + r] = _mm512_reduce_add_epi32(acc[t * RR + r]);
}

TK_512_FN void tk_i2s_i8_gemm_avx512(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                     const int8_t *q, int64_t ldq, int64_t nt, int32_t *out, int64_t ldo) {
    I2S_GEMM_BODY(i2s_tile_bw)
}

/* ---------------------------------------------------------------------------------------------
 * F16 × f32: 16 halves per load (vcvtph2ps zmm), FMA. nt == 1: one row at a time, four
 * accumulators, software prefetch F16_PREFETCH halves ahead; nt > 1: tiles of 4 tokens × 2 rows
 * (two accumulator sets) reuse each converted weight vector.
 * ------------------------------------------------------------------------------------------- */

#define F16_PREFETCH 2048

TK_512_INLINE void f16_tile_avx512(const uint16_t *w, int64_t K, const float *x, int64_t ldx,
                                   float *out, int64_t ldo, const int TT, const int RR, const int U) {
    __m512 acc[4][8];
    TK_UNROLL for (int u = 0; u < U; u++)
        TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[u][i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 * U <= K; k += 16 * U) {
        TK_UNROLL for (int r = 0; r < RR; r++)
            _mm_prefetch((const char *)(w + r * K + k + F16_PREFETCH), _MM_HINT_T0);
        TK_UNROLL for (int u = 0; u < U; u++) {
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const __m512 wv =
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + r * K + k + 16 * u)));
                TK_UNROLL for (int t = 0; t < TT; t++)
                    acc[u][t * RR + r] =
                        _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * ldx + k + 16 * u), acc[u][t * RR + r]);
            }
        }
    }
    for (; k + 16 <= K; k += 16) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + r * K + k)));
            TK_UNROLL for (int t = 0; t < TT; t++)
                acc[0][t * RR + r] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * ldx + k), acc[0][t * RR + r]);
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            __m512 a = acc[0][t * RR + r];
            TK_UNROLL for (int u = 1; u < U; u++) a = _mm512_add_ps(a, acc[u][t * RR + r]);
            float s = _mm512_reduce_add_ps(a);
            for (int64_t kk = k; kk < K; kk++) s += tk_f16_to_f32(w[r * K + kk]) * x[t * ldx + kk];
            out[t * ldo + r] = s;
        }
    }
}

#define F16_ROWS(TT, RR, U)                                                                          \
    do {                                                                                             \
        int64_t m_ = r0;                                                                             \
        for (; m_ + (RR) <= r1; m_ += (RR)) f16_tile_avx512(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, RR, U); \
        for (; m_ < r1; m_++) f16_tile_avx512(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, 1, U);      \
    } while (0)

TK_512_FN void tk_f16_f32_gemm_avx512(const void *w, int64_t K, int64_t r0, int64_t r1,
                                      const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    const uint16_t *wh = (const uint16_t *)w;
    int64_t t0 = 0;
    for (; t0 + 4 <= nt; t0 += 4) {
        const float *xt = x + t0 * ldx;
        float *ot = out + t0 * ldo;
        F16_ROWS(4, 2, 2);
    }
    const float *xt = x + t0 * ldx;
    float *ot = out + t0 * ldo;
    switch (nt - t0) {
    case 3: F16_ROWS(3, 2, 2); break;
    case 2: F16_ROWS(2, 2, 2); break;
    case 1: F16_ROWS(1, 1, 4); break;
    default: break;
    }
}

#endif /* __x86_64__ */
