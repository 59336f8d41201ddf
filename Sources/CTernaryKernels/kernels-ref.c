/*
 * kernels-ref.c — scalar reference implementations (spec bitnet-gguf.md §3.2, §3.3, §3.5).
 *
 * These define the results every SIMD path must reproduce: exactly for the integer kernels and the
 * quantizer, to float rounding for the float kernels. They are also the scalar path's kernels, so
 * they are written plainly but without gratuitous slowness.
 */
#include <math.h>
#include <string.h>

#include "kernels-internal.h"

/* ---------------------------------------------------------------------------------------------
 * f16 / bf16
 * ------------------------------------------------------------------------------------------- */

float tk_f16_to_f32(uint16_t h) { return tk_f16_to_f32_inline(h); }

uint16_t tk_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        /* NaN: quiet it and keep the top payload bits (what vcvtps2ph and fcvt do). */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    /* 65520 = 0x477ff000 is the tie between 65504 (odd mantissa) and 2^16: rounds to inf. */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        /* Below 2^-14: f16 subnormal (or zero). Result = round(|f|·2^24) in units of 2^-24. */
        uint32_t e = ax >> 23;
        if (e < 102) return (uint16_t)sign; /* |f| < 2^-25: rounds to zero (2^-25 itself ties to 0) */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r); /* r == 0x400 is the smallest normal: encoding is right */
    }
    uint32_t r = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
    uint32_t h = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry may bump the exponent */
    return (uint16_t)(sign | h);
}

float tk_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void tk_round_f16_inplace(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = tk_f16_to_f32(tk_f32_to_f16(x[i]));
}

/* ---------------------------------------------------------------------------------------------
 * Activation quantization (§3.3)
 * ------------------------------------------------------------------------------------------- */

float tk_quantize_row_i8_ref(const float *x, int8_t *q, int64_t n, int32_t *sum) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    const float s = tk_i8_scale_from_amax(amax);
    int32_t acc = 0;
    for (int64_t i = 0; i < n; i++) {
        /* rintf rounds half to even in the default rounding mode, and being a separate call the
         * product x·s is rounded to float first (no contraction can fuse it into anything). */
        float v = rintf(x[i] * s);
        int32_t qi = v >= 127.0f ? 127 : v <= -128.0f ? -128 : (int32_t)v;
        q[i] = (int8_t)qi;
        acc += qi;
    }
    *sum = acc;
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * I2_S × int8 (§3.2)
 * ------------------------------------------------------------------------------------------- */

void tk_i2s_i8_gemm_ref(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, int32_t *out, int64_t ldo) {
    const int64_t row_bytes = K / 4;
    for (int64_t t = 0; t < nt; t++) {
        const int8_t *qt = q + t * ldq;
        for (int64_t m = r0; m < r1; m++) {
            const uint8_t *wr = w + m * row_bytes;
            int32_t acc = 0;
            for (int64_t b = 0; b < K / TK_I2S_BLOCK; b++) {
                const uint8_t *wb = wr + b * TK_I2S_BLOCK_BYTES;
                const int8_t *qb = qt + b * TK_I2S_BLOCK;
                for (int j = 0; j < 32; j++) {
                    const int32_t byte = wb[j];
                    acc += ((byte >> 6) & 3) * qb[j] + ((byte >> 4) & 3) * qb[32 + j] +
                           ((byte >> 2) & 3) * qb[64 + j] + (byte & 3) * qb[96 + j];
                }
            }
            out[t * ldo + m] = acc;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * TQ2_0 / TQ1_0 × int8 (§3.5)
 * ------------------------------------------------------------------------------------------- */

/* Trit n (0..4) of a TQ1_0 byte: ((uint8_t)(b·3^n) · 3) >> 8. */
static inline int tq1_trit(uint8_t b, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t v = (uint8_t)(b * pow3[n]);
    return (int)(((uint16_t)v * 3) >> 8);
}

/* Σ code·q over one TQ2_0 block (codes 0..2, raw). */
static int32_t tq2_block_dot(const tk_block_tq2_0 *blk, const int8_t *qb) {
    int32_t acc = 0;
    for (int c = 0; c < 2; c++) {
        for (int m = 0; m < 32; m++) {
            const int32_t byte = blk->qs[32 * c + m];
            const int8_t *qc = qb + 128 * c + m;
            acc += (byte & 3) * qc[0] + ((byte >> 2) & 3) * qc[32] + ((byte >> 4) & 3) * qc[64] +
                   ((byte >> 6) & 3) * qc[96];
        }
    }
    return acc;
}

static int32_t tq1_block_dot(const tk_block_tq1_0 *blk, const int8_t *qb) {
    int32_t acc = 0;
    for (int m = 0; m < 32; m++)
        for (int n = 0; n < 5; n++) acc += tq1_trit(blk->qs[m], n) * qb[m + 32 * n];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 5; n++) acc += tq1_trit(blk->qs[32 + m], n) * qb[160 + m + 16 * n];
    for (int j = 0; j < 4; j++)
        for (int n = 0; n < 4; n++) acc += tq1_trit(blk->qh[j], n) * qb[240 + j + 4 * n];
    return acc;
}

static int32_t block_sum_i8(const int8_t *qb) {
    int32_t s = 0;
    for (int k = 0; k < TK_QK_K; k++) s += qb[k];
    return s;
}

void tk_tq2_i8_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK_K;
    const tk_block_tq2_0 *blocks = (const tk_block_tq2_0 *)w;
    for (int64_t t = 0; t < nt; t++) {
        const int8_t *qt = q + t * ldq;
        for (int64_t m = r0; m < r1; m++) {
            const tk_block_tq2_0 *row = blocks + m * nb;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *qb = qt + b * TK_QK_K;
                const int32_t isum = tq2_block_dot(&row[b], qb) - block_sum_i8(qb);
                acc = tk_tq_step(acc, tk_f16_to_f32(row[b].d), isum);
            }
            out[t * ldo + m] = acc;
        }
    }
}

void tk_tq1_i8_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK_K;
    const tk_block_tq1_0 *blocks = (const tk_block_tq1_0 *)w;
    for (int64_t t = 0; t < nt; t++) {
        const int8_t *qt = q + t * ldq;
        for (int64_t m = r0; m < r1; m++) {
            const tk_block_tq1_0 *row = blocks + m * nb;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *qb = qt + b * TK_QK_K;
                const int32_t isum = tq1_block_dot(&row[b], qb) - block_sum_i8(qb);
                acc = tk_tq_step(acc, tk_f16_to_f32(row[b].d), isum);
            }
            out[t * ldo + m] = acc;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Row dequantization
 * ------------------------------------------------------------------------------------------- */

void tk_dequant_row_f16(const void *row, float *y, int64_t K) {
    const uint16_t *h = (const uint16_t *)row;
    for (int64_t k = 0; k < K; k++) y[k] = tk_f16_to_f32(h[k]);
}

void tk_dequant_row_bf16(const void *row, float *y, int64_t K) {
    const uint16_t *h = (const uint16_t *)row;
    for (int64_t k = 0; k < K; k++) y[k] = tk_bf16_to_f32(h[k]);
}

void tk_dequant_row_q8_0(const void *row, float *y, int64_t K) {
    const tk_block_q8_0 *blk = (const tk_block_q8_0 *)row;
    for (int64_t b = 0; b < K / TK_QK8_0; b++) {
        const float d = tk_f16_to_f32(blk[b].d);
        for (int k = 0; k < TK_QK8_0; k++) y[b * TK_QK8_0 + k] = d * (float)blk[b].qs[k];
    }
}

/* Q6_K (ggml block_q6_K): each half of the block (128 values) uses 64 bytes of ql, 32 of qh and 8
 * sub-scales. Within a half, for l in 0..31 (sub-scale index l/16):
 *   v[l]      = (ql[l]      & 15) | ((qh[l] >> 0) & 3) << 4    sub-scale sc[l/16 + 0]
 *   v[l + 32] = (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4    sub-scale sc[l/16 + 2]
 *   v[l + 64] = (ql[l]      >> 4) | ((qh[l] >> 4) & 3) << 4    sub-scale sc[l/16 + 4]
 *   v[l + 96] = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4    sub-scale sc[l/16 + 6]
 * and the value is d · sc · (v − 32). */
static void dequant_block_q6_k(const tk_block_q6_k *blk, float *y) {
    const float d = tk_f16_to_f32(blk->d);
    const uint8_t *ql = blk->ql;
    const uint8_t *qh = blk->qh;
    const int8_t *sc = blk->scales;
    for (int half = 0; half < 2; half++) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int v1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int v2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int v3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int v4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)(sc[is + 0] * v1);
            y[l + 32] = d * (float)(sc[is + 2] * v2);
            y[l + 64] = d * (float)(sc[is + 4] * v3);
            y[l + 96] = d * (float)(sc[is + 6] * v4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void tk_dequant_row_q6_k(const void *row, float *y, int64_t K) {
    const tk_block_q6_k *blk = (const tk_block_q6_k *)row;
    for (int64_t b = 0; b < K / TK_QK_K; b++) dequant_block_q6_k(&blk[b], y + b * TK_QK_K);
}

void tk_dequant_row_tq2_0(const void *row, float *y, int64_t K) {
    const tk_block_tq2_0 *blk = (const tk_block_tq2_0 *)row;
    for (int64_t b = 0; b < K / TK_QK_K; b++) {
        const float d = tk_f16_to_f32(blk[b].d);
        float *yb = y + b * TK_QK_K;
        for (int c = 0; c < 2; c++)
            for (int m = 0; m < 32; m++)
                for (int n = 0; n < 4; n++) {
                    const int t = (blk[b].qs[32 * c + m] >> (2 * n)) & 3;
                    yb[128 * c + 32 * n + m] = (float)(t - 1) * d;
                }
    }
}

void tk_dequant_row_tq1_0(const void *row, float *y, int64_t K) {
    const tk_block_tq1_0 *blk = (const tk_block_tq1_0 *)row;
    for (int64_t b = 0; b < K / TK_QK_K; b++) {
        const float d = tk_f16_to_f32(blk[b].d);
        float *yb = y + b * TK_QK_K;
        for (int m = 0; m < 32; m++)
            for (int n = 0; n < 5; n++) yb[m + 32 * n] = (float)(tq1_trit(blk[b].qs[m], n) - 1) * d;
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 5; n++)
                yb[160 + m + 16 * n] = (float)(tq1_trit(blk[b].qs[32 + m], n) - 1) * d;
        for (int j = 0; j < 4; j++)
            for (int n = 0; n < 4; n++)
                yb[240 + j + 4 * n] = (float)(tq1_trit(blk[b].qh[j], n) - 1) * d;
    }
}

void tk_dequant_row_i2s(const void *row, float alpha, float *y, int64_t K) {
    const uint8_t *w = (const uint8_t *)row;
    for (int64_t b = 0; b < K / TK_I2S_BLOCK; b++) {
        const uint8_t *wb = w + b * TK_I2S_BLOCK_BYTES;
        float *yb = y + b * TK_I2S_BLOCK;
        for (int j = 0; j < 32; j++)
            for (int g = 0; g < 4; g++)
                yb[32 * g + j] = (float)(((wb[j] >> (6 - 2 * g)) & 3) - 1) * alpha;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Float-weight gemms (F16, BF16, Q8_0, Q6_K × f32)
 * ------------------------------------------------------------------------------------------- */

void tk_f16_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    const uint16_t *wh = (const uint16_t *)w;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t m = r0; m < r1; m++) {
            const uint16_t *wr = wh + m * K;
            const float *xt = x + t * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += tk_f16_to_f32(wr[k]) * xt[k];
            out[t * ldo + m] = acc;
        }
}

void tk_bf16_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    const uint16_t *wh = (const uint16_t *)w;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t m = r0; m < r1; m++) {
            const uint16_t *wr = wh + m * K;
            const float *xt = x + t * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += tk_bf16_to_f32(wr[k]) * xt[k];
            out[t * ldo + m] = acc;
        }
}

void tk_q8_0_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK8_0;
    const tk_block_q8_0 *blocks = (const tk_block_q8_0 *)w;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t m = r0; m < r1; m++) {
            const tk_block_q8_0 *row = blocks + m * nb;
            const float *xt = x + t * ldx;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                float s = 0.0f;
                for (int k = 0; k < TK_QK8_0; k++) s += (float)row[b].qs[k] * xt[b * TK_QK8_0 + k];
                acc += tk_f16_to_f32(row[b].d) * s;
            }
            out[t * ldo + m] = acc;
        }
}

void tk_q6_k_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    const int64_t nb = K / TK_QK_K;
    const tk_block_q6_k *blocks = (const tk_block_q6_k *)w;
    float tmp[TK_QK_K];
    for (int64_t m = r0; m < r1; m++) {
        for (int64_t t = 0; t < nt; t++) out[t * ldo + m] = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            dequant_block_q6_k(&blocks[m * nb + b], tmp);
            for (int64_t t = 0; t < nt; t++) {
                const float *xb = x + t * ldx + b * TK_QK_K;
                float s = 0.0f;
                for (int k = 0; k < TK_QK_K; k++) s += tmp[k] * xb[k];
                out[t * ldo + m] += s;
            }
        }
    }
}
