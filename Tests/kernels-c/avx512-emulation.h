/*
 * avx512-emulation.h — TEST ONLY. Portable C versions of exactly the AVX-512 intrinsics used by
 * the AVX-512 kernel files (Sources/CTernaryKernels/x86/avx512-*.c), written from the instruction
 * definitions in Intel's SDM (VPSRLVW, VPSLLVW, VPSLLW, VPSRLW, VPSRAVD, VPMADDUBSW, VPMADDWD,
 * VPDPBUSD, VPAND/OR/XOR, VPADDB/W/D, VBROADCASTI64X4, VINSERTI64X4, VEXTRACTI64X4, VPMOVSXBD,
 * VCVTDQ2PS, VCVTPH2PS, VMULPS, VSUBPS, VFMADD, VPUNPCKL/HBW, VPUNPCKL/HWD, VPERMPS).
 *
 * Compiled in with -DTK_TEST_EMULATE_AVX512 (see scripts/test-kernels-cross; avx512-common.h) so
 * the AVX-512 kernels' lane and index arithmetic can be compared with the scalar reference on
 * CPUs without AVX-512. It checks the kernels' logic, not the compiler's AVX-512 code generation:
 * only real hardware does.
 * Included after <immintrin.h>; each intrinsic name is redirected with a macro.
 */
#ifndef BITNETD_AVX512_EMULATION_H
#define BITNETD_AVX512_EMULATION_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define TK_EMU static inline __attribute__((always_inline, target("avx2,fma,f16c")))

typedef struct {
    union {
        uint8_t u8[64];
        int8_t i8[64];
        uint16_t u16[32];
        int16_t i16[32];
        int32_t i32[16];
        uint64_t u64[8];
    };
} tk_emu_m512i;

typedef struct {
    float f[16];
} tk_emu_m512;

#undef __m512i
#define __m512i tk_emu_m512i
#undef __m512
#define __m512 tk_emu_m512

TK_EMU tk_emu_m512i emu_setzero_si512(void) {
    tk_emu_m512i r;
    memset(&r, 0, sizeof r);
    return r;
}
TK_EMU tk_emu_m512 emu_setzero_ps(void) {
    tk_emu_m512 r;
    memset(&r, 0, sizeof r);
    return r;
}
TK_EMU tk_emu_m512i emu_set1_epi8(char v) {
    tk_emu_m512i r;
    memset(r.u8, (unsigned char)v, 64);
    return r;
}
TK_EMU tk_emu_m512i emu_set1_epi16(short v) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.i16[i] = v;
    return r;
}
TK_EMU tk_emu_m512i emu_loadu_si512(const void *p) {
    tk_emu_m512i r;
    memcpy(r.u8, p, 64);
    return r;
}
TK_EMU tk_emu_m512 emu_loadu_ps(const float *p) {
    tk_emu_m512 r;
    memcpy(r.f, p, 64);
    return r;
}
/* VBROADCASTI64X4: the 256-bit source in both halves. */
TK_EMU tk_emu_m512i emu_broadcast_i64x4(__m256i a) {
    tk_emu_m512i r;
    _mm256_storeu_si256((__m256i *)r.u8, a);
    _mm256_storeu_si256((__m256i *)(r.u8 + 32), a);
    return r;
}
/* VPSRLVW: per 16-bit lane logical right shift; counts above 15 give 0. */
TK_EMU tk_emu_m512i emu_srlv_epi16(tk_emu_m512i a, tk_emu_m512i c) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.u16[i] = c.u16[i] > 15 ? 0 : (uint16_t)(a.u16[i] >> c.u16[i]);
    return r;
}
TK_EMU tk_emu_m512i emu_and_si512(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 8; i++) r.u64[i] = a.u64[i] & b.u64[i];
    return r;
}
TK_EMU tk_emu_m512i emu_add_epi16(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.u16[i] = (uint16_t)(a.u16[i] + b.u16[i]);
    return r;
}
TK_EMU tk_emu_m512i emu_add_epi32(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) r.i32[i] = (int32_t)((uint32_t)a.i32[i] + (uint32_t)b.i32[i]);
    return r;
}
/* VPMADDUBSW: unsigned bytes of a × signed bytes of b, adjacent pairs summed with int16 saturation. */
TK_EMU tk_emu_m512i emu_maddubs_epi16(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) {
        int32_t s = (int32_t)a.u8[2 * i] * b.i8[2 * i] + (int32_t)a.u8[2 * i + 1] * b.i8[2 * i + 1];
        r.i16[i] = (int16_t)(s > 32767 ? 32767 : s < -32768 ? -32768 : s);
    }
    return r;
}
/* VPMADDWD: signed 16-bit × signed 16-bit, adjacent pairs summed into int32. */
TK_EMU tk_emu_m512i emu_madd_epi16(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) {
        int64_t s = (int64_t)a.i16[2 * i] * b.i16[2 * i] + (int64_t)a.i16[2 * i + 1] * b.i16[2 * i + 1];
        r.i32[i] = (int32_t)(uint32_t)s;
    }
    return r;
}
/* VPDPBUSD: src + Σ of four (unsigned byte of a × signed byte of b) per int32 lane, wrapping. */
TK_EMU tk_emu_m512i emu_dpbusd_epi32(tk_emu_m512i src, tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) {
        int32_t s = 0;
        for (int j = 0; j < 4; j++) s += (int32_t)a.u8[4 * i + j] * b.i8[4 * i + j];
        r.i32[i] = (int32_t)((uint32_t)src.i32[i] + (uint32_t)s);
    }
    return r;
}
TK_EMU int emu_reduce_add_epi32(tk_emu_m512i a) {
    uint32_t s = 0;
    for (int i = 0; i < 16; i++) s += (uint32_t)a.i32[i];
    return (int)s;
}
/* VCVTPH2PS zmm, ymm/m256: 16 halves → 16 floats (exact). */
TK_EMU tk_emu_m512 emu_cvtph_ps(__m256i h) {
    tk_emu_m512 r;
    _mm256_storeu_ps(r.f, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
    _mm256_storeu_ps(r.f + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    return r;
}
TK_EMU tk_emu_m512 emu_fmadd_ps(tk_emu_m512 a, tk_emu_m512 b, tk_emu_m512 c) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = fmaf(a.f[i], b.f[i], c.f[i]);
    return r;
}
TK_EMU tk_emu_m512 emu_add_ps(tk_emu_m512 a, tk_emu_m512 b) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] + b.f[i];
    return r;
}
TK_EMU float emu_reduce_add_ps(tk_emu_m512 a) {
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += a.f[i];
    return s;
}

#undef _mm512_setzero_si512
#define _mm512_setzero_si512 emu_setzero_si512
#undef _mm512_setzero_ps
#define _mm512_setzero_ps emu_setzero_ps
#undef _mm512_set1_epi8
#define _mm512_set1_epi8 emu_set1_epi8
#undef _mm512_set1_epi16
#define _mm512_set1_epi16 emu_set1_epi16
#undef _mm512_loadu_si512
#define _mm512_loadu_si512 emu_loadu_si512
#undef _mm512_loadu_ps
#define _mm512_loadu_ps emu_loadu_ps
#undef _mm512_broadcast_i64x4
#define _mm512_broadcast_i64x4 emu_broadcast_i64x4
#undef _mm512_srlv_epi16
#define _mm512_srlv_epi16 emu_srlv_epi16
#undef _mm512_and_si512
#define _mm512_and_si512 emu_and_si512
#undef _mm512_add_epi16
#define _mm512_add_epi16 emu_add_epi16
#undef _mm512_add_epi32
#define _mm512_add_epi32 emu_add_epi32
#undef _mm512_maddubs_epi16
#define _mm512_maddubs_epi16 emu_maddubs_epi16
#undef _mm512_madd_epi16
#define _mm512_madd_epi16 emu_madd_epi16
#undef _mm512_dpbusd_epi32
#define _mm512_dpbusd_epi32 emu_dpbusd_epi32
#undef _mm512_reduce_add_epi32
#define _mm512_reduce_add_epi32 emu_reduce_add_epi32
#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps emu_cvtph_ps
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps emu_fmadd_ps
#undef _mm512_add_ps
#define _mm512_add_ps emu_add_ps
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps emu_reduce_add_ps

/* ---- added for the TQ, Q8_0-copy and Q6_K kernels and the masked I2_S VNNI tile ---- */
/* VPSLLVW: per 16-bit lane logical left shift; counts above 15 give 0. */
TK_EMU tk_emu_m512i emu_sllv_epi16(tk_emu_m512i a, tk_emu_m512i c) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.u16[i] = c.u16[i] > 15 ? 0 : (uint16_t)(a.u16[i] << c.u16[i]);
    return r;
}
/* VPSLLW / VPSRLW with an immediate count (< 16 here). */
TK_EMU tk_emu_m512i emu_slli_epi16(tk_emu_m512i a, unsigned int n) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.u16[i] = n > 15 ? 0 : (uint16_t)(a.u16[i] << n);
    return r;
}
TK_EMU tk_emu_m512i emu_srli_epi16(tk_emu_m512i a, unsigned int n) {
    tk_emu_m512i r;
    for (int i = 0; i < 32; i++) r.u16[i] = n > 15 ? 0 : (uint16_t)(a.u16[i] >> n);
    return r;
}
/* VPSRAVD: per 32-bit lane arithmetic right shift; counts above 31 fill with the sign. */
TK_EMU tk_emu_m512i emu_srav_epi32(tk_emu_m512i a, tk_emu_m512i c) {
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) {
        const uint32_t n = (uint32_t)c.i32[i] > 31 ? 31 : (uint32_t)c.i32[i];
        /* arithmetic shift written without relying on >> of negative values */
        const uint32_t u = (uint32_t)a.i32[i];
        const uint32_t fill = (a.i32[i] < 0 && n) ? ~(0xffffffffu >> n) : 0;
        r.i32[i] = (int32_t)((u >> n) | fill);
    }
    return r;
}
TK_EMU tk_emu_m512i emu_or_si512(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 8; i++) r.u64[i] = a.u64[i] | b.u64[i];
    return r;
}
TK_EMU tk_emu_m512i emu_xor_si512(tk_emu_m512i a, tk_emu_m512i b) {
    tk_emu_m512i r;
    for (int i = 0; i < 8; i++) r.u64[i] = a.u64[i] ^ b.u64[i];
    return r;
}
/* Casts and 256/128-bit inserts and extracts (the cast's upper half is undefined in hardware;
 * zero here, and the kernels always fill it with an insert). */
TK_EMU tk_emu_m512i emu_castsi256_si512(__m256i a) {
    tk_emu_m512i r;
    memset(&r, 0, sizeof r);
    _mm256_storeu_si256((__m256i *)r.u8, a);
    return r;
}
TK_EMU tk_emu_m512i emu_inserti64x4(tk_emu_m512i a, __m256i b, int imm) {
    tk_emu_m512i r = a;
    _mm256_storeu_si256((__m256i *)(r.u8 + 32 * (imm & 1)), b);
    return r;
}
TK_EMU __m256i emu_castsi512_si256(tk_emu_m512i a) { return _mm256_loadu_si256((const __m256i *)a.u8); }
TK_EMU __m256i emu_extracti64x4_epi64(tk_emu_m512i a, int imm) {
    return _mm256_loadu_si256((const __m256i *)(a.u8 + 32 * (imm & 1)));
}
/* VPMOVSXBD zmm, xmm: 16 signed bytes → 16 int32. */
TK_EMU tk_emu_m512i emu_cvtepi8_epi32(__m128i a) {
    int8_t b[16];
    _mm_storeu_si128((__m128i *)b, a);
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) r.i32[i] = b[i];
    return r;
}
/* VCVTDQ2PS: int32 → float, rounded to nearest even (as a C conversion under the default mode). */
TK_EMU tk_emu_m512 emu_cvtepi32_ps(tk_emu_m512i a) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = (float)a.i32[i];
    return r;
}
TK_EMU tk_emu_m512 emu_mul_ps(tk_emu_m512 a, tk_emu_m512 b) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] * b.f[i];
    return r;
}
/* VPUNPCKLBW / VPUNPCKHBW / VPUNPCKLWD / VPUNPCKHWD: per 128-bit lane, interleave the low (high)
 * halves of a and b, a's element first. */
TK_EMU tk_emu_m512i emu_unpack_epi8(tk_emu_m512i a, tk_emu_m512i b, int high) {
    tk_emu_m512i r;
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < 8; i++) {
            r.u8[16 * l + 2 * i] = a.u8[16 * l + 8 * high + i];
            r.u8[16 * l + 2 * i + 1] = b.u8[16 * l + 8 * high + i];
        }
    return r;
}
TK_EMU tk_emu_m512i emu_unpacklo_epi8(tk_emu_m512i a, tk_emu_m512i b) { return emu_unpack_epi8(a, b, 0); }
TK_EMU tk_emu_m512i emu_unpackhi_epi8(tk_emu_m512i a, tk_emu_m512i b) { return emu_unpack_epi8(a, b, 1); }
TK_EMU tk_emu_m512i emu_unpack_epi16(tk_emu_m512i a, tk_emu_m512i b, int high) {
    tk_emu_m512i r;
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < 4; i++) {
            r.u16[8 * l + 2 * i] = a.u16[8 * l + 4 * high + i];
            r.u16[8 * l + 2 * i + 1] = b.u16[8 * l + 4 * high + i];
        }
    return r;
}
TK_EMU tk_emu_m512i emu_unpacklo_epi16(tk_emu_m512i a, tk_emu_m512i b) { return emu_unpack_epi16(a, b, 0); }
TK_EMU tk_emu_m512i emu_unpackhi_epi16(tk_emu_m512i a, tk_emu_m512i b) { return emu_unpack_epi16(a, b, 1); }
TK_EMU tk_emu_m512 emu_castsi512_ps(tk_emu_m512i a) {
    tk_emu_m512 r;
    memcpy(r.f, a.u8, 64);
    return r;
}
TK_EMU tk_emu_m512 emu_sub_ps(tk_emu_m512 a, tk_emu_m512 b) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] - b.f[i];
    return r;
}
/* VPERMPS: r[i] = a[idx[i] mod 16] (note the intrinsic's operand order: index first). */
TK_EMU tk_emu_m512 emu_permutexvar_ps(tk_emu_m512i idx, tk_emu_m512 a) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[idx.i32[i] & 15];
    return r;
}
TK_EMU tk_emu_m512i emu_set1_epi32(int v) {
    tk_emu_m512i r;
    for (int i = 0; i < 16; i++) r.i32[i] = v;
    return r;
}
TK_EMU tk_emu_m512 emu_set1_ps(float v) {
    tk_emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = v;
    return r;
}

#undef _mm512_sllv_epi16
#define _mm512_sllv_epi16 emu_sllv_epi16
#undef _mm512_slli_epi16
#define _mm512_slli_epi16 emu_slli_epi16
#undef _mm512_srli_epi16
#define _mm512_srli_epi16 emu_srli_epi16
#undef _mm512_srav_epi32
#define _mm512_srav_epi32 emu_srav_epi32
#undef _mm512_or_si512
#define _mm512_or_si512 emu_or_si512
#undef _mm512_xor_si512
#define _mm512_xor_si512 emu_xor_si512
#undef _mm512_castsi256_si512
#define _mm512_castsi256_si512 emu_castsi256_si512
#undef _mm512_inserti64x4
#define _mm512_inserti64x4 emu_inserti64x4
#undef _mm512_castsi512_si256
#define _mm512_castsi512_si256 emu_castsi512_si256
#undef _mm512_extracti64x4_epi64
#define _mm512_extracti64x4_epi64 emu_extracti64x4_epi64
#undef _mm512_cvtepi8_epi32
#define _mm512_cvtepi8_epi32 emu_cvtepi8_epi32
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps emu_cvtepi32_ps
#undef _mm512_mul_ps
#define _mm512_mul_ps emu_mul_ps
#undef _mm512_set1_ps
#define _mm512_set1_ps emu_set1_ps
#undef _mm512_unpacklo_epi8
#define _mm512_unpacklo_epi8 emu_unpacklo_epi8
#undef _mm512_unpackhi_epi8
#define _mm512_unpackhi_epi8 emu_unpackhi_epi8
#undef _mm512_unpacklo_epi16
#define _mm512_unpacklo_epi16 emu_unpacklo_epi16
#undef _mm512_unpackhi_epi16
#define _mm512_unpackhi_epi16 emu_unpackhi_epi16
#undef _mm512_castsi512_ps
#define _mm512_castsi512_ps emu_castsi512_ps
#undef _mm512_sub_ps
#define _mm512_sub_ps emu_sub_ps
#undef _mm512_permutexvar_ps
#define _mm512_permutexvar_ps emu_permutexvar_ps
#undef _mm512_set1_epi32
#define _mm512_set1_epi32 emu_set1_epi32

#endif /* BITNETD_AVX512_EMULATION_H */
