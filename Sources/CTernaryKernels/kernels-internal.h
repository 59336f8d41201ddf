/*
 * kernels-internal.h — declarations shared by the kernel target's .c files (not public API).
 *
 * Each ISA file defines its kernels only when compiled for that architecture; dispatch.c refers to
 * them under the same #if guards. Every function here has the signature of the traits-table slot it
 * fills (ternary_kernels.h) and the same contract as the matching *_ref function.
 */
#ifndef BITNETD_KERNELS_INTERNAL_H
#define BITNETD_KERNELS_INTERNAL_H

#include <string.h>

#include "ternary_kernels.h"

#define TK_I2S_DECL(name) \
    void name(const uint8_t *w, int64_t K, int64_t r0, int64_t r1, const int8_t *q, int64_t ldq, \
              int64_t nt, int32_t *out, int64_t ldo)
#define TK_TQ_DECL(name) \
    void name(const void *w, int64_t K, int64_t r0, int64_t r1, const int8_t *q, int64_t ldq, \
              int64_t nt, float *out, int64_t ldo)
#define TK_F_DECL(name) \
    void name(const void *w, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t ldx, \
              int64_t nt, float *out, int64_t ldo)
#define TK_QUANT_DECL(name) float name(const float *x, int8_t *q, int64_t n, int32_t *sum)

/* Activation scale shared by every quantizer: amax in double, floored at 1e-5, s = (float)(127/amax).
 * `amax_f` is max|x| computed in float (exact: max of absolute values never rounds). */
static inline float tk_i8_scale_from_amax(float amax_f) {
    double amax = (double)amax_f;
    if (amax < 1e-5) amax = 1e-5;
    return (float)(127.0 / amax);
}

/* f16 → f32, exact for every value (NaN payloads kept); inline for the per-block scales of the
 * TQ kernels (tk_f16_to_f32 is the exported form). */
static inline float tk_f16_to_f32_inline(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else {
            /* Subnormal: m·2^-24. Normalise so the leading 1 becomes the implicit bit. */
            int shift = 0;
            while ((m & 0x400u) == 0) {
                m <<= 1;
                shift++;
            }
            m &= 0x3ffu;
            bits = sign | ((uint32_t)(113 - shift) << 23) | (m << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13); /* inf, or NaN with its payload */
    } else {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* One step of the TQ block sum, identical on every path: acc + d·isum with a single rounding (fused
 * multiply-add). Fixing the fusion here makes the result independent of -ffp-contract and of whether
 * the compiler (gcc, clang on aarch64) would have contracted a separate multiply and add. */
static inline float tk_tq_step(float acc, float d, int32_t isum) {
    return __builtin_fmaf(d, (float)isum, acc);
}

/* I2_S gemm bodies (every ISA): rows [r0, r1) of w (row_bytes each, nb blocks) for TT tokens at
 * qt/ot, in tiles of RR rows, then single rows, through TILE(w, row_bytes, nb, q, ldq, out, ldo, TT, RR). */
#define I2S_ROWS(TILE, TT, RR)                                                                     \
    do {                                                                                           \
        int64_t m_ = r0;                                                                           \
        for (; m_ + (RR) <= r1; m_ += (RR))                                                        \
            TILE(w + m_ * row_bytes, row_bytes, nb, qt, ldq, ot + m_, ldo, TT, RR);                \
        for (; m_ < r1; m_++) TILE(w + m_ * row_bytes, row_bytes, nb, qt, ldq, ot + m_, ldo, TT, 1); \
    } while (0)

/* Body of a block-quantized × f32 gemm built from a ROW(row, nb, x, ldx, out, ldo, TT) kernel that
 * handles one row for TT ≤ 4 tokens: tokens in groups of four, every row of [r0, r1) per group. */
#define TK_FLOAT_ROWS_GEMM_BODY(BLOCK_T, BLOCK_ELEMS, ROW)                                            \
    const int64_t nb = K / (BLOCK_ELEMS);                                                            \
    const BLOCK_T *blocks = (const BLOCK_T *)w;                                                      \
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {                                                         \
        const int64_t tn = nt - t0 < 4 ? nt - t0 : 4;                                                \
        const float *xt = x + t0 * ldx;                                                              \
        float *ot = out + t0 * ldo;                                                                  \
        for (int64_t m = r0; m < r1; m++) {                                                          \
            switch (tn) {                                                                            \
            case 4: ROW(blocks + m * nb, nb, xt, ldx, ot + m, ldo, 4); break;                        \
            case 3: ROW(blocks + m * nb, nb, xt, ldx, ot + m, ldo, 3); break;                        \
            case 2: ROW(blocks + m * nb, nb, xt, ldx, ot + m, ldo, 2); break;                        \
            default: ROW(blocks + m * nb, nb, xt, ldx, ot + m, ldo, 1); break;                       \
            }                                                                                        \
        }                                                                                            \
    }

/* Body of the x86 Q6_K × f32 gemms (avx2-float.c, avx512-float.c): the activations of up to four
 * tokens are copied into the kernel's lane order by PERMUTE(x, xp, n) — Q6K_XP floats on the stack,
 * all of K for one token when K ≤ 8192, slices for more — and ROW(row, nb, xp, ldp, sums, TT) adds one
 * row's blocks × TT tokens into sums[t]; slices after the first are added to out[]. */
#define Q6K_XP 8192
#define TK_Q6K_GEMM_BODY(PERMUTE, ROW)                                                               \
    const int64_t nb = K / TK_QK_K;                                                                  \
    const tk_block_q6_k *blocks = (const tk_block_q6_k *)w;                                          \
    float xp[Q6K_XP];                                                                                \
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {                                                         \
        const int tn = nt - t0 < 4 ? (int)(nt - t0) : 4;                                             \
        const int64_t slice_blocks = Q6K_XP / tn / TK_QK_K, ldp = slice_blocks * TK_QK_K;            \
        for (int64_t kb = 0; kb < nb; kb += slice_blocks) {                                          \
            const int64_t nbk = nb - kb < slice_blocks ? nb - kb : slice_blocks;                     \
            for (int t = 0; t < tn; t++) PERMUTE(x + (t0 + t) * ldx + kb * TK_QK_K, xp + t * ldp, nbk * TK_QK_K); \
            for (int64_t m = r0; m < r1; m++) {                                                      \
                float sums[4];                                                                       \
                const tk_block_q6_k *row = blocks + m * nb + kb;                                     \
                switch (tn) {                                                                        \
                case 4: ROW(row, nbk, xp, ldp, sums, 4); break;                                      \
                case 3: ROW(row, nbk, xp, ldp, sums, 3); break;                                      \
                case 2: ROW(row, nbk, xp, ldp, sums, 2); break;                                      \
                default: ROW(row, nbk, xp, ldp, sums, 1); break;                                     \
                }                                                                                    \
                for (int t = 0; t < tn; t++) {                                                       \
                    float *o = out + (t0 + t) * ldo + m;                                             \
                    *o = kb ? *o + sums[t] : sums[t];                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

#if defined(__x86_64__)
TK_QUANT_DECL(tk_quantize_row_i8_avx2);
TK_I2S_DECL(tk_i2s_i8_gemm_avx2);
TK_TQ_DECL(tk_tq2_i8_gemm_avx2);
TK_TQ_DECL(tk_tq1_i8_gemm_avx2);
TK_F_DECL(tk_f16_f32_gemm_avx2);
TK_F_DECL(tk_bf16_f32_gemm_avx2);
TK_F_DECL(tk_q8_0_f32_gemm_avx2);
TK_F_DECL(tk_q6_k_f32_gemm_avx2);

TK_I2S_DECL(tk_i2s_i8_gemm_avx512);      /* avx512bw (maddubs) */
TK_I2S_DECL(tk_i2s_i8_gemm_avx512vnni);  /* avx512vnni (vpdpbusd) */
TK_TQ_DECL(tk_tq2_i8_gemm_avx512vnni);
TK_TQ_DECL(tk_tq1_i8_gemm_avx512vnni);
TK_F_DECL(tk_f16_f32_gemm_avx512);
TK_F_DECL(tk_q6_k_f32_gemm_avx512);
#endif

#if defined(__aarch64__) || defined(__ARM_NEON)
TK_QUANT_DECL(tk_quantize_row_i8_neon);
TK_I2S_DECL(tk_i2s_i8_gemm_neon);
TK_TQ_DECL(tk_tq2_i8_gemm_neon);
TK_TQ_DECL(tk_tq1_i8_gemm_neon);
#if defined(__aarch64__)
TK_F_DECL(tk_f16_f32_gemm_neon);
TK_F_DECL(tk_bf16_f32_gemm_neon);
TK_F_DECL(tk_q6_k_f32_gemm_neon);
TK_I2S_DECL(tk_i2s_i8_gemm_dotprod);
TK_TQ_DECL(tk_tq2_i8_gemm_dotprod);
TK_TQ_DECL(tk_tq1_i8_gemm_dotprod);
#endif
#endif

/* Attention and the Q8_0 head copy, per path (attention.c). */
void tk_attn_scores_ref(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out);
void tk_attn_values_ref(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                        const float *p, float *out);
#if defined(__x86_64__)
void tk_attn_scores_avx2(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out);
void tk_attn_values_avx2(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                         const float *p, float *out);
void tk_q8s_q8_0_gemm_avx2(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                           int64_t nt, float *out, int64_t ldo);
void tk_q8s_q8_0_gemm_avx512vnni(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1,
                                 const void *xq, int64_t nt, float *out, int64_t ldo);
#endif
#if defined(__aarch64__)
void tk_attn_scores_neon(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out);
void tk_attn_values_neon(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                         const float *p, float *out);
void tk_q8s_q8_0_gemm_neon(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                           int64_t nt, float *out, int64_t ldo);
#endif

#endif /* BITNETD_KERNELS_INTERNAL_H */
