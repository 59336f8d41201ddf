/*
 * neon-ternary.c — NEON kernels for aarch64 (ARMv8.0, e.g. Raspberry Pi 4) and 32-bit armhf NEON
 * for the ternary weights (activation quantization, I2_S, TQ2_0, TQ1_0), plus their SDOT versions
 * for aarch64 CPUs with the dotprod extension (ARMv8.2+, e.g. Raspberry Pi 5). Float-weight
 * kernels: neon-float.c.
 *
 * Only the *_dotprod functions are compiled for dotprod (a per-function target attribute); the rest
 * of the file is baseline ARMv8.0 / ARMv7+NEON, so a CPU without dotprod never meets an SDOT
 * instruction (scripts/test-kernels-cross checks the object code). dispatch.c hands the dotprod
 * kernels out only when getauxval(AT_HWCAP) reports HWCAP_ASIMDDP.
 *
 * 32-bit ARM: the file needs NEON at compile time (ARMv7-A with -mfpu=neon, Debian's armhf default
 * for gcc). An ARMv6 build (e.g. Raspbian's armhf) defines no __ARM_NEON and gets the scalar path.
 */
#if defined(__aarch64__) || defined(__ARM_NEON)

#include "neon-common.h"

/* ---------------------------------------------------------------------------------------------
 * Activation quantization: bit-identical to tk_quantize_row_i8_ref.
 * aarch64: FCVTNS rounds to nearest-even. armhf (no FCVTN): adding 1.5·2^23 leaves round-half-even
 * of |v| ≤ 2^22 in the low mantissa bits; an empty asm keeps the compiler from fusing that add with
 * the multiply (NEON on ARMv7 rounds to nearest and flushes subnormals to zero, which only affects
 * products far below 0.5, so the integers are unchanged).
 * ------------------------------------------------------------------------------------------- */

float tk_quantize_row_i8_neon(const float *x, int8_t *q, int64_t n, int32_t *sum) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
#if defined(__aarch64__)
        vmax = vmaxnmq_f32(vabsq_f32(vld1q_f32(x + i)), vmax); /* ignores NaN, like the reference */
#else
        vmax = vmaxq_f32(vabsq_f32(vld1q_f32(x + i)), vmax);
#endif
    }
#if defined(__aarch64__)
    float amax = vmaxvq_f32(vmax);
#else
    float32x2_t m2 = vpmax_f32(vget_low_f32(vmax), vget_high_f32(vmax));
    m2 = vpmax_f32(m2, m2);
    float amax = vget_lane_f32(m2, 0);
#endif
    for (; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    const float s = tk_i8_scale_from_amax(amax);

    const float32x4_t vs = vdupq_n_f32(s);
    int32x4_t vsum = vdupq_n_s32(0);
    i = 0;
    for (; i + 16 <= n; i += 16) {
        int32x4_t v[4];
        TK_UNROLL for (int j = 0; j < 4; j++) {
            float32x4_t p = vmulq_f32(vld1q_f32(x + i + 4 * j), vs);
#if defined(__aarch64__)
            v[j] = vcvtnq_s32_f32(p);
#else
            __asm__("" : "+w"(p));
            p = vaddq_f32(p, vdupq_n_f32(12582912.0f));
            v[j] = vsubq_s32(vreinterpretq_s32_f32(p), vdupq_n_s32(0x4B400000));
#endif
        }
        /* For finite x the int32 values lie in [-127, 127] (|x·s| ≤ 127·(1 + 2^-24)), so their sum
         * equals the sum of the saturated bytes. */
        vsum = vaddq_s32(vsum, vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3])));
        const int16x8_t h0 = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
        const int16x8_t h1 = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
        vst1q_s8(q + i, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
    }
    int32_t acc = hsum_s32_neon(vsum);
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
 * I2_S × int8, NEON (no dotprod)
 *
 * A 32-byte block is two 16-byte halves; (half >> 6-2g) & 3 gives the codes of group g, lining up
 * with activations q[32g .. 32g+15] and q[32g+16 .. 32g+31]. Products go through vmlal_s8 into two
 * int16 accumulators per (token, row) (low and high 8 lanes), which are widened into int32 with
 * vpadal every I2S_WIDEN_NEON blocks.
 *
 * Range invariant: one product is |c·q| ≤ 3·128 = 384; per block each int16 lane of one accumulator
 * receives 8 products (≤ 3072), so after 8 blocks |acc16| ≤ 24576 < 32767.
 * ------------------------------------------------------------------------------------------- */

#define I2S_WIDEN_NEON 8

TK_NEON_INLINE void i2s_tile_neon(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                  int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[8];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[i] = vdupq_n_s32(0);
    for (int64_t b0 = 0; b0 < nb; b0 += I2S_WIDEN_NEON) {
        const int64_t b1 = b0 + I2S_WIDEN_NEON < nb ? b0 + I2S_WIDEN_NEON : nb;
        int16x8_t lo[8], hi[8];
        TK_UNROLL for (int i = 0; i < TT * RR; i++) {
            lo[i] = vdupq_n_s16(0);
            hi[i] = vdupq_n_s16(0);
        }
        for (int64_t b = b0; b < b1; b++) {
            TK_UNROLL for (int r = 0; r < RR; r++) {
                const uint8_t *wb = w + r * row_bytes + b * 32;
                const uint8x16_t w0 = vld1q_u8(wb);
                const uint8x16_t w1 = vld1q_u8(wb + 16);
                int8x16_t c[8];
                c[0] = vreinterpretq_s8_u8(vshrq_n_u8(w0, 6)); /* top pair: no mask needed */
                c[1] = vreinterpretq_s8_u8(vshrq_n_u8(w1, 6));
                c[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w0, 4), m3));
                c[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w1, 4), m3));
                c[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w0, 2), m3));
                c[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w1, 2), m3));
                c[6] = vreinterpretq_s8_u8(vandq_u8(w0, m3));
                c[7] = vreinterpretq_s8_u8(vandq_u8(w1, m3));
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const int8_t *qb = q + t * ldq + b * 128;
                    int16x8_t l = lo[t * RR + r], h = hi[t * RR + r];
                    TK_UNROLL for (int j = 0; j < 8; j++) {
                        const int8x16_t a = vld1q_s8(qb + 16 * j);
                        l = vmlal_s8(l, vget_low_s8(c[j]), vget_low_s8(a));
#if defined(__aarch64__)
                        h = vmlal_high_s8(h, c[j], a);
#else
                        h = vmlal_s8(h, vget_high_s8(c[j]), vget_high_s8(a));
#endif
                    }
                    lo[t * RR + r] = l;
                    hi[t * RR + r] = h;
                }
            }
        }
        TK_UNROLL for (int i = 0; i < TT * RR; i++) acc[i] = vpadalq_s16(vpadalq_s16(acc[i], lo[i]), hi[i]);
    }
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++) out[t * ldo + r] = hsum_s32_neon(acc[t * RR + r]);
}

/* Token tiles of 4 (2 on armhf, which has 16 q registers), row tiles of 2; one token: 4 rows. */
#if defined(__aarch64__)
#define I2S_TT_MAX 4
#else
#define I2S_TT_MAX 2
#endif

#define I2S_GEMM_BODY(TILE)                                                                        \
    const int64_t row_bytes = K / 4;                                                               \
    const int64_t nb = K / TK_I2S_BLOCK;                                                           \
    int64_t t0 = 0;                                                                                \
    for (; t0 + I2S_TT_MAX <= nt; t0 += I2S_TT_MAX) {                                              \
        const int8_t *qt = q + t0 * ldq;                                                           \
        int32_t *ot = out + t0 * ldo;                                                              \
        I2S_ROWS(TILE, I2S_TT_MAX, 2);                                                             \
    }                                                                                              \
    const int8_t *qt = q + t0 * ldq;                                                               \
    int32_t *ot = out + t0 * ldo;                                                                  \
    switch (nt - t0) {                                                                             \
    case 3: I2S_ROWS(TILE, 3, 1); break;                                                           \
    case 2: I2S_ROWS(TILE, 2, 2); break;                                                           \
    case 1: I2S_ROWS(TILE, 1, 4); break;                                                           \
    default: break;                                                                                \
    }

void tk_i2s_i8_gemm_neon(const uint8_t *w, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                         int64_t ldq, int64_t nt, int32_t *out, int64_t ldo) {
    I2S_GEMM_BODY(i2s_tile_neon)
}

/* ---------------------------------------------------------------------------------------------
 * TQ2_0 × int8, NEON. Codes of chunk c, pair n: (byte >> 2n) & 3 for activations
 * q[128c + 32n .. +31]. The per-block integer sums are exact; the activation block sums are computed
 * once per token; the float accumulation is tk_tq_step in block order, as in the reference.
 * Range: per block one int16 lane receives 16 products (≤ 6144), widened every block.
 * ------------------------------------------------------------------------------------------- */

#define TQ_KBLOCKS 512

TK_NEON_INLINE void tq_block_sums_neon(const int8_t *q, int64_t nb, int32_t *bs) {
    for (int64_t b = 0; b < nb; b++) {
        int16x8_t s = vdupq_n_s16(0);
        TK_UNROLL for (int j = 0; j < 16; j++) s = vpadalq_s8(s, vld1q_s8(q + b * TK_QK_K + 16 * j));
        bs[b] = hsum_s32_neon(vpaddlq_s16(s));
    }
}

/* Eight code vectors of one 32-byte TQ2_0 chunk, in activation order (pair n, half h → 2n + h). */
TK_NEON_INLINE void tq2_codes_neon(const uint8_t *qs, int8x16_t c[8]) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    const uint8x16_t v0 = vld1q_u8(qs);
    const uint8x16_t v1 = vld1q_u8(qs + 16);
    c[0] = vreinterpretq_s8_u8(vandq_u8(v0, m3));
    c[1] = vreinterpretq_s8_u8(vandq_u8(v1, m3));
    c[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v0, 2), m3));
    c[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v1, 2), m3));
    c[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v0, 4), m3));
    c[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v1, 4), m3));
    c[6] = vreinterpretq_s8_u8(vshrq_n_u8(v0, 6));
    c[7] = vreinterpretq_s8_u8(vshrq_n_u8(v1, 6));
}

TK_NEON_INLINE int32_t tq2_block_dot_neon(const tk_block_tq2_0 *blk, const int8_t *qb) {
    int16x8_t lo = vdupq_n_s16(0), hi = vdupq_n_s16(0);
    TK_UNROLL for (int ch = 0; ch < 2; ch++) {
        int8x16_t c[8];
        tq2_codes_neon(blk->qs + 32 * ch, c);
        TK_UNROLL for (int j = 0; j < 8; j++) {
            const int8x16_t a = vld1q_s8(qb + 128 * ch + 16 * j);
            lo = vmlal_s8(lo, vget_low_s8(c[j]), vget_low_s8(a));
            hi = vmlal_s8(hi, vget_high_s8(c[j]), vget_high_s8(a));
        }
    }
    return hsum_s32_neon(vpadalq_s16(vpaddlq_s16(lo), hi));
}

/* TQ1_0 codes (0..2) of a block as 16 vectors lined up with the activations q[16k .. 16k + 15]:
 * trit n of byte b is [v > 85] + [v > 170] for v = b·3^n mod 256 (vmulq_u8 wraps mod 256), which is
 * the reference's ((uint8_t)(b·3^n)·3) >> 8 for every byte value. qs[0..15] / qs[16..31] trit n →
 * k = 2n / 2n + 1; qs[32..47] trit n → k = 10 + n; qh (byte 4n + j = trit n of qh[j]) → k = 15. */
TK_NEON_INLINE uint8x16_t tq1_trits_neon(uint8x16_t v) {
    const uint8x16_t c1 = vcgtq_u8(v, vdupq_n_u8(85)), c2 = vcgtq_u8(v, vdupq_n_u8(170));
    return vsubq_u8(vsubq_u8(vdupq_n_u8(0), c1), c2);
}

TK_NEON_INLINE void tq1_codes_neon(const tk_block_tq1_0 *blk, int8x16_t c[16]) {
    const uint8x16_t three = vdupq_n_u8(3);
    uint8x16_t a0 = vld1q_u8(blk->qs), a1 = vld1q_u8(blk->qs + 16), b = vld1q_u8(blk->qs + 32);
    TK_UNROLL for (int n = 0; n < 5; n++) {
        c[2 * n] = vreinterpretq_s8_u8(tq1_trits_neon(a0));
        c[2 * n + 1] = vreinterpretq_s8_u8(tq1_trits_neon(a1));
        c[10 + n] = vreinterpretq_s8_u8(tq1_trits_neon(b));
        a0 = vmulq_u8(a0, three);
        a1 = vmulq_u8(a1, three);
        b = vmulq_u8(b, three);
    }
    uint32_t qh;
    memcpy(&qh, blk->qh, 4);
    static const uint8_t pow3[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    const uint8x16_t h = vmulq_u8(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(pow3));
    c[15] = vreinterpretq_s8_u8(tq1_trits_neon(h));
}

TK_NEON_INLINE int32_t tq1_block_dot_neon(const tk_block_tq1_0 *blk, const int8_t *qb) {
    int8x16_t c[16];
    tq1_codes_neon(blk, c);
    int16x8_t lo = vdupq_n_s16(0), hi = vdupq_n_s16(0);
    TK_UNROLL for (int k = 0; k < 16; k++) {
        const int8x16_t a = vld1q_s8(qb + 16 * k);
        lo = vmlal_s8(lo, vget_low_s8(c[k]), vget_low_s8(a));
        hi = vmlal_s8(hi, vget_high_s8(c[k]), vget_high_s8(a));
    }
    return hsum_s32_neon(vpadalq_s16(vpaddlq_s16(lo), hi));
}

#define TQ_GEMM_BODY(BLOCK_T, BLOCK_DOT)                                                           \
    const int64_t nb = K / TK_QK_K;                                                                \
    const BLOCK_T *blocks = (const BLOCK_T *)w;                                                    \
    int32_t bs[TQ_KBLOCKS];                                                                        \
    for (int64_t t = 0; t < nt; t++) {                                                             \
        const int8_t *qt = q + t * ldq;                                                            \
        for (int64_t kb = 0; kb < nb; kb += TQ_KBLOCKS) {                                          \
            const int64_t nbk = nb - kb < TQ_KBLOCKS ? nb - kb : TQ_KBLOCKS;                       \
            tq_block_sums_neon(qt + kb * TK_QK_K, nbk, bs);                                        \
            for (int64_t m = r0; m < r1; m++) {                                                    \
                const BLOCK_T *row = blocks + m * nb + kb;                                         \
                float acc = kb ? out[t * ldo + m] : 0.0f;                                          \
                for (int64_t b = 0; b < nbk; b++)                                                  \
                    acc = tk_tq_step(acc, tk_f16_to_f32_inline(row[b].d),                          \
                                     BLOCK_DOT(&row[b], qt + (kb + b) * TK_QK_K) - bs[b]);         \
                out[t * ldo + m] = acc;                                                            \
            }                                                                                      \
        }                                                                                          \
    }

void tk_tq2_i8_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                         int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tk_block_tq2_0, tq2_block_dot_neon)
}

void tk_tq1_i8_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                         int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    TQ_GEMM_BODY(tk_block_tq1_0, tq1_block_dot_neon)
}

#if defined(__aarch64__)

/* ---------------------------------------------------------------------------------------------
 * Dotprod (SDOT) kernels. Codes 0..3 reinterpret exactly as signed bytes, so SDOT of codes with
 * activations is the exact Σ code·q; each int32 lane gains at most 4·3·128 per instruction and the
 * totals are bounded by 3·128·K. Two accumulators per (token, row) break the SDOT latency chain.
 * ------------------------------------------------------------------------------------------- */

TK_DOTPROD_INLINE void i2s_tile_dotprod(const uint8_t *w, int64_t row_bytes, int64_t nb, const int8_t *q,
                                        int64_t ldq, int32_t *out, int64_t ldo, const int TT, const int RR) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[2][8];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) {
        acc[0][i] = vdupq_n_s32(0);
        acc[1][i] = vdupq_n_s32(0);
    }
    for (int64_t b = 0; b < nb; b++) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            const uint8_t *wb = w + r * row_bytes + b * 32;
            const uint8x16_t w0 = vld1q_u8(wb);
            const uint8x16_t w1 = vld1q_u8(wb + 16);
            int8x16_t c[8];
            c[0] = vreinterpretq_s8_u8(vshrq_n_u8(w0, 6));
            c[1] = vreinterpretq_s8_u8(vshrq_n_u8(w1, 6));
            c[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w0, 4), m3));
            c[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w1, 4), m3));
            c[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w0, 2), m3));
            c[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w1, 2), m3));
            c[6] = vreinterpretq_s8_u8(vandq_u8(w0, m3));
            c[7] = vreinterpretq_s8_u8(vandq_u8(w1, m3));
            TK_UNROLL for (int t = 0; t < TT; t++) {
                const int8_t *qb = q + t * ldq + b * 128;
                int32x4_t a0 = acc[0][t * RR + r], a1 = acc[1][t * RR + r];
                TK_UNROLL for (int j = 0; j < 8; j += 2) {
                    a0 = vdotq_s32(a0, c[j], vld1q_s8(qb + 16 * j));
                    a1 = vdotq_s32(a1, c[j + 1], vld1q_s8(qb + 16 * j + 16));
                }
                acc[0][t * RR + r] = a0;
                acc[1][t * RR + r] = a1;
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++)
        TK_UNROLL for (int r = 0; r < RR; r++)
            out[t * ldo + r] = vaddvq_s32(vaddq_s32(acc[0][t * RR + r], acc[1][t * RR + r]));
}

TK_DOTPROD_FN void tk_i2s_i8_gemm_dotprod(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, int32_t *out,
                                          int64_t ldo) {
    I2S_GEMM_BODY(i2s_tile_dotprod)
}

TK_DOTPROD_INLINE int32_t tq2_block_dot_dotprod(const tk_block_tq2_0 *blk, const int8_t *qb) {
    int32x4_t a0 = vdupq_n_s32(0), a1 = vdupq_n_s32(0);
    TK_UNROLL for (int ch = 0; ch < 2; ch++) {
        int8x16_t c[8];
        tq2_codes_neon(blk->qs + 32 * ch, c);
        TK_UNROLL for (int j = 0; j < 8; j += 2) {
            a0 = vdotq_s32(a0, c[j], vld1q_s8(qb + 128 * ch + 16 * j));
            a1 = vdotq_s32(a1, c[j + 1], vld1q_s8(qb + 128 * ch + 16 * j + 16));
        }
    }
    return vaddvq_s32(vaddq_s32(a0, a1));
}

TK_DOTPROD_FN void tk_tq2_i8_gemm_dotprod(const void *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, float *out,
                                          int64_t ldo) {
    TQ_GEMM_BODY(tk_block_tq2_0, tq2_block_dot_dotprod)
}

TK_DOTPROD_INLINE int32_t tq1_block_dot_dotprod(const tk_block_tq1_0 *blk, const int8_t *qb) {
    int8x16_t c[16];
    tq1_codes_neon(blk, c);
    int32x4_t a0 = vdupq_n_s32(0), a1 = vdupq_n_s32(0);
    TK_UNROLL for (int k = 0; k < 16; k += 2) {
        a0 = vdotq_s32(a0, c[k], vld1q_s8(qb + 16 * k));
        a1 = vdotq_s32(a1, c[k + 1], vld1q_s8(qb + 16 * k + 16));
    }
    return vaddvq_s32(vaddq_s32(a0, a1));
}

TK_DOTPROD_FN void tk_tq1_i8_gemm_dotprod(const void *w, int64_t K, int64_t r0, int64_t r1,
                                          const int8_t *q, int64_t ldq, int64_t nt, float *out,
                                          int64_t ldo) {
    TQ_GEMM_BODY(tk_block_tq1_0, tq1_block_dot_dotprod)
}

#endif /* __aarch64__ */
#endif /* __aarch64__ || __ARM_NEON */
