/*
 * avx512-ternary.c — AVX-512 kernels for the ternary weights (F + BW + VL, with and without VNNI):
 * I2_S (both), TQ2_0 and TQ1_0 (VNNI) and the Q8_0 LM-head copy (VNNI). Float-weight kernels:
 * avx512-float.c.
 *
 * Per-function target attributes only; dispatch.c hands these out when the CPU reports avx512f,
 * avx512bw and avx512vl (and avx512vnni for the *_avx512vnni kernels). The operations the AVX-512
 * tables do not list here reuse the AVX2 kernels. Emulation for the C tests: avx512-common.h.
 */
#if defined(__x86_64__)

#include "avx512-common.h"
#include "avx2-tq.h"

/* ---------------------------------------------------------------------------------------------
 * I2_S × int8
 *
 * One 32-byte block is broadcast into both halves of a zmm register, so its codes come out as two
 * 64-lane vectors lined up with the block's activations q[0..63] and q[64..127] and both activation
 * loads are plain contiguous 64-byte loads. The AVX-512BW kernel shifts per half (6 | 4, then 2 | 0)
 * and masks with 3; the VNNI kernel masks the codes in place (below).
 * ------------------------------------------------------------------------------------------- */

static const uint16_t i2s_shift_01[32] = {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                          4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};
static const uint16_t i2s_shift_23[32] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

/* AVX-512BW kernel: tiles of 4 tokens × 2 rows; the remaining 1–3 tokens as 3×2, 2×2 and, for
 * token generation, one row at a time (a single sequential weight stream with a software prefetch,
 * which streamed best in the AVX2 measurements, avx2-ternary.c). */
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

/* VNNI. vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of four products
 * straight into int32 lanes (no int16 stage, no saturation), so the codes need not be small: they
 * are masked in place instead of shifted down. With M = 0xC0 in the low half and 0x30 in the high
 * half of a zmm, and the block's 32 bytes broadcast into both halves,
 *   hi = w & M         lanes 0–31: 64·c(j),    lanes 32–63: 16·c(32 + j)   ↔ q[0..63]
 *   lo = (w << 4) & M  lanes 0–31: 64·c(64 + j), lanes 32–63: 16·c(96 + j) ↔ q[64..127]
 * (the 16-bit shift leaks bits across bytes; M drops them). Both vectors scale their low-half lanes
 * by 64 and their high-half lanes by 16, so one accumulator serves both and one arithmetic shift
 * per int32 lane (6 | 4) at the end gives the exact sum — three decode operations per row and block
 * instead of four, and half the accumulators, which lets a tile hold 6 tokens × 3 rows (18 zmm
 * accumulators, 6 code vectors, 2 activation vectors: 36 vpdpbusd per 9 decode operations; each
 * activation load serves three rows, and six tokens' activations of the widest K, 6 × 6912 bytes,
 * stay within a 48 KiB L1). llvm-mca 16 (-mcpu=icelake-server, L1 hits) puts the block loop at
 * 102 int8 MACs per cycle against 66 for the previous 4 × 2 tile with two accumulator sets, and
 * 97 / 93 for 8 × 2 / 4 × 4 tiles (the vpdpbusd issue limit is 128); not yet measured on hardware.
 * Range: a byte product is ≤ 192·128 in magnitude, a lane gains ≤ 2·4·192·128 = 196,608 per block,
 * so the scaled lanes stay below 2^31 for K < 1.39 M (the largest K of any BitNet model is 14,336).
 * Small tiles (fewer than 8 accumulators) keep hi and lo in two accumulator sets, so the one-token
 * gemv has two independent vpdpbusd chains, as before. */
static const uint8_t i2s_mask_c0[64] = {
    0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,
    0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30};
static const int32_t i2s_unscale[16] = {6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4};

TK_VNNI_INLINE void i2s_tile_vnni(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                  int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const int split = TT * RR < 8;
    const __m512i mask = _mm512_loadu_si512((const void *)i2s_mask_c0);
    __m512i acc0[18], acc1[18];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) {
        acc0[i] = _mm512_setzero_si512();
        if (split) acc1[i] = _mm512_setzero_si512();
    }
    for (int64_t b = 0; b < nb; b++) {
        __m512i hi[4], lo[4];
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const uint8_t *wb = w + r * row_bytes + b * 32;
            const __m512i wv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wb));
            _mm_prefetch((const char *)(wb + I2S_PREFETCH), _MM_HINT_T0);
            hi[r] = _mm512_and_si512(wv, mask);
            lo[r] = _mm512_and_si512(_mm512_slli_epi16(wv, 4), mask);
        }
        TK_UNROLL for (int t = 0; t < TT; t++) {
            const int8_t *qb = q + t * ldq + b * 128;
            const __m512i q0 = _mm512_loadu_si512((const void *)qb);
            const __m512i q1 = _mm512_loadu_si512((const void *)(qb + 64));
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const int i = t * RR + r;
                if (split) {
                    acc0[i] = _mm512_dpbusd_epi32(acc0[i], hi[r], q0);
                    acc1[i] = _mm512_dpbusd_epi32(acc1[i], lo[r], q1);
                } else {
                    acc0[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc0[i], hi[r], q0), lo[r], q1);
                }
            }
        }
    }
    const __m512i unscale = _mm512_loadu_si512((const void *)i2s_unscale);
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const int i = t * RR + r;
            __m512i a = _mm512_srav_epi32(acc0[i], unscale);
            if (split) a = _mm512_add_epi32(a, _mm512_srav_epi32(acc1[i], unscale));
            out[t * ldo + r] = _mm512_reduce_add_epi32(a);
        }
}

TK_VNNI_FN void tk_i2s_i8_gemm_avx512vnni(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, int32_t *out,
                                          int64_t ldo) {
    const int64_t row_bytes = K / 4;
    const int64_t nb = K / TK_I2S_BLOCK;
    int64_t t0 = 0;
    for (; t0 + 6 <= nt; t0 += 6) {
        const int8_t *qt = q + t0 * ldq;
        int32_t *ot = out + t0 * ldo;
        I2S_ROWS(i2s_tile_vnni, 6, 3);
    }
    const int8_t *qt = q + t0 * ldq;
    int32_t *ot = out + t0 * ldo;
    switch (nt - t0) {
    case 5: I2S_ROWS(i2s_tile_vnni, 5, 3); break;
    case 4: I2S_ROWS(i2s_tile_vnni, 4, 3); break;
    case 3: I2S_ROWS(i2s_tile_vnni, 3, 3); break;
    case 2: I2S_ROWS(i2s_tile_vnni, 2, 3); break;
    case 1: I2S_ROWS(i2s_tile_vnni, 1, 1); break;
    default: break;
    }
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
 * TQ2_0 / TQ1_0 × int8 (VNNI)
 *
 * The structure of the AVX2 kernels (avx2-tq.h: chunks of 8 blocks, per-block integer sums, block
 * sums of the activations subtracted, float accumulation in block order exactly as the reference),
 * with each block's codes as four 64-lane vectors lined up with its four 64-byte activation groups
 * and vpdpbusd summing straight into int32 lanes.
 *
 * TQ2_0 (value 128h + 32n + m = bit pair n of qs[32h + m]): the 32 bytes of half h broadcast into
 * both halves of a zmm and shifted by (0 | 2) and (4 | 6) per half, masked with 3.
 * TQ1_0: the AVX2 decode (avx2-tq.h, byte adds and compares, exact for every byte value) joined
 * two 256-bit vectors at a time.
 * ------------------------------------------------------------------------------------------- */

static const uint16_t tq2_shift_01[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const uint16_t tq2_shift_23[32] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                          6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6};

TK_VNNI_INLINE void tq2_codes_512(const tk_block_tq2_0 *blk, __m512i c[4]) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_loadu_si512((const void *)tq2_shift_01);
    const __m512i sh23 = _mm512_loadu_si512((const void *)tq2_shift_23);
    TK_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk->qs + 32 * h)));
        c[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(v, sh01), m3);
        c[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(v, sh23), m3);
    }
}

TK_VNNI_INLINE void tq1_codes_512(const tk_block_tq1_0 *blk, __m512i c[4]) {
    __m256i c8[8];
    tq1_codes_avx2(blk, c8);
    TK_UNROLL for (int g = 0; g < 4; g++) c[g] = join256(c8[2 * g], c8[2 * g + 1]);
}

/* One block × TT tokens: dots[t][i] (four int32 lanes summing to Σ c·q). */
TK_VNNI_INLINE void tq_block_dots_vnni(const uint8_t *blk, const int8_t *q, int64_t ldq, __m128i dots[4][TQ_CHUNK],
                                       int i, const int TT, const int tq1) {
    __m512i c[4];
    if (tq1) tq1_codes_512((const tk_block_tq1_0 *)blk, c);
    else tq2_codes_512((const tk_block_tq2_0 *)blk, c);
    TK_UNROLL for (int t = 0; t < TT; t++) {
        const int8_t *qb = q + t * ldq;
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[0], _mm512_loadu_si512((const void *)qb));
        TK_UNROLL for (int g = 1; g < 4; g++)
            s = _mm512_dpbusd_epi32(s, c[g], _mm512_loadu_si512((const void *)(qb + 64 * g)));
        dots[t][i] = fold512_epi32(s);
    }
}

TK_VNNI_INLINE void tq_row_vnni(const uint8_t *row, const int64_t bsz, int64_t nb, const int8_t *q, int64_t ldq,
                                const int32_t (*bs)[TQ_KBLOCKS], float *acc, const int TT, const int tq1) {
    TQ_ROW_BODY(tq_block_dots_vnni)
}

TK_VNNI_FN void tk_tq2_i8_gemm_avx512vnni(const void *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tq_row_vnni, 0)
}

TK_VNNI_FN void tk_tq1_i8_gemm_avx512vnni(const void *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tq_row_vnni, 1)
}

/* ---------------------------------------------------------------------------------------------
 * Split-Q8_0 weights × Q8_0 activations (the Q8_0 LM-head copy, attention.c), VNNI
 *
 * vpdpbusd needs one unsigned operand: the weights are biased by 128 (w ^ 0x80 = w + 128 as an
 * unsigned byte, 1..255 since the quantizer never writes −128), and 128·Σx of each activation block,
 * computed once per token, is subtracted: Σ(w + 128)·x − 128·Σx = Σ w·x exactly (a lane gains at
 * most 4·255·127 per instruction). One zmm holds two blocks; eight blocks' int32 vectors are
 * reduced to their eight exact block sums (the AVX2 kernel's reduction). The loop around it is the
 * AVX2 kernel's too (TK_Q8S_GEMM_BODY, avx2-common.h).
 * ------------------------------------------------------------------------------------------- */

#define Q8S_PREFETCH 2048

/* Eight blocks' exact sums: four zmm of two blocks each, the bias removed. */
TK_VNNI_INLINE __m256i q8s_sums8_vnni(const int8_t *w, const int8_t *x, const int32_t *xbias) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m256i p[8];
    TK_UNROLL for (int i = 0; i < 4; i++) {
        const int8_t *wb = w + 2 * i * TK_QK8_0;
        _mm_prefetch((const char *)(wb + Q8S_PREFETCH), _MM_HINT_T0);
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                              _mm512_xor_si512(_mm512_loadu_si512((const void *)wb), bias),
                                              _mm512_loadu_si512((const void *)(x + 2 * i * TK_QK8_0)));
        p[2 * i] = _mm512_castsi512_si256(s);
        p[2 * i + 1] = _mm512_extracti64x4_epi64(s, 1);
    }
    return _mm256_sub_epi32(hsum8_epi32_x8(p), _mm256_loadu_si256((const __m256i *)xbias));
}

TK_VNNI_FN void tk_q8s_q8_0_gemm_avx512vnni(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1,
                                            const void *xq, int64_t nt, float *out, int64_t ldo) {
    TK_Q8S_GEMM_BODY(q8s_sums8_vnni)
}

#endif /* __x86_64__ */
