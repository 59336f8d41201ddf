/*
 * avx2-tq.h — the TQ2_0 / TQ1_0 pieces the AVX2 and AVX-512 kernels share: activation block sums,
 * code decoding (256-bit), per-block scales, the block-order float accumulation of a chunk and the
 * outer loop over K slices. Included only inside `#if defined(__x86_64__)`, after avx2-common.h.
 */
#ifndef BITNETD_AVX2_TQ_H
#define BITNETD_AVX2_TQ_H

#include "avx2-common.h"

/* ---------------------------------------------------------------------------------------------
 * TQ2_0 / TQ1_0 × int8
 *
 * Per block: 2 chunks × 4 code vectors ((bytes >> 2n) & 3, the reverse of I2_S) against the eight
 * 32-byte activation groups. Eight maddubs lanes (≤ 8·768 = 6144) fit int16; madd widens each block
 * to eight int32 lanes. The integer block sums of up to 8 blocks are reduced together, the
 * activation block sums subtracted, and the float accumulation then runs in block order exactly as
 * in the reference (tk_tq_step).
 * ------------------------------------------------------------------------------------------- */

/* The two 128-bit halves of v added: four int32 lanes. The per-block sums are parked in memory as
 * 16-byte values because Zen 1 cannot forward a 32-byte store to a 32-byte load (it stores the two
 * halves separately), which stalled every block when they were kept as 256-bit vectors. */
TK_AVX2_INLINE __m128i half_sum_epi32(__m256i v) {
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* Eight 4-lane int32 vectors → one vector of their eight horizontal sums, in order. */
TK_AVX2_INLINE __m256i hsum8_epi32_x4(const __m128i v[8]) {
    const __m128i s0123 = _mm_hadd_epi32(_mm_hadd_epi32(v[0], v[1]), _mm_hadd_epi32(v[2], v[3]));
    const __m128i s4567 = _mm_hadd_epi32(_mm_hadd_epi32(v[4], v[5]), _mm_hadd_epi32(v[6], v[7]));
    return _mm256_set_m128i(s4567, s0123);
}

#define TQ_CHUNK 8
#define TQ_PREFETCH 2048 /* one sequential weight stream, prefetched ahead (as the I2_S gemv) */
#define TQ_KBLOCKS 512 /* activation block sums kept on the stack: 4 tokens × 512 blocks */

/* Σ q over each of the nb 256-element blocks of one token (|lane| ≤ 8·256 in int16). */
TK_AVX2_INLINE void tq_block_sums_avx2(const int8_t *q, int64_t nb, int32_t *bs) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i s = _mm256_setzero_si256();
        TK_UNROLL for (int g = 0; g < 8; g++)
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(q + b * TK_QK_K + 32 * g))));
        bs[b] = hsum_epi32_avx2(_mm256_madd_epi16(s, ones16));
    }
}

/* TQ1_0 codes (0..2) of a block as eight 32-byte vectors lined up with the activation groups.
 *
 * Trit n of byte b is ((uint8_t)(b·3^n)·3) >> 8, which is [v ≥ 86] + [v ≥ 171] for v = b·3^n mod 256
 * (for every byte value, canonical or not). v is kept biased by 0x80 so the unsigned thresholds
 * become signed byte compares; the bias survives the step v → 3v mod 256 (3·128 ≡ 128), so the
 * powers of 3 are two byte adds each — no multiplies. Groups: qs[0..31] trits 0..4 → elements
 * 32n + m; qs[32..47] trits n, n+1 side by side (lanes 0 and 1) → 160 + 16n + m; the last group
 * pairs trit 4 of qs[32..47] with the 4×4 trits of qh (byte 4n + j = trit n of qh[j] → 240 + 4n + j). */
/* v·3 as two byte adds. The empty asm keeps v + v opaque: otherwise clang folds chains of these
 * into byte multiplies by 9 or 27, which AVX2 lacks and which it lowers to maddubs/mullw sequences
 * on the multiply port (measured: TQ1_0 gemv 7.9 GMAC/s with them). */
TK_AVX2_INLINE __m256i tq1_times3(__m256i v) {
    __m256i t = _mm256_add_epi8(v, v);
    __asm__("" : "+x"(t));
    return _mm256_add_epi8(t, v);
}

TK_AVX2_INLINE __m128i tq1_times3_128(__m128i v) {
    __m128i t = _mm_add_epi8(v, v);
    __asm__("" : "+x"(t));
    return _mm_add_epi8(t, v);
}

TK_AVX2_INLINE __m256i tq1_trits(__m256i v) {
    const __m256i lo = _mm256_set1_epi8((char)(85 ^ 0x80)), hi = _mm256_set1_epi8((char)(170 ^ 0x80));
    return _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), _mm256_cmpgt_epi8(v, lo)), _mm256_cmpgt_epi8(v, hi));
}

TK_AVX2_INLINE void tq1_codes_avx2(const tk_block_tq1_0 *blk, __m256i c[8]) {
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)blk->qs), bias);
    TK_UNROLL for (int n = 0; n < 5; n++) {
        c[n] = tq1_trits(v);
        v = tq1_times3(v);
    }
    const __m128i b16 = _mm_loadu_si128((const __m128i *)(blk->qs + 32));
    const __m128i b16x3 = tq1_times3_128(b16);
    __m256i u = _mm256_xor_si256(_mm256_set_m128i(b16x3, b16), bias);
    c[5] = tq1_trits(u);
    u = tq1_times3(tq1_times3(u));
    c[6] = tq1_trits(u);
    u = tq1_times3(tq1_times3(u));
    uint32_t qh;
    memcpy(&qh, blk->qh, 4);
    const __m128i h0 = _mm_set1_epi32((int)qh);
    const __m128i h1 = tq1_times3_128(h0);
    const __m128i h2 = tq1_times3_128(h1);
    const __m128i h3 = tq1_times3_128(h2);
    const __m128i h = _mm_blend_epi32(_mm_blend_epi32(_mm_blend_epi32(h0, h1, 0x2), h2, 0x4), h3, 0x8);
    c[7] = tq1_trits(_mm256_inserti128_si256(u, _mm_xor_si128(h, _mm_set1_epi8((char)0x80)), 1));
}

TK_AVX2_INLINE void tq2_codes_avx2(const tk_block_tq2_0 *blk, __m256i c[8]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i v0 = _mm256_loadu_si256((const __m256i *)blk->qs);
    const __m256i v1 = _mm256_loadu_si256((const __m256i *)(blk->qs + 32));
    c[0] = _mm256_and_si256(v0, m3);
    c[1] = _mm256_and_si256(_mm256_srli_epi16(v0, 2), m3);
    c[2] = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m3);
    c[3] = _mm256_and_si256(_mm256_srli_epi16(v0, 6), m3);
    c[4] = _mm256_and_si256(v1, m3);
    c[5] = _mm256_and_si256(_mm256_srli_epi16(v1, 2), m3);
    c[6] = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m3);
    c[7] = _mm256_and_si256(_mm256_srli_epi16(v1, 6), m3);
}

/* The f16 scales of n ≤ 8 consecutive blocks (the first at p, stride bsz) as floats, converted
 * once per row and chunk rather than once per token. F16C converts every f16 exactly, like
 * tk_f16_to_f32, except that it quiets a signalling NaN — which the fused multiply-add of
 * tk_tq_step does to it anyway, so the results keep their bits (tested with special scales). */
TK_AVX2_INLINE void tq_scales_avx2(const uint8_t *p, int64_t bsz, int n, float d[TQ_CHUNK]) {
    uint16_t h[TQ_CHUNK] = {0};
    for (int i = 0; i < n; i++) memcpy(&h[i], p + i * bsz, 2);
    _mm256_storeu_ps(d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
}

/* The chunk's integer block sums (dots[t][i], four int32 lanes each) → float sums in block order,
 * exactly as the reference: acc[t] = fma(d_i, Σ c·q − Σ q, acc[t]) for i = 0, 1, … */
TK_AVX2_INLINE void tq_chunk_finish(__m128i dots[4][TQ_CHUNK], const int TT, int nbc, const float d[TQ_CHUNK],
                                    const int32_t (*bs)[TQ_KBLOCKS], int64_t b0, float *acc) {
    TK_UNROLL for (int t = 0; t < TT; t++) {
        int32_t is[8];
        _mm256_storeu_si256((__m256i *)is, hsum8_epi32_x4(dots[t]));
        float a = acc[t];
        for (int i = 0; i < nbc; i++) a = tk_tq_step(a, d[i], is[i] - bs[t][b0 + i]);
        acc[t] = a;
    }
}

/* Body of a TQ row function (row, bsz, nb, q, ldq, bs, acc, TT, tq1 in scope): chunks of TQ_CHUNK
 * blocks, each block's integer dots for TT tokens from BLOCK_DOTS(blk, qb, ldq, dots, i, TT, tq1)
 * (into dots[t][i]; qb = the block's activations of token 0), then the chunk's float sums in block
 * order. */
#define TQ_ROW_BODY(BLOCK_DOTS)                                                                    \
    for (int64_t b0 = 0; b0 < nb; b0 += TQ_CHUNK) {                                                \
        const int nbc = nb - b0 < TQ_CHUNK ? (int)(nb - b0) : TQ_CHUNK;                            \
        __m128i dots[4][TQ_CHUNK];                                                                 \
        for (int i = 0; i < TQ_CHUNK; i++)                                                         \
            TK_UNROLL for (int t = 0; t < TT; t++) dots[t][i] = _mm_setzero_si128();               \
        for (int i = 0; i < nbc; i++) {                                                            \
            const uint8_t *blk = row + (b0 + i) * bsz;                                             \
            _mm_prefetch((const char *)(blk + TQ_PREFETCH), _MM_HINT_T0);                          \
            BLOCK_DOTS(blk, q + (b0 + i) * TK_QK_K, ldq, dots, i, TT, tq1);                        \
        }                                                                                          \
        float d[TQ_CHUNK];                                                                         \
        tq_scales_avx2(row + b0 * bsz + bsz - 2, bsz, nbc, d);                                     \
        tq_chunk_finish(dots, TT, nbc, d, bs, b0, acc);                                            \
    }

/* Body of a TQ gemm from ROW(row, bsz, nb, q, ldq, bs, acc, TT, tq1), which adds one row's blocks ×
 * TT ≤ 4 tokens to acc[t] in block order. Tokens in groups of four; K is walked in slices of
 * TQ_KBLOCKS blocks so the activation block sums fit on the stack; the running float sum is parked
 * in out[] between slices, which keeps the block order. */
#define TQ_GEMM_BODY(ROW, TQ1)                                                                     \
    const int64_t nb = K / TK_QK_K;                                                                \
    const int64_t bsz = (TQ1) ? (int64_t)sizeof(tk_block_tq1_0) : (int64_t)sizeof(tk_block_tq2_0); \
    const uint8_t *blocks = (const uint8_t *)w;                                                    \
    int32_t bs[4][TQ_KBLOCKS];                                                                     \
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {                                                       \
        const int tn = nt - t0 < 4 ? (int)(nt - t0) : 4;                                           \
        const int8_t *qt = q + t0 * ldq;                                                           \
        float *ot = out + t0 * ldo;                                                                \
        for (int64_t kb = 0; kb < nb; kb += TQ_KBLOCKS) {                                          \
            const int64_t nbk = nb - kb < TQ_KBLOCKS ? nb - kb : TQ_KBLOCKS;                       \
            for (int t = 0; t < tn; t++) tq_block_sums_avx2(qt + t * ldq + kb * TK_QK_K, nbk, bs[t]); \
            for (int64_t m = r0; m < r1; m++) {                                                    \
                float acc[4];                                                                      \
                for (int t = 0; t < tn; t++) acc[t] = kb ? ot[t * ldo + m] : 0.0f;                 \
                const uint8_t *row = blocks + (m * nb + kb) * bsz;                                 \
                const int8_t *qk = qt + kb * TK_QK_K;                                              \
                switch (tn) {                                                                      \
                case 4: ROW(row, bsz, nbk, qk, ldq, bs, acc, 4, TQ1); break;                       \
                case 3: ROW(row, bsz, nbk, qk, ldq, bs, acc, 3, TQ1); break;                       \
                case 2: ROW(row, bsz, nbk, qk, ldq, bs, acc, 2, TQ1); break;                       \
                default: ROW(row, bsz, nbk, qk, ldq, bs, acc, 1, TQ1); break;                      \
                }                                                                                  \
                for (int t = 0; t < tn; t++) ot[t * ldo + m] = acc[t];                             \
            }                                                                                      \
        }                                                                                          \
    }

#endif /* BITNETD_AVX2_TQ_H */
