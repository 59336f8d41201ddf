/*
 * neon-float.c — aarch64 NEON kernels for float weights × f32 activations: F16, BF16, Q8_0, Q6_K
 * (32-bit ARM uses the scalar references for these).
 */
#if defined(__aarch64__)

#include "neon-common.h"

/* ---------------------------------------------------------------------------------------------
 * F16 / BF16 × f32 (aarch64): FCVTL converts halves; FMA; same tiling as the x86 kernels.
 * ------------------------------------------------------------------------------------------- */

TK_NEON_INLINE void load8_half_neon(const uint16_t *p, const int bf16, float32x4_t *lo, float32x4_t *hi) {
    const uint16x8_t h = vld1q_u16(p);
    if (bf16) {
        *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    } else {
        const float16x8_t f = vreinterpretq_f16_u16(h);
        *lo = vcvt_f32_f16(vget_low_f16(f));
        *hi = vcvt_high_f32_f16(f);
    }
}

TK_NEON_INLINE void half_tile_neon(const uint16_t *w, int64_t K, const float *x, int64_t ldx,
                                   float *out, int64_t ldo, const int TT, const int RR, const int bf16) {
    float32x4_t acc[2][16];
    TK_UNROLL for (int i = 0; i < TT * RR; i++) {
        acc[0][i] = vdupq_n_f32(0.0f);
        acc[1][i] = vdupq_n_f32(0.0f);
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            float32x4_t wl, wh;
            load8_half_neon(w + r * K + k, bf16, &wl, &wh);
            TK_UNROLL for (int t = 0; t < TT; t++) {
                const float *xk = x + t * ldx + k;
                acc[0][t * RR + r] = vfmaq_f32(acc[0][t * RR + r], wl, vld1q_f32(xk));
                acc[1][t * RR + r] = vfmaq_f32(acc[1][t * RR + r], wh, vld1q_f32(xk + 4));
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) {
        TK_UNROLL for (int r = 0; r < RR; r++) {
            float s = vaddvq_f32(vaddq_f32(acc[0][t * RR + r], acc[1][t * RR + r]));
            for (int64_t kk = k; kk < K; kk++)
                s += (bf16 ? tk_bf16_to_f32(w[r * K + kk]) : tk_f16_to_f32(w[r * K + kk])) * x[t * ldx + kk];
            out[t * ldo + r] = s;
        }
    }
}

#define HALF_ROWS(TT, RR, BF16)                                                                      \
    do {                                                                                             \
        int64_t m_ = r0;                                                                             \
        for (; m_ + (RR) <= r1; m_ += (RR)) half_tile_neon(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, RR, BF16); \
        for (; m_ < r1; m_++) half_tile_neon(wh + m_ * K, K, xt, ldx, ot + m_, ldo, TT, 1, BF16);    \
    } while (0)

TK_NEON_INLINE void half_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x,
                                   int64_t ldx, int64_t nt, float *out, int64_t ldo, const int bf16) {
    const uint16_t *wh = (const uint16_t *)w;
    int64_t t0 = 0;
    for (; t0 + 4 <= nt; t0 += 4) {
        const float *xt = x + t0 * ldx;
        float *ot = out + t0 * ldo;
        HALF_ROWS(4, 2, bf16);
    }
    const float *xt = x + t0 * ldx;
    float *ot = out + t0 * ldo;
    switch (nt - t0) {
    case 3: HALF_ROWS(3, 2, bf16); break;
    case 2: HALF_ROWS(2, 2, bf16); break;
    case 1: HALF_ROWS(1, 4, bf16); break;
    default: break;
    }
}

void tk_f16_f32_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x,
                          int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    half_gemm_neon(w, K, r0, r1, x, ldx, nt, out, ldo, 0);
}

void tk_bf16_f32_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x,
                           int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    half_gemm_neon(w, K, r0, r1, x, ldx, nt, out, ldo, 1);
}

/* Q6_K × f32 (aarch64): each 16-value sub-block is one code vector (ql nibble | qh bit pair << 4,
 * minus 32, as in the reference decode); its dot is scaled by d·scale once. One row × up to 4
 * tokens. Results differ from the reference only by summation order. */
TK_NEON_INLINE void q6_k_row_neon(const tk_block_q6_k *row, int64_t nb, const float *x, int64_t ldx,
                                  float *out, int64_t ldo, const int TT) {
    const uint8x16_t m4 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
    /* Two accumulators per token: the sub-block sums alternate between them, so consecutive
     * multiply-adds into one accumulator are not a single dependency chain (FMA latency 4 cycles on
     * Cortex-A76, 7 on A72: one chain would cap the kernel at 16 values per latency). llvm-mca 16
     * (neoverse-n1): 113 → 104 cycles per 128 values for one token. */
    float32x4_t acc[4][2];
    TK_UNROLL for (int t = 0; t < TT; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const tk_block_q6_k *blk = &row[b];
        /* the 16 sub-block scales d·sc, converted with four vector operations per block */
        const float32x4_t d = vdupq_n_f32(tk_f16_to_f32(blk->d));
        const int8x16_t sc8 = vld1q_s8(blk->scales);
        const int16x8_t sc16[2] = {vmovl_s8(vget_low_s8(sc8)), vmovl_s8(vget_high_s8(sc8))};
        float ds[16];
        TK_UNROLL for (int i = 0; i < 2; i++) {
            vst1q_f32(ds + 8 * i, vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(sc16[i])))));
            vst1q_f32(ds + 8 * i + 4, vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_high_s16(sc16[i])))));
        }
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = blk->ql + 64 * half, *qh = blk->qh + 32 * half;
            TK_UNROLL for (int j = 0; j < 4; j++) {
                TK_UNROLL for (int h = 0; h < 2; h++) {
                    const uint8x16_t l = vld1q_u8(ql + 32 * (j & 1) + 16 * h);
                    const uint8x16_t hb = vld1q_u8(qh + 16 * h);
                    const uint8x16_t lo4 = j < 2 ? vandq_u8(l, m4) : vshrq_n_u8(l, 4);
                    uint8x16_t hi2;
                    switch (j) {
                    case 0: hi2 = vandq_u8(hb, m3); break;
                    case 1: hi2 = vandq_u8(vshrq_n_u8(hb, 2), m3); break;
                    case 2: hi2 = vandq_u8(vshrq_n_u8(hb, 4), m3); break;
                    default: hi2 = vshrq_n_u8(hb, 6); break;
                    }
                    const int8x16_t c = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo4, vshlq_n_u8(hi2, 4))), vdupq_n_s8(32));
                    const int16x8_t c0 = vmovl_s8(vget_low_s8(c)), c1 = vmovl_s8(vget_high_s8(c));
                    const float32x4_t f0 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(c0)));
                    const float32x4_t f1 = vcvtq_f32_s32(vmovl_s16(vget_high_s16(c0)));
                    const float32x4_t f2 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(c1)));
                    const float32x4_t f3 = vcvtq_f32_s32(vmovl_s16(vget_high_s16(c1)));
                    const float s = ds[8 * half + 2 * j + h];
                    TK_UNROLL for (int t = 0; t < TT; t++) {
                        const float *xb = x + t * ldx + b * TK_QK_K + 128 * half + 32 * j + 16 * h;
                        float32x4_t p = vmulq_f32(f0, vld1q_f32(xb));
                        p = vfmaq_f32(p, f1, vld1q_f32(xb + 4));
                        p = vfmaq_f32(p, f2, vld1q_f32(xb + 8));
                        p = vfmaq_f32(p, f3, vld1q_f32(xb + 12));
                        acc[t][h] = vfmaq_n_f32(acc[t][h], p, s);
                    }
                }
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) out[t * ldo] = vaddvq_f32(vaddq_f32(acc[t][0], acc[t][1]));
}

void tk_q6_k_f32_gemm_neon(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x,
                           int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    TK_FLOAT_ROWS_GEMM_BODY(tk_block_q6_k, TK_QK_K, q6_k_row_neon)
}

#endif /* __aarch64__ */
