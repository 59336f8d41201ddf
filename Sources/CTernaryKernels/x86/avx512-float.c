/*
 * avx512-float.c — AVX-512 kernels for the float-weight LM heads and embeddings: F16 and Q6_K.
 * (BF16 and Q8_0 file heads use the AVX2 kernels.) Per-function target attributes; dispatch.c
 * hands these out when the CPU reports avx512f, avx512bw and avx512vl. Emulation for the C tests:
 * avx512-common.h.
 */
#if defined(__x86_64__)

#include "avx512-common.h"

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

/* ---------------------------------------------------------------------------------------------
 * Q6_K × f32 (the Q6_K token embedding used as LM head by many BitNet GGUFs)
 *
 * The AVX2 kernel's scheme (avx2-float.c) at 512 bits. A Q6_K block is 256 values in two halves of
 * 128: ql[64h..64h+63] holds the low nibbles of values 128h + 0..63 (bits 0–3) and 128h + 64..127
 * (bits 4–7), qh[32h..32h+31] their two high bits (bit pair n of byte m → value 128h + 32n + m). So
 * one 64-byte ql load gives, masked, the low nibbles of 64 consecutive values, and one 32-byte qh
 * load broadcast into both halves of a zmm gives their high bits with one variable shift per half,
 * already in place as 16·hi:
 *   values +0..63:   (qh << 4 | qh << 2) & 0x30 per half (bit pairs 0 and 1)
 *   values +64..127: (qh >> 0 | qh >> 2) & 0x30 per half (bit pairs 2 and 3)
 * (16-bit shifts leak bits across the bytes of a lane; the mask drops every leaked bit.)
 * The codes u (0..63) of 64 values become floats with in-lane unpacks only: bytes to words, words
 * interleaved with 0x4B00 (the dword 0x4B0000uu is the float 2^23 + u), minus 2^23 + 32. The 128-bit
 * lane k of each of the four float vectors then holds four values of sub-block k of the group, so
 * one vector of four scales d·sc (each repeated four times) serves the 64 values, and the
 * activations are copied once per call into the matching order. The first version (vpmovsxbd +
 * vcvtdq2ps per 16 values, one scale broadcast each) ran at 3.1 values per cycle under llvm-mca
 * (-mcpu=icelake-server), slower than the AVX2 kernel (4.2); this one at 6.5 for one token. Results differ
 * from the reference only by summation order (and, for K beyond one slice, by slice sums parked in
 * out[]).
 * ------------------------------------------------------------------------------------------- */

static const uint16_t q6k_shl_lo[32] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const uint16_t q6k_shr_hi[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
/* scale index of each float lane within a 64-value group: lane k·4 + i → sub-block k */
static const int32_t q6k_scale_lane[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
#define Q6K_PREFETCH 1024

/* x[0..n) (n a multiple of 64) in the unpack order: within each 64-value group, vector q (0..3)
 * lane k (0..3) holds values 16k + 4q .. 16k + 4q + 3. */
static void q6_k_permute_x_512(const float *x, float *xp, int64_t n) {
    for (int64_t i = 0; i < n; i += 64)
        for (int q = 0; q < 4; q++)
            for (int k = 0; k < 4; k++) memcpy(xp + i + 16 * q + 4 * k, x + i + 16 * k + 4 * q, 4 * sizeof(float));
}

TK_512_INLINE void q6_k_row_avx512(const tk_block_q6_k *row, int64_t nb, const float *xp, int64_t ldp,
                                   float sums[4], const int TT) {
    __m512 acc[4][2];
    TK_UNROLL for (int t = 0; t < TT; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30), zero = _mm512_setzero_si512();
    const __m512i magic = _mm512_set1_epi16(0x4b00);
    const __m512 bias = _mm512_set1_ps(8388608.0f + 32.0f);
    const __m512i shl = _mm512_loadu_si512((const void *)q6k_shl_lo);
    const __m512i shr = _mm512_loadu_si512((const void *)q6k_shr_hi);
    const __m512i lane = _mm512_loadu_si512((const void *)q6k_scale_lane);
    for (int64_t b = 0; b < nb; b++) {
        const tk_block_q6_k *blk = &row[b];
        const char *pf = (const char *)blk + Q6K_PREFETCH;
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 128, _MM_HINT_T0);
        _mm_prefetch(pf + 192, _MM_HINT_T0);
        /* the 16 sub-block scales d·sc with three vector operations */
        const __m512 scl = _mm512_mul_ps(_mm512_set1_ps(tk_f16_to_f32_inline(blk->d)),
                                         _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)blk->scales))));
        TK_UNROLL for (int half = 0; half < 2; half++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(blk->ql + 64 * half));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk->qh + 32 * half)));
            __m512i u[2];
            u[0] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30));
            u[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                   _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30));
            TK_UNROLL for (int g = 0; g < 2; g++) {
                /* values 128·half + 64·g + 0..63: sub-blocks 8·half + 4·g + 0..3, one per 128-bit lane */
                const int sb = 8 * half + 4 * g;
                const __m512i wl = _mm512_unpacklo_epi8(u[g], zero), wh = _mm512_unpackhi_epi8(u[g], zero);
                __m512 f[4];
                f[0] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(wl, magic)), bias);
                f[1] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(wl, magic)), bias);
                f[2] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(wh, magic)), bias);
                f[3] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(wh, magic)), bias);
                const __m512 s = _mm512_permutexvar_ps(_mm512_add_epi32(lane, _mm512_set1_epi32(sb)), scl);
                TK_UNROLL for (int t = 0; t < TT; t++) {
                    const float *xb = xp + t * ldp + b * TK_QK_K + 128 * half + 64 * g;
                    __m512 p = _mm512_mul_ps(f[0], _mm512_loadu_ps(xb));
                    p = _mm512_fmadd_ps(f[1], _mm512_loadu_ps(xb + 16), p);
                    p = _mm512_fmadd_ps(f[2], _mm512_loadu_ps(xb + 32), p);
                    p = _mm512_fmadd_ps(f[3], _mm512_loadu_ps(xb + 48), p);
                    acc[t][g] = _mm512_fmadd_ps(s, p, acc[t][g]);
                }
            }
        }
    }
    TK_UNROLL for (int t = 0; t < TT; t++) sums[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]));
}

TK_512_FN void tk_q6_k_f32_gemm_avx512(const void *w, int64_t K, int64_t r0, int64_t r1,
                                       const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo) {
    TK_Q6K_GEMM_BODY(q6_k_permute_x_512, q6_k_row_avx512)
}

#endif /* __x86_64__ */
