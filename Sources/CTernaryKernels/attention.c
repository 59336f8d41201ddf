/*
 * attention.c — attention score dot products with a path-independent summation order
 * (contract in ternary_kernels.h, "Attention scores with one summation order on every path").
 */
#include "ternary_kernels.h"

#include <string.h>

#if defined(__clang__)
#pragma clang fp contract(off)
#define TK_NOCONTRACT
#elif defined(__GNUC__)
#define TK_NOCONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define TK_NOCONTRACT
#endif

TK_NOCONTRACT float tk_f16_dot8_ref(const uint16_t *k, const float *q, int64_t D) {
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < D; i++) {
        float p = tk_f16_to_f32(k[i]) * q[i];
        lane[i & 7] = lane[i & 7] + p;
    }
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

void tk_attn_scores_ref(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out) {
    for (int64_t j = 0; j < rows; j++) out[j] = tk_f16_dot8_ref(k + j * D, q, D);
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "x86/avx2-common.h"

__attribute__((target("avx2,f16c"))) static float dot8_avx2(const uint16_t *k, const float *q, int64_t D) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) {
        __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(kv, _mm256_loadu_ps(q + i)));
    }
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    for (; i < D; i++) lane[i & 7] = lane[i & 7] + tk_f16_to_f32(k[i]) * q[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

__attribute__((target("avx2,f16c"))) void tk_attn_scores_avx2(const uint16_t *k, int64_t D, int64_t rows,
                                                                   const float *q, float *out) {
    for (int64_t j = 0; j < rows; j++) out[j] = dot8_avx2(k + j * D, q, D);
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

TK_NOCONTRACT static float dot8_neon(const uint16_t *k, const float *q, int64_t D) {
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(k + i));
        float32x4_t k0 = vcvt_f32_f16(vget_low_f16(h));
        float32x4_t k1 = vcvt_high_f32_f16(h);
        lo = vaddq_f32(lo, vmulq_f32(k0, vld1q_f32(q + i)));
        hi = vaddq_f32(hi, vmulq_f32(k1, vld1q_f32(q + i + 4)));
    }
    float lane[8];
    vst1q_f32(lane, lo);
    vst1q_f32(lane + 4, hi);
    for (; i < D; i++) lane[i & 7] = lane[i & 7] + tk_f16_to_f32(k[i]) * q[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}
#endif

#if defined(__aarch64__)
void tk_attn_scores_neon(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out) {
    for (int64_t j = 0; j < rows; j++) out[j] = dot8_neon(k + j * D, q, D);
}
#endif

void tk_attn_scores(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out, tk_path path) {
    const tk_kernels *t = tk_kernels_get(path);
    (t ? t->attn_scores : tk_attn_scores_ref)(k, D, rows, q, out);
}

/* Row j of the values: the cached prefix's rows in order, then the tree path's slots. */
static inline const uint16_t *attn_value_row(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots,
                                             int64_t j) {
    return v + (j < prefix ? j : (int64_t)slots[j - prefix]) * D;
}

TK_NOCONTRACT void tk_attn_values_ref(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots,
                                           int64_t nslots, const float *p, float *out) {
    for (int64_t i = 0; i < D; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < prefix + nslots; j++) {
        const uint16_t *row = attn_value_row(v, D, prefix, slots, j);
        const float pj = p[j];
        for (int64_t i = 0; i < D; i++) out[i] = out[i] + pj * tk_f16_to_f32(row[i]);
    }
}

#if defined(__x86_64__)
TK_NOCONTRACT __attribute__((target("avx2,f16c"))) void tk_attn_values_avx2(const uint16_t *v, int64_t D, int64_t prefix,
                                                                   const int32_t *slots, int64_t nslots,
                                                                   const float *p, float *out) {
    if (D % 8 != 0) {
        tk_attn_values_ref(v, D, prefix, slots, nslots, p, out);
        return;
    }
    /* Columns are built 64 at a time in eight registers over all rows, then stored once: keeping
     * out in memory across rows made each row reload the vectors the previous row had just
     * stored, and Zen 1 does not forward a 32-byte store to a 32-byte load. Every element still
     * gets the same multiply and add, in row order. */
    const int64_t n = prefix + nslots;
    int64_t i0 = 0;
    for (; i0 + 64 <= D; i0 += 64) {
        __m256 acc[8];
        for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *row = attn_value_row(v, D, prefix, slots, j) + i0;
            const __m256 pj = _mm256_set1_ps(p[j]);
            for (int k = 0; k < 8; k++)
                acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(pj, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 8 * k)))));
        }
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(out + i0 + 8 * k, acc[k]);
    }
    for (; i0 < D; i0 += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *row = attn_value_row(v, D, prefix, slots, j) + i0;
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(p[j]), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)row))));
        }
        _mm256_storeu_ps(out + i0, acc);
    }
}
#endif

#if defined(__aarch64__)
TK_NOCONTRACT void tk_attn_values_neon(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                             const float *p, float *out) {
    if (D % 8 != 0) {
        tk_attn_values_ref(v, D, prefix, slots, nslots, p, out);
        return;
    }
    for (int64_t i = 0; i < D; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < prefix + nslots; j++) {
        const uint16_t *row = attn_value_row(v, D, prefix, slots, j);
        const float32x4_t pj = vdupq_n_f32(p[j]);
        for (int64_t i = 0; i < D; i += 8) {
            const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(row + i));
            vst1q_f32(out + i, vaddq_f32(vld1q_f32(out + i), vmulq_f32(pj, vcvt_f32_f16(vget_low_f16(h)))));
            vst1q_f32(out + i + 4, vaddq_f32(vld1q_f32(out + i + 4), vmulq_f32(pj, vcvt_high_f32_f16(h))));
        }
    }
}
#endif

void tk_attn_values(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                    const float *p, float *out, tk_path path) {
    const tk_kernels *t = tk_kernels_get(path);
    (t ? t->attn_values : tk_attn_values_ref)(v, D, prefix, slots, nslots, p, out);
}

/* Q8_0 quantization of one row (K a multiple of 32): per block d = max|x|/127 stored as f16,
 * q = round(x/d) (half away from zero), like ggml's reference quantizer. Used to build the
 * optional lower-precision copy of the LM head at load time. */
void tk_quantize_row_q8_0(const float *x, void *out, int64_t K) {
    tk_block_q8_0 *b = (tk_block_q8_0 *)out;
    for (int64_t i = 0; i < K / TK_QK8_0; i++) {
        const float *xb = x + i * TK_QK8_0;
        float amax = 0;
        for (int j = 0; j < TK_QK8_0; j++) {
            const float a = xb[j] < 0 ? -xb[j] : xb[j];
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = tk_f32_to_f16(d);
        for (int j = 0; j < TK_QK8_0; j++) {
            const float v = xb[j] * id;
            b[i].qs[j] = (int8_t)(v < 0 ? -(int)(-v + 0.5f) : (int)(v + 0.5f));
        }
    }
}

/* The LM-head copy in split Q8_0 layout: the row's Q8_0 blocks with values and scales apart. */
void tk_quantize_row_q8s(const float *x, int8_t *wq, float *wd, int64_t K) {
    for (int64_t b = 0; b < K / TK_QK8_0; b++) {
        tk_block_q8_0 blk;
        tk_quantize_row_q8_0(x + b * TK_QK8_0, &blk, TK_QK8_0);
        wd[b] = tk_f16_to_f32(blk.d);
        for (int j = 0; j < TK_QK8_0; j++) wq[b * TK_QK8_0 + j] = blk.qs[j];
    }
}

/* ---------------------------------------------------------------------------------------------
 * Split-Q8_0 weights × Q8_0-quantized activations: the optional Q8_0 LM-head copy.
 * out[t·ldo + m] = Σ_b (dw_b·dx_b)·(Σ_j qw_j·qx_j). Integer block sums are exact on every path; the
 * float sum is path-specific (the head copy is an approximation anyway).
 * ------------------------------------------------------------------------------------------- */

void tk_q8s_q8_0_gemm_ref(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                          int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK8_0;
    for (int64_t t = 0; t < nt; t++) {
        const tk_block_q8_0 *x = (const tk_block_q8_0 *)xq + t * nb;
        for (int64_t m = r0; m < r1; m++) {
            const int8_t *row = wq + m * K;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int j = 0; j < TK_QK8_0; j++) s += (int32_t)row[b * TK_QK8_0 + j] * (int32_t)x[b].qs[j];
                acc += wd[m * nb + b] * tk_f16_to_f32(x[b].d) * (float)s;
            }
            out[t * ldo + m] = acc;
        }
    }
}

#if defined(__x86_64__)
/* |qw| ≤ 127 (the quantizer never writes −128) and |qx| ≤ 127, so each maddubs pair sum is at most
 * 2·127·127 = 32,258 and cannot saturate int16. Eight blocks at a time: their eight int32 vectors
 * are reduced to one vector of eight block sums, converted and scaled with one multiply-add. */
#define Q8S_PREFETCH 2048

__attribute__((target("avx2,fma,f16c"))) static inline __m256i q8s_block_avx2(const int8_t *w, const int8_t *x) {
    const __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)),
                             _mm256_set1_epi16(1));
}

/* Eight blocks' exact sums; one sequential stream, prefetched Q8S_PREFETCH bytes ahead (as the F16
 * head). */
__attribute__((target("avx2,fma,f16c"))) static inline __m256i q8s_sums8_avx2(const int8_t *w, const int8_t *x,
                                                                             const int32_t *xbias) {
    (void)xbias; /* the sign trick needs no bias */
    for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(w + Q8S_PREFETCH + 64 * l), _MM_HINT_T0);
    __m256i p[8];
    for (int i = 0; i < 8; i++) p[i] = q8s_block_avx2(w + i * TK_QK8_0, x + i * TK_QK8_0);
    return hsum8_epi32_x8(p);
}

__attribute__((target("avx2,fma,f16c"))) void tk_q8s_q8_0_gemm_avx2(const int8_t *wq, const float *wd, int64_t K,
                                                                    int64_t r0, int64_t r1, const void *xq, int64_t nt,
                                                                    float *out, int64_t ldo) {
    TK_Q8S_GEMM_BODY(q8s_sums8_avx2)
}
#endif

#if defined(__aarch64__)
/* The activation block scales are converted once per token (as in the AVX2 kernel), not once per
 * row and block. */
void tk_q8s_q8_0_gemm_neon(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                          int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK8_0;
    if (nb > 512) {
        tk_q8s_q8_0_gemm_ref(wq, wd, K, r0, r1, xq, nt, out, ldo);
        return;
    }
    float dx[512];
    for (int64_t t = 0; t < nt; t++) {
        const tk_block_q8_0 *x = (const tk_block_q8_0 *)xq + t * nb;
        for (int64_t b = 0; b < nb; b++) dx[b] = tk_f16_to_f32(x[b].d);
        for (int64_t m = r0; m < r1; m++) {
            const int8_t *row = wq + m * K;
            const float *d = wd + m * nb;
            float32x4_t acc = vdupq_n_f32(0);
            for (int64_t b = 0; b < nb; b += 4) {
                float sums[4] = {0, 0, 0, 0}, sc[4] = {0, 0, 0, 0};
                for (int i = 0; i < 4 && b + i < nb; i++) {
                    const int8_t *w = row + (b + i) * TK_QK8_0;
                    const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
                    const int8x16_t x0 = vld1q_s8(x[b + i].qs), x1 = vld1q_s8(x[b + i].qs + 16);
                    int16x8_t p = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
                    p = vmlal_s8(p, vget_high_s8(w0), vget_high_s8(x0));
                    int16x8_t p2 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
                    p2 = vmlal_s8(p2, vget_high_s8(w1), vget_high_s8(x1));
                    sums[i] = (float)vaddvq_s32(vpadalq_s16(vpaddlq_s16(p), p2));
                    sc[i] = d[b + i] * dx[b + i];
                }
                acc = vfmaq_f32(acc, vld1q_f32(sc), vld1q_f32(sums));
            }
            out[t * ldo + m] = vaddvq_f32(acc);
        }
    }
}
#endif

void tk_q8s_q8_0_gemm(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                      int64_t nt, float *out, int64_t ldo, tk_path path) {
    const tk_kernels *t = tk_kernels_get(path);
    (t ? t->q8s_gemm : tk_q8s_q8_0_gemm_ref)(wq, wd, K, r0, r1, xq, nt, out, ldo);
}
