/*
 * test-kernels.c — standalone C test driver for Sources/CTernaryKernels (no Swift).
 *
 * For every path tk_path_available() reports, compares each kernel of its traits table with the
 * scalar reference: integer kernels (I2_S, quantizer, TQ2_0/TQ1_0) bit for bit, float kernels within
 * a relative tolerance. Also checks the spec's known answers (bitnet-gguf.md §3.2, §3.3, §3.5),
 * f16/bf16 conversion against the CPU's own converter where there is one, and the dispatch API.
 *
 *   test-kernels [--expect-path NAME] [--seed N]
 *
 * --expect-path fails the run when tk_best_path() is not NAME, so a silent fallback to scalar cannot
 * pass. Built with -DTK_TEST_EMULATE_AVX512 (and x86/avx512-*.c compiled the same way) it also
 * runs the AVX-512 kernels through the portable emulation of their intrinsics.
 * Ends with "N passed, M failed"; exit status 1 on any failure.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels-internal.h"
#include "ternary_kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------------
 * Harness
 * ------------------------------------------------------------------------------------------- */

static int n_passed, n_failed, n_fail_printed;
static const char *cur_label = "";

static void check(int ok, const char *fmt, ...) {
    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    if (n_fail_printed++ < 60) {
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL [%s] ", cur_label);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); } /* [0, 1) */
static float rnd_normalish(void) { return (rnd_unit() + rnd_unit() + rnd_unit() - 1.5f) * 2.0f; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The kernels under test for one path (a traits table, or the emulated AVX-512 set). */
typedef struct {
    const char *label;
    tk_quantize_i8_fn quantize_i8;
    tk_i2s_i8_gemm_fn i2s_gemm;
    tk_tq_i8_gemm_fn tq2_gemm;
    tk_tq_i8_gemm_fn tq1_gemm;
    tk_f_gemm_fn f16_gemm;
    tk_f_gemm_fn bf16_gemm;
    tk_f_gemm_fn q8_0_gemm;
    tk_f_gemm_fn q6_k_gemm;
} kernel_set;

/* ---------------------------------------------------------------------------------------------
 * Known answers from the spec
 * ------------------------------------------------------------------------------------------- */

/* TQ1_0 byte from five trits (t0 most significant), spec §3.5: ceil(q·256/243). */
static uint8_t tq1_encode(const int *t, int ntrits) {
    int q = 0;
    for (int i = 0; i < 5; i++) q = q * 3 + (i < ntrits ? t[i] : 0);
    return (uint8_t)((q * 256 + 242) / 243);
}

static void test_known_answers(void) {
    cur_label = "known-answer";
    /* I2_S 0x92: elements 0, 32, 64, 96 = +1, 0, -1, +1. */
    {
        uint8_t blk[32];
        memset(blk, 0x55, sizeof blk); /* all codes 1 → 0 */
        blk[0] = 0x92;
        float y[128];
        tk_dequant_row_i2s(blk, 0.5f, y, 128);
        int ok = y[0] == 0.5f && y[32] == 0.0f && y[64] == -0.5f && y[96] == 0.5f;
        for (int i = 0; i < 128; i++)
            if (i != 0 && i != 32 && i != 64 && i != 96 && y[i] != 0.0f) ok = 0;
        check(ok, "I2_S 0x92 decodes to %g %g %g %g", y[0], y[32], y[64], y[96]);
    }
    /* TQ2_0 0x86: same elements, reversed bit order. */
    {
        tk_block_tq2_0 blk;
        memset(blk.qs, 0x55, sizeof blk.qs);
        blk.qs[0] = 0x86;
        blk.d = tk_f32_to_f16(2.0f);
        float y[256];
        tk_dequant_row_tq2_0(&blk, y, 256);
        int ok = y[0] == 2.0f && y[32] == 0.0f && y[64] == -2.0f && y[96] == 2.0f;
        for (int i = 0; i < 256; i++)
            if (i != 0 && i != 32 && i != 64 && i != 96 && y[i] != 0.0f) ok = 0;
        check(ok, "TQ2_0 0x86 decodes to %g %g %g %g", y[0], y[32], y[64], y[96]);
    }
    /* TQ1_0 encodings and decodes: 207 ↔ (2,1,0,2,1), 108 ↔ (1,0,2,1,0), 255 ↔ all 2. */
    {
        const int t207[5] = {2, 1, 0, 2, 1}, t108[5] = {1, 0, 2, 1, 0}, t255[5] = {2, 2, 2, 2, 2};
        const int ones[5] = {1, 1, 1, 1, 1};
        check(tq1_encode(t207, 5) == 207, "encode (2,1,0,2,1) = %d", tq1_encode(t207, 5));
        check(tq1_encode(t108, 5) == 108, "encode (1,0,2,1,0) = %d", tq1_encode(t108, 5));
        check(tq1_encode(t255, 5) == 255, "encode all-2 = %d", tq1_encode(t255, 5));
        tk_block_tq1_0 blk;
        memset(blk.qs, tq1_encode(ones, 5), sizeof blk.qs);
        memset(blk.qh, tq1_encode(ones, 4), sizeof blk.qh);
        blk.qs[0] = 207;  /* elements 0, 32, 64, 96, 128 */
        blk.qs[32] = 108; /* elements 160, 176, 192, 208, 224 */
        blk.qh[0] = 255;  /* elements 240, 244, 248, 252 */
        blk.d = tk_f32_to_f16(1.0f);
        float y[256];
        tk_dequant_row_tq1_0(&blk, y, 256);
        float want[256];
        for (int i = 0; i < 256; i++) want[i] = 0.0f;
        for (int n = 0; n < 5; n++) want[32 * n] = (float)(t207[n] - 1);
        for (int n = 0; n < 5; n++) want[160 + 16 * n] = (float)(t108[n] - 1);
        for (int n = 0; n < 4; n++) want[240 + 4 * n] = 1.0f;
        int bad = -1;
        for (int i = 0; i < 256; i++)
            if (y[i] != want[i]) bad = i;
        check(bad < 0, "TQ1_0 dequant of 207/108/255 differs at element %d", bad);
    }
    /* Q6_K: element i of a block re-derived from the layout description, independently indexed. */
    {
        tk_block_q6_k blk;
        for (int i = 0; i < 128; i++) blk.ql[i] = (uint8_t)rnd();
        for (int i = 0; i < 64; i++) blk.qh[i] = (uint8_t)rnd();
        for (int i = 0; i < 16; i++) blk.scales[i] = (int8_t)rnd_int(-128, 127);
        blk.d = tk_f32_to_f16(0.25f);
        float y[256];
        tk_dequant_row_q6_k(&blk, y, 256);
        int bad = -1;
        for (int i = 0; i < 256; i++) {
            const int half = i / 128, j = i % 128, g = j / 32, l = j % 32;
            const uint8_t lb = blk.ql[64 * half + l + 32 * (g & 1)];
            const int lo4 = g >= 2 ? lb >> 4 : lb & 15;
            const int hi2 = (blk.qh[32 * half + l] >> (2 * g)) & 3;
            const int sc = blk.scales[8 * half + 2 * g + l / 16];
            const float want = 0.25f * (float)(sc * ((lo4 | (hi2 << 4)) - 32));
            if (y[i] != want) bad = i;
        }
        check(bad < 0, "Q6_K dequant differs at element %d", bad);
    }
    /* Q8_0: d then 32 int8. */
    {
        tk_block_q8_0 blk;
        blk.d = tk_f32_to_f16(0.5f);
        for (int i = 0; i < 32; i++) blk.qs[i] = (int8_t)(i - 16);
        float y[32];
        tk_dequant_row_q8_0(&blk, y, 32);
        int ok = 1;
        for (int i = 0; i < 32; i++) ok &= y[i] == 0.5f * (float)(i - 16);
        check(ok, "Q8_0 dequant");
    }
    /* BF16 / F16 rows. */
    {
        const uint16_t h[4] = {0x3f80, 0xc000, 0x0000, 0x7f80};
        float y[4];
        tk_dequant_row_bf16(h, y, 4);
        check(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.0f && isinf(y[3]), "BF16 dequant");
        const uint16_t f[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
        tk_dequant_row_f16(f, y, 4);
        check(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1.0f, -24) && y[3] == 65504.0f, "F16 dequant");
    }
}

/* ---------------------------------------------------------------------------------------------
 * f16 / bf16 conversion
 * ------------------------------------------------------------------------------------------- */

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
/* CPUID leaf 1, ECX bit 29 (clang 17 has no "f16c" name for __builtin_cpu_supports). */
static int have_hw_f16(void) {
    unsigned int a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1u) && __builtin_cpu_supports("avx");
}
#elif defined(__aarch64__)
static uint16_t hw_f32_to_f16(float f) {
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float hw_f16_to_f32(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}
static int have_hw_f16(void) { return 1; }
#else
static uint16_t hw_f32_to_f16(float f) { (void)f; return 0; }
static float hw_f16_to_f32(uint16_t u) { (void)u; return 0.0f; }
static int have_hw_f16(void) { return 0; }
#endif

static int is_nan_half(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

static void test_conversions(void) {
    cur_label = "f16";
    /* Fixed cases (round to nearest even, overflow, subnormals). */
    struct { float f; uint16_t h; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff},
        {65519.99f, 0x7bff}, {65520.0f, 0x7c00}, {1e10f, 0x7c00}, {-1e10f, 0xfc00},
        {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, {0x1.8p-25f, 0x0001}, {0x1.8p-24f, 0x0002},
        {0x1p-14f, 0x0400}, {0x1.ffcp-15f, 0x0400}, {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x1.8p-11f, 0x3c01},
        {1.0f + 0x1p-10f + 0x1p-11f, 0x3c02}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint16_t h = tk_f32_to_f16(cases[i].f);
        if (h != cases[i].h) {
            bad++;
            check(0, "f32_to_f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f, h, cases[i].h);
        }
    }
    check(bad == 0, "fixed f16 cases");
    check(is_nan_half(tk_f32_to_f16(NAN)), "NaN stays NaN");

    /* All 65536 halves: f16 → f32 → f16 round trip; against the hardware converter if present. */
    int rt_bad = 0, hw_bad = 0;
    for (uint32_t u = 0; u < 65536; u++) {
        const uint16_t h = (uint16_t)u;
        const float f = tk_f16_to_f32(h);
        if (is_nan_half(h)) {
            if (!isnan(f)) rt_bad++;
            continue;
        }
        if (tk_f32_to_f16(f) != h) rt_bad++;
        if (have_hw_f16() && fbits(hw_f16_to_f32(h)) != fbits(f)) hw_bad++;
    }
    check(rt_bad == 0, "f16 round trip: %d mismatches", rt_bad);
    if (have_hw_f16()) check(hw_bad == 0, "f16_to_f32 vs hardware: %d mismatches", hw_bad);

    /* Random float bit patterns (all exponents) against the hardware converter. */
    if (have_hw_f16()) {
        int mism = 0;
        uint32_t first = 0;
        for (int i = 0; i < 2000000; i++) {
            uint32_t u = (uint32_t)rnd();
            if (i & 1) u = (u & 0x87ffffffu) | 0x30000000u; /* concentrate near the f16 range */
            const float f = bitsf(u);
            if (isnan(f)) continue;
            if (tk_f32_to_f16(f) != hw_f32_to_f16(f)) {
                if (!mism) first = u;
                mism++;
            }
        }
        check(mism == 0, "f32_to_f16 vs hardware: %d mismatches (first 0x%08x)", mism, first);
    }

    cur_label = "bf16";
    check(tk_bf16_to_f32(0x3f80) == 1.0f && tk_bf16_to_f32(0xbf00) == -0.5f, "bf16_to_f32");

    cur_label = "round_f16";
    {
        float x[5] = {1.0f + 0x1p-12f, 70000.0f, 0x1p-26f, -3.14159f, 0.1f};
        float y[5];
        for (int i = 0; i < 5; i++) y[i] = tk_f16_to_f32(tk_f32_to_f16(x[i]));
        tk_round_f16_inplace(x, 5);
        check(memcmp(x, y, sizeof x) == 0 && x[0] == 1.0f && isinf(x[1]) && x[2] == 0.0f, "round_f16_inplace");
    }
}

/* ---------------------------------------------------------------------------------------------
 * Quantizer
 * ------------------------------------------------------------------------------------------- */

static void compare_quantize(const kernel_set *ks, const float *x, int64_t n, const char *what) {
    int8_t *q0 = xmalloc((size_t)n), *q1 = xmalloc((size_t)n);
    int32_t s0 = 0, s1 = 0;
    const float a = tk_quantize_row_i8_ref(x, q0, n, &s0);
    const float b = ks->quantize_i8(x, q1, n, &s1);
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++)
        if (q0[i] != q1[i]) {
            bad = i;
            break;
        }
    check(fbits(a) == fbits(b) && s0 == s1 && bad < 0,
          "quantize %s n=%lld: scale %a/%a sum %d/%d first diff %lld", what, (long long)n, (double)a,
          (double)b, s0, s1, (long long)bad);
    free(q0);
    free(q1);
}

static void test_quantize(const kernel_set *ks) {
    /* Spec example: (0.5, -1, 0.25, 0.003) → (64, -127, 32, 0), Σ = -31, s = 127. */
    {
        const float x[4] = {0.5f, -1.0f, 0.25f, 0.003f};
        int8_t q[4];
        int32_t sum = 0;
        const float s = ks->quantize_i8(x, q, 4, &sum);
        check(s == 127.0f && q[0] == 64 && q[1] == -127 && q[2] == 32 && q[3] == 0 && sum == -31,
              "spec I8 example: s=%g q=(%d,%d,%d,%d) sum=%d", (double)s, q[0], q[1], q[2], q[3], sum);
    }
    /* Ties: with amax = 127 the scale is exactly 1, so x = k + 0.5 lands on ties. */
    {
        float x[64];
        for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) + 0.5f;
        x[0] = 127.0f;
        x[1] = 63.5f;
        x[2] = -63.5f;
        x[3] = 126.5f;
        x[4] = -126.5f;
        x[5] = -127.0f;
        x[6] = 2.5f;
        x[7] = -0.5f;
        int8_t q[64];
        int32_t sum;
        const float s = ks->quantize_i8(x, q, 64, &sum);
        check(s == 1.0f && q[1] == 64 && q[2] == -64 && q[3] == 126 && q[4] == -126 && q[6] == 2 && q[7] == 0,
              "ties round half to even: s=%g q=%d %d %d %d %d %d", (double)s, q[1], q[2], q[3], q[4], q[6], q[7]);
        compare_quantize(ks, x, 64, "ties");
    }
    const int64_t sizes[] = {1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 100, 255, 256, 1000, 2560, 6912};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        float *x = xmalloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) x[i] = rnd_normalish() * 3.0f;
        compare_quantize(ks, x, n, "random");
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        compare_quantize(ks, x, n, "zeros");
        for (int64_t i = 0; i < n; i++) x[i] = rnd_normalish() * 5e-6f; /* amax < 1e-5: floor */
        compare_quantize(ks, x, n, "tiny");
        for (int64_t i = 0; i < n; i++) x[i] = rnd_normalish() * 1e30f;
        if (n > 2) x[n / 2] = -3.0e38f;
        compare_quantize(ks, x, n, "huge");
        /* Many exact ties at a non-unit scale: amax 254 → s = 0.5 exactly. */
        for (int64_t i = 0; i < n; i++) x[i] = (float)(2 * rnd_int(-127, 126) + 1);
        x[n - 1] = 254.0f;
        compare_quantize(ks, x, n, "ties-s0.5");
        free(x);
    }
}

/* ---------------------------------------------------------------------------------------------
 * I2_S gemm
 * ------------------------------------------------------------------------------------------- */

/* Codes 3 never occur in valid files, but the kernels' int16 bounds assume c ≤ 3: PAT_CODE3_NEG
 * (every code 3, every activation -128) sits exactly on those bounds. */
enum { PAT_RANDOM, PAT_RANDOM_CODE3, PAT_MAX_POS, PAT_MAX_NEG, PAT_ALL_MINUS, PAT_CODE3_NEG, PAT_COUNT };
static const char *const pat_names[PAT_COUNT] = {"random", "codes0-3", "+1x127", "+1x-128", "-1x-128", "code3x-128"};

static void fill_i2s(uint8_t *w, size_t nbytes, int8_t *q, size_t nq, int pat) {
    for (size_t i = 0; i < nbytes; i++) {
        switch (pat) {
        case PAT_RANDOM: w[i] = (uint8_t)(rnd_int(0, 2) << 6 | rnd_int(0, 2) << 4 | rnd_int(0, 2) << 2 | rnd_int(0, 2)); break;
        case PAT_RANDOM_CODE3: w[i] = (uint8_t)rnd(); break;
        case PAT_MAX_POS: case PAT_MAX_NEG: w[i] = 0xaa; break; /* all +1 (code 2) */
        case PAT_CODE3_NEG: w[i] = 0xff; break;
        default: w[i] = 0x00; break;                            /* all -1 (code 0) */
        }
    }
    for (size_t i = 0; i < nq; i++) {
        switch (pat) {
        case PAT_RANDOM: case PAT_RANDOM_CODE3: q[i] = (int8_t)rnd_int(-128, 127); break;
        case PAT_MAX_POS: q[i] = 127; break;
        default: q[i] = -128; break;
        }
    }
}

static void test_i2s_case(const kernel_set *ks, int64_t K, int64_t M, int64_t r0, int64_t r1, int64_t nt, int pat) {
    const int64_t ldq = K + 64, ldo = M + 3;
    const size_t wbytes = (size_t)(M * K / 4);
    uint8_t *w = xmalloc(wbytes + 32);
    int8_t *q = xmalloc((size_t)(nt * ldq));
    int32_t *o0 = xmalloc((size_t)(nt * ldo) * sizeof(int32_t));
    int32_t *o1 = xmalloc((size_t)(nt * ldo) * sizeof(int32_t));
    fill_i2s(w, wbytes + 32, q, (size_t)(nt * ldq), pat);
    for (int64_t i = 0; i < nt * ldo; i++) o0[i] = o1[i] = (int32_t)0x5a5a5a5a;
    tk_i2s_i8_gemm_ref(w, K, r0, r1, q, ldq, nt, o0, ldo);
    ks->i2s_gemm(w, K, r0, r1, q, ldq, nt, o1, ldo);
    int64_t bad = -1;
    for (int64_t i = 0; i < nt * ldo; i++)
        if (o0[i] != o1[i]) {
            bad = i;
            break;
        }
    check(bad < 0, "i2s %s K=%lld rows [%lld,%lld) nt=%lld: out[%lld] = %d, ref %d", pat_names[pat],
          (long long)K, (long long)r0, (long long)r1, (long long)nt, (long long)bad,
          bad >= 0 ? o1[bad] : 0, bad >= 0 ? o0[bad] : 0);
    if (pat == PAT_MAX_POS && r1 > r0) /* analytic value: Σ 2·127 */
        check(o0[r0] == 2 * 127 * K, "i2s +1x127 analytic: %d", o0[r0]);
    free(w);
    free(q);
    free(o0);
    free(o1);
}

static void test_i2s(const kernel_set *ks) {
    const int64_t Ks[] = {128, 256, 384, 640, 1024, 1152, 2560, 6912};
    const int64_t nts[] = {1, 2, 3, 4, 5, 8, 13};
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
        for (size_t ti = 0; ti < sizeof nts / sizeof nts[0]; ti++) {
            test_i2s_case(ks, Ks[ki], 13, 3, 12, nts[ti], PAT_RANDOM);   /* 9 rows: tiles + tail */
            test_i2s_case(ks, Ks[ki], 13, 1, 2, nts[ti], PAT_RANDOM);    /* one row */
            test_i2s_case(ks, Ks[ki], 13, 5, 12, nts[ti], PAT_RANDOM_CODE3);
            for (int pat = PAT_MAX_POS; pat < PAT_COUNT; pat++) test_i2s_case(ks, Ks[ki], 9, 1, 8, nts[ti], pat);
        }
    test_i2s_case(ks, 2560, 77, 0, 77, 1, PAT_RANDOM);
    test_i2s_case(ks, 2560, 77, 10, 70, 7, PAT_RANDOM);
    test_i2s_case(ks, 32768, 6, 0, 6, 2, PAT_MAX_NEG); /* long K: many int16 → int32 widenings */
    test_i2s_case(ks, 32768, 6, 0, 6, 1, PAT_RANDOM_CODE3);
    test_i2s_case(ks, 32768, 6, 0, 6, 5, PAT_CODE3_NEG);
}

/* ---------------------------------------------------------------------------------------------
 * TQ2_0 / TQ1_0 gemm (exact)
 * ------------------------------------------------------------------------------------------- */

static uint16_t rnd_scale_f16(void) {
    const float v = (0.01f + rnd_unit()) * (rnd() & 1 ? 1.0f : -1.0f) * (float)(1 << rnd_int(0, 6));
    return tk_f32_to_f16(v);
}

/* Block scales with the f16 values a fast path might convert differently: ±0, the smallest and
 * largest subnormals, ±Inf, quiet and signalling NaNs, and ordinary values. */
static uint16_t special_scale_f16(void) {
    static const uint16_t v[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfd55, 0x3c00, 0x0400};
    return rnd() % 3 ? rnd_scale_f16() : v[rnd() % (sizeof v / sizeof v[0])];
}

/* extreme: 0 random, 1 all-extreme codes and activations, 2 arbitrary TQ1_0 bytes, 3 special scales. */
static void test_tq_case(const kernel_set *ks, int tq1, int64_t K, int64_t M, int64_t r0, int64_t r1, int64_t nt, int extreme) {
    const int64_t nb = K / TK_QK_K, ldq = K + 32, ldo = M + 1;
    const size_t bsz = tq1 ? sizeof(tk_block_tq1_0) : sizeof(tk_block_tq2_0);
    uint8_t *w = xmalloc((size_t)(M * nb) * bsz);
    for (int64_t b = 0; b < M * nb; b++) {
        if (tq1) {
            tk_block_tq1_0 *blk = (tk_block_tq1_0 *)(w + (size_t)b * bsz);
            /* extreme 2: arbitrary bytes (not canonical encodings): every path must still decode
             * them exactly as the reference formula does. */
            for (int i = 0; i < 48; i++) {
                int t[5];
                for (int j = 0; j < 5; j++) t[j] = extreme == 1 ? 2 : rnd_int(0, 2);
                blk->qs[i] = extreme == 2 ? (uint8_t)rnd_int(0, 255) : tq1_encode(t, 5);
            }
            for (int i = 0; i < 4; i++) {
                int t[5];
                for (int j = 0; j < 4; j++) t[j] = extreme == 1 ? 2 : rnd_int(0, 2);
                blk->qh[i] = extreme == 2 ? (uint8_t)rnd_int(0, 255) : tq1_encode(t, 4);
            }
            blk->d = extreme == 3 ? special_scale_f16() : rnd_scale_f16();
        } else {
            tk_block_tq2_0 *blk = (tk_block_tq2_0 *)(w + (size_t)b * bsz);
            for (int i = 0; i < 64; i++)
                blk->qs[i] = extreme == 1 ? 0xaa : (uint8_t)(rnd_int(0, 2) | rnd_int(0, 2) << 2 | rnd_int(0, 2) << 4 | rnd_int(0, 2) << 6);
            blk->d = extreme == 3 ? special_scale_f16() : rnd_scale_f16();
        }
    }
    int8_t *q = xmalloc((size_t)(nt * ldq));
    for (int64_t i = 0; i < nt * ldq; i++) q[i] = extreme == 1 ? -128 : (int8_t)rnd_int(-128, 127);
    float *o0 = xmalloc((size_t)(nt * ldo) * sizeof(float));
    float *o1 = xmalloc((size_t)(nt * ldo) * sizeof(float));
    for (int64_t i = 0; i < nt * ldo; i++) o0[i] = o1[i] = -7.25f;
    tk_tq_i8_gemm_fn ref = tq1 ? tk_tq1_i8_gemm_ref : tk_tq2_i8_gemm_ref;
    tk_tq_i8_gemm_fn fn = tq1 ? ks->tq1_gemm : ks->tq2_gemm;
    ref(w, K, r0, r1, q, ldq, nt, o0, ldo);
    fn(w, K, r0, r1, q, ldq, nt, o1, ldo);
    int64_t bad = -1;
    for (int64_t i = 0; i < nt * ldo; i++)
        if (fbits(o0[i]) != fbits(o1[i])) {
            bad = i;
            break;
        }
    check(bad < 0, "%s K=%lld rows [%lld,%lld) nt=%lld%s: out[%lld] = %a, ref %a", tq1 ? "tq1" : "tq2",
          (long long)K, (long long)r0, (long long)r1, (long long)nt, extreme == 1 ? " extreme" : extreme == 2 ? " raw bytes" : extreme == 3 ? " special scales" : "", (long long)bad,
          bad >= 0 ? (double)o1[bad] : 0.0, bad >= 0 ? (double)o0[bad] : 0.0);
    free(w);
    free(q);
    free(o0);
    free(o1);
}

static void test_tq(const kernel_set *ks) {
    const int64_t Ks[] = {256, 512, 2304, 2560, 4352, 6912};
    const int64_t nts[] = {1, 2, 3, 4, 5, 8};
    for (int tq1 = 0; tq1 < 2; tq1++) {
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t ti = 0; ti < sizeof nts / sizeof nts[0]; ti++)
                test_tq_case(ks, tq1, Ks[ki], 7, 2, 7, nts[ti], 0);
        test_tq_case(ks, tq1, 2560, 5, 0, 5, 3, 1);
        if (tq1) test_tq_case(ks, tq1, 2560, 5, 0, 5, 4, 2);
        for (int64_t nt = 1; nt <= 5; nt += 2) test_tq_case(ks, tq1, 2560, 6, 0, 6, nt, 3);
        test_tq_case(ks, tq1, 131072 + 2 * 256, 3, 0, 3, 5, 0); /* > 512 blocks: stack slices */
    }
}

/* ---------------------------------------------------------------------------------------------
 * Float-weight gemms (tolerance relative to Σ|w·x|)
 * ------------------------------------------------------------------------------------------- */

enum { FW_F16, FW_BF16, FW_Q8_0, FW_Q6_K };
static const char *const fw_names[] = {"f16", "bf16", "q8_0", "q6_k"};

static size_t fw_row_bytes(int type, int64_t K) {
    switch (type) {
    case FW_F16: case FW_BF16: return (size_t)K * 2;
    case FW_Q8_0: return (size_t)(K / TK_QK8_0) * sizeof(tk_block_q8_0);
    default: return (size_t)(K / TK_QK_K) * sizeof(tk_block_q6_k);
    }
}

static void fw_dequant(int type, const void *row, float *y, int64_t K) {
    switch (type) {
    case FW_F16: tk_dequant_row_f16(row, y, K); break;
    case FW_BF16: tk_dequant_row_bf16(row, y, K); break;
    case FW_Q8_0: tk_dequant_row_q8_0(row, y, K); break;
    default: tk_dequant_row_q6_k(row, y, K); break;
    }
}

static void test_fw_case(const kernel_set *ks, int type, int64_t K, int64_t M, int64_t r0, int64_t r1, int64_t nt) {
    const size_t rb = fw_row_bytes(type, K);
    const int64_t ldx = K + 5, ldo = M + 2;
    uint8_t *w = xmalloc(rb * (size_t)M);
    for (int64_t m = 0; m < M; m++) {
        uint8_t *row = w + rb * (size_t)m;
        if (type == FW_F16 || type == FW_BF16) {
            uint16_t *h = (uint16_t *)row;
            for (int64_t k = 0; k < K; k++) {
                const float v = rnd_normalish() * 0.1f;
                h[k] = type == FW_F16 ? tk_f32_to_f16(v) : (uint16_t)(fbits(v) >> 16);
            }
        } else {
            for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)rnd();
            if (type == FW_Q8_0)
                for (int64_t b = 0; b < K / TK_QK8_0; b++) ((tk_block_q8_0 *)row)[b].d = rnd_scale_f16();
            else
                for (int64_t b = 0; b < K / TK_QK_K; b++) ((tk_block_q6_k *)row)[b].d = rnd_scale_f16();
        }
    }
    float *x = xmalloc((size_t)(nt * ldx) * sizeof(float));
    for (int64_t i = 0; i < nt * ldx; i++) x[i] = rnd_normalish();
    float *o0 = xmalloc((size_t)(nt * ldo) * sizeof(float));
    float *o1 = xmalloc((size_t)(nt * ldo) * sizeof(float));
    for (int64_t i = 0; i < nt * ldo; i++) o0[i] = o1[i] = -7.25f;
    tk_f_gemm_fn ref = type == FW_F16 ? tk_f16_f32_gemm_ref : type == FW_BF16 ? tk_bf16_f32_gemm_ref
                     : type == FW_Q8_0 ? tk_q8_0_f32_gemm_ref : tk_q6_k_f32_gemm_ref;
    tk_f_gemm_fn fn = type == FW_F16 ? ks->f16_gemm : type == FW_BF16 ? ks->bf16_gemm
                    : type == FW_Q8_0 ? ks->q8_0_gemm : ks->q6_k_gemm;
    ref(w, K, r0, r1, x, ldx, nt, o0, ldo);
    fn(w, K, r0, r1, x, ldx, nt, o1, ldo);
    /* Both are compared with a double-precision dot of the dequantized row. */
    float *wr = xmalloc((size_t)K * sizeof(float));
    int ok = 1;
    char msg[200] = "";
    for (int64_t t = 0; t < nt && ok; t++) {
        for (int64_t m = 0; m < M && ok; m++) {
            const int64_t i = t * ldo + m;
            if (m < r0 || m >= r1) {
                if (o1[i] != -7.25f) {
                    ok = 0;
                    snprintf(msg, sizeof msg, "wrote outside [r0, r1) at t=%lld m=%lld", (long long)t, (long long)m);
                }
                continue;
            }
            fw_dequant(type, w + rb * (size_t)m, wr, K);
            double exact = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)wr[k] * x[t * ldx + k];
                mag += fabs((double)wr[k] * x[t * ldx + k]);
            }
            const double tol = 1e-5 * mag + 1e-30;
            if (fabs(o1[i] - exact) > tol || fabs(o0[i] - exact) > tol) {
                ok = 0;
                snprintf(msg, sizeof msg, "t=%lld m=%lld: got %.9g ref %.9g exact %.9g (tol %.3g)", (long long)t,
                         (long long)m, (double)o1[i], (double)o0[i], exact, tol);
            }
        }
    }
    check(ok, "%s K=%lld rows [%lld,%lld) nt=%lld: %s", fw_names[type], (long long)K, (long long)r0,
          (long long)r1, (long long)nt, msg);
    free(wr);
    free(w);
    free(x);
    free(o0);
    free(o1);
}

static void test_fw(const kernel_set *ks) {
    const int64_t nts[] = {1, 2, 3, 4, 5, 8};
    const int64_t Kh[] = {8, 16, 24, 40, 100, 256, 2560, 2563};
    for (size_t ti = 0; ti < sizeof nts / sizeof nts[0]; ti++) {
        for (size_t ki = 0; ki < sizeof Kh / sizeof Kh[0]; ki++) {
            test_fw_case(ks, FW_F16, Kh[ki], 11, 2, 11, nts[ti]);
            test_fw_case(ks, FW_BF16, Kh[ki], 11, 2, 11, nts[ti]);
        }
        test_fw_case(ks, FW_Q8_0, 32, 9, 1, 8, nts[ti]);
        test_fw_case(ks, FW_Q8_0, 2560, 9, 1, 8, nts[ti]);
        test_fw_case(ks, FW_Q6_K, 256, 5, 1, 4, nts[ti]);
        test_fw_case(ks, FW_Q6_K, 2560, 5, 0, 5, nts[ti]);
    }
    test_fw_case(ks, FW_F16, 2560, 37, 3, 36, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Dequant rows against per-element decoding (path-independent)
 * ------------------------------------------------------------------------------------------- */

static void test_dequant_rows(void) {
    cur_label = "dequant";
    const int64_t K = 512;
    uint8_t w[128];
    for (int i = 0; i < 128; i++) w[i] = (uint8_t)(rnd_int(0, 2) << 6 | rnd_int(0, 2) << 4 | rnd_int(0, 2) << 2 | rnd_int(0, 2));
    float y[512];
    tk_dequant_row_i2s(w, 0.75f, y, K);
    int bad = -1;
    for (int64_t i = 0; i < K; i++) {
        const int64_t b = i / 128, p = i % 128, g = p / 32, j = p % 32;
        const int code = (w[32 * b + j] >> (6 - 2 * g)) & 3;
        if (y[i] != 0.75f * (float)(code - 1)) bad = (int)i;
    }
    check(bad < 0, "i2s dequant differs at %d", bad);

    tk_block_tq2_0 t2[2];
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < 64; i++) t2[b].qs[i] = (uint8_t)(rnd_int(0, 2) | rnd_int(0, 2) << 2 | rnd_int(0, 2) << 4 | rnd_int(0, 2) << 6);
        t2[b].d = rnd_scale_f16();
    }
    tk_dequant_row_tq2_0(t2, y, 512);
    bad = -1;
    for (int i = 0; i < 512; i++) {
        const int b = i / 256, e = i % 256, c = e / 128, n = (e % 128) / 32, m = e % 32;
        const int code = (t2[b].qs[32 * c + m] >> (2 * n)) & 3;
        if (y[i] != (float)(code - 1) * tk_f16_to_f32(t2[b].d)) bad = i;
    }
    check(bad < 0, "tq2 dequant differs at %d", bad);

    /* TQ1_0: random trits encoded per spec and decoded back through dequant. */
    tk_block_tq1_0 t1;
    int trits[256];
    for (int i = 0; i < 256; i++) trits[i] = rnd_int(0, 2);
    for (int m = 0; m < 32; m++) {
        int t[5];
        for (int n = 0; n < 5; n++) t[n] = trits[m + 32 * n];
        t1.qs[m] = tq1_encode(t, 5);
    }
    for (int m = 0; m < 16; m++) {
        int t[5];
        for (int n = 0; n < 5; n++) t[n] = trits[160 + m + 16 * n];
        t1.qs[32 + m] = tq1_encode(t, 5);
    }
    for (int j = 0; j < 4; j++) {
        int t[5];
        for (int n = 0; n < 4; n++) t[n] = trits[240 + j + 4 * n];
        t1.qh[j] = tq1_encode(t, 4);
    }
    t1.d = tk_f32_to_f16(1.0f);
    tk_dequant_row_tq1_0(&t1, y, 256);
    bad = -1;
    for (int i = 0; i < 256; i++)
        if (y[i] != (float)(trits[i] - 1)) bad = i;
    check(bad < 0, "tq1 encode/dequant round trip differs at %d", bad);
}

/* ---------------------------------------------------------------------------------------------
 * Dispatch API
 * ------------------------------------------------------------------------------------------- */

static void test_dispatch(void) {
    cur_label = "dispatch";
    check(tk_path_available(TK_PATH_SCALAR) == 1, "scalar always available");
    check(tk_path_available(tk_best_path()) == 1, "best path available");
    for (int p = 0; p < TK_PATH_COUNT; p++) {
        const tk_kernels *k = tk_kernels_get((tk_path)p);
        check(tk_path_from_name(tk_path_name((tk_path)p)) == p, "name round trip %d", p);
        if (!tk_path_available((tk_path)p)) {
            check(k == NULL, "unavailable path %s has no table", tk_path_name((tk_path)p));
            continue;
        }
        check(k != NULL && k->path == (tk_path)p && strcmp(k->name, tk_path_name((tk_path)p)) == 0 &&
                  k->quantize_i8 && k->i2s_gemm && k->tq2_gemm && k->tq1_gemm && k->f16_gemm &&
                  k->bf16_gemm && k->q8_0_gemm && k->q6_k_gemm,
              "table of %s complete", tk_path_name((tk_path)p));
        check(k->attn_scores && k->attn_values && k->q8s_gemm, "attention and head slots of %s", tk_path_name((tk_path)p));
        /* The per-type rows: shapes from the layout constants, kernels from this path's table. */
        const tk_type_traits *i2s = tk_type_traits_get(k, TK_TYPE_I2_S);
        const tk_type_traits *tq2 = tk_type_traits_get(k, TK_TYPE_TQ2_0);
        const tk_type_traits *tq1 = tk_type_traits_get(k, TK_TYPE_TQ1_0);
        const tk_type_traits *f16 = tk_type_traits_get(k, TK_TYPE_F16);
        const tk_type_traits *bf16 = tk_type_traits_get(k, TK_TYPE_BF16);
        const tk_type_traits *q80 = tk_type_traits_get(k, TK_TYPE_Q8_0);
        const tk_type_traits *q6k = tk_type_traits_get(k, TK_TYPE_Q6_K);
        const tk_type_traits *f32 = tk_type_traits_get(k, TK_TYPE_F32);
        check(i2s && i2s->act == TK_ACT_I8 && i2s->gemm_i2s == k->i2s_gemm && !i2s->gemm_i8 && !i2s->gemm_f32 &&
                  i2s->block_elems == TK_I2S_BLOCK && i2s->block_bytes == TK_I2S_BLOCK_BYTES && !i2s->dequant_row,
              "%s: I2_S row", tk_path_name((tk_path)p));
        check(tq2 && tq2->act == TK_ACT_I8 && tq2->gemm_i8 == k->tq2_gemm && tq2->block_elems == TK_QK_K &&
                  tq2->block_bytes == 66 && tq2->dequant_row == tk_dequant_row_tq2_0,
              "%s: TQ2_0 row", tk_path_name((tk_path)p));
        check(tq1 && tq1->act == TK_ACT_I8 && tq1->gemm_i8 == k->tq1_gemm && tq1->block_elems == TK_QK_K &&
                  tq1->block_bytes == 54 && tq1->dequant_row == tk_dequant_row_tq1_0,
              "%s: TQ1_0 row", tk_path_name((tk_path)p));
        check(f16 && f16->act == TK_ACT_F32 && f16->gemm_f32 == k->f16_gemm && f16->block_bytes == 2 &&
                  bf16 && bf16->gemm_f32 == k->bf16_gemm && q80 && q80->gemm_f32 == k->q8_0_gemm &&
                  q80->block_elems == TK_QK8_0 && q80->block_bytes == 34 && q6k && q6k->gemm_f32 == k->q6_k_gemm &&
                  q6k->block_elems == TK_QK_K && q6k->block_bytes == 210 && f32 && !f32->gemm_f32,
              "%s: float rows", tk_path_name((tk_path)p));
        check(tk_type_traits_get(k, 99) == NULL, "%s: unknown type has no row", tk_path_name((tk_path)p));
    }
    check(tk_type_traits_get(NULL, TK_TYPE_I2_S) == NULL, "no table, no row");
    check(tk_path_from_name("bogus") == -1 && tk_path_from_name(NULL) == -1, "unknown name → -1");
    check(strcmp(tk_path_name((tk_path)99), "unknown") == 0, "out-of-range name");
    check(tk_cpu_features() != NULL && tk_cpu_features()[0] != 0, "cpu features string");
}

/* ---------------------------------------------------------------------------------------------
 * Attention scores (attention.c): every path gives the reference's bits
 * ------------------------------------------------------------------------------------------- */

static void test_attn_scores(void) {
    cur_label = "attn-scores";
    static const int64_t dims[] = {8, 13, 32, 64, 96, 128};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t D = dims[di], rows = 29;
        uint16_t *k = xmalloc((size_t)(rows * D) * sizeof *k);
        float *q = xmalloc((size_t)D * sizeof *q);
        float *ref = xmalloc((size_t)rows * sizeof *ref);
        float *out = xmalloc((size_t)rows * sizeof *out);
        for (int64_t i = 0; i < rows * D; i++) k[i] = tk_f32_to_f16(rnd_normalish());
        for (int64_t i = 0; i < D; i++) q[i] = tk_f16_to_f32(tk_f32_to_f16(rnd_normalish()));
        for (int64_t j = 0; j < rows; j++) ref[j] = tk_f16_dot8_ref(k + j * D, q, D);
        for (int p = 0; p < TK_PATH_COUNT; p++) {
            if (!tk_path_available((tk_path)p)) continue;
            tk_attn_scores(k, D, rows, q, out, (tk_path)p);
            int same = 1;
            for (int64_t j = 0; j < rows; j++) same &= fbits(out[j]) == fbits(ref[j]);
            check(same, "%s D=%lld bit-identical to reference", tk_path_name((tk_path)p), (long long)D);
        }
        free(k); free(q); free(ref); free(out);
    }
    /* Attention values: every path gives the scalar sum's bits, with and without tree slots. */
    cur_label = "attn-values";
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t D = dims[di], rows = 37, prefix = 21;
        const int32_t slots[] = {22, 25, 26, 30, 36};
        const int64_t nslots = 5;
        uint16_t *v = xmalloc((size_t)(rows * D) * sizeof *v);
        float p[37], ref[128], out[128];
        for (int64_t i = 0; i < rows * D; i++) v[i] = tk_f32_to_f16(rnd_normalish());
        for (int64_t j = 0; j < rows; j++) p[j] = rnd_unit() / (float)rows;
        for (int with_slots = 0; with_slots < 2; with_slots++) {
            const int64_t ns = with_slots ? nslots : 0, pre = with_slots ? prefix : rows;
            /* The definition, written out: rows in order, products and sums rounded to float. */
            for (int64_t i = 0; i < D; i++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < pre + ns; j++) {
                    const int64_t r = j < pre ? j : slots[j - pre];
                    const volatile float prod = p[j] * tk_f16_to_f32(v[r * D + i]);
                    acc = acc + prod;
                }
                ref[i] = acc;
            }
            for (int pth = 0; pth < TK_PATH_COUNT; pth++) {
                if (!tk_path_available((tk_path)pth)) continue;
                tk_attn_values(v, D, pre, with_slots ? slots : NULL, ns, p, out, (tk_path)pth);
                int same = 1;
                for (int64_t i = 0; i < D; i++) same &= fbits(out[i]) == fbits(ref[i]);
                check(same, "%s D=%lld%s bit-identical to the definition", tk_path_name((tk_path)pth), (long long)D,
                      with_slots ? " with slots" : "");
            }
        }
        free(v);
    }
    /* Q8_0 quantizer round trip: |x − dequant| ≤ d/2 per block. */
    cur_label = "q8_0-quantize";
    float x[64], y[64];
    tk_block_q8_0 blk[2];
    for (int i = 0; i < 64; i++) x[i] = rnd_normalish();
    tk_quantize_row_q8_0(x, blk, 64);
    tk_dequant_row_q8_0(blk, y, 64);
    int ok = 1;
    for (int i = 0; i < 64; i++) {
        const float d = tk_f16_to_f32(blk[i / 32].d);
        /* half a step, plus the f16 rounding of d times up to 127 steps (2^-11 relative) */
        ok &= fabsf(x[i] - y[i]) <= d * 0.5f + 127.0f * d / 2048.0f + 1e-6f;
    }
    check(ok, "q8_0 quantize/dequantize within half a step");

    /* Split-Q8_0 × Q8_0 gemm (Q8_0 LM-head copy): the split row holds tk_quantize_row_q8_0's values
     * and scales; every path within float rounding of the reference, also with K not a multiple of
     * eight blocks (the vector path's tail). */
    cur_label = "q8s-gemm";
    static const int64_t q8s_ks[] = {2560, 2656};
    for (size_t ki = 0; ki < 2; ki++) {
        const int64_t K = q8s_ks[ki], M = 37, nt = 2, nb = K / 32;
        float *wf = xmalloc((size_t)(M * K) * sizeof *wf), *xf = xmalloc((size_t)(nt * K) * sizeof *xf);
        int8_t *wq = xmalloc((size_t)(M * K));
        float *wd = xmalloc((size_t)(M * nb) * sizeof *wd);
        tk_block_q8_0 *xq = xmalloc((size_t)(nt * nb) * sizeof *xq), *rowq = xmalloc((size_t)nb * sizeof *rowq);
        float ref[2 * 37], out[2 * 37];
        for (int64_t i = 0; i < M * K; i++) wf[i] = rnd_normalish();
        for (int64_t i = 0; i < nt * K; i++) xf[i] = rnd_normalish();
        int split_ok = 1;
        for (int64_t m = 0; m < M; m++) {
            tk_quantize_row_q8s(wf + m * K, wq + m * K, wd + m * nb, K);
            tk_quantize_row_q8_0(wf + m * K, rowq, K);
            for (int64_t b = 0; b < nb; b++) {
                split_ok &= wd[m * nb + b] == tk_f16_to_f32(rowq[b].d);
                for (int j = 0; j < 32; j++) split_ok &= wq[m * K + b * 32 + j] == rowq[b].qs[j];
            }
        }
        check(split_ok, "K=%lld split row = Q8_0 blocks", (long long)K);
        for (int64_t t = 0; t < nt; t++) tk_quantize_row_q8_0(xf + t * K, xq + t * nb, K);
        tk_q8s_q8_0_gemm_ref(wq, wd, K, 1, M, xq, nt, ref, M);
        for (int p = 0; p <= TK_PATH_COUNT; p++) {
            const char *name;
            if (p < TK_PATH_COUNT) {
                if (!tk_path_available((tk_path)p)) continue;
                tk_q8s_q8_0_gemm(wq, wd, K, 1, M, xq, nt, out, M, (tk_path)p);
                name = tk_path_name((tk_path)p);
            } else {
#if defined(TK_TEST_EMULATE_AVX512)
                tk_q8s_q8_0_gemm_avx512vnni(wq, wd, K, 1, M, xq, nt, out, M);
                name = "avx512vnni-emulated";
#else
                continue;
#endif
            }
            int close = 1;
            for (int64_t t = 0; t < nt; t++)
                for (int64_t m = 1; m < M; m++) {
                    const float a = ref[t * M + m], b = out[t * M + m];
                    close &= fabsf(a - b) <= 1e-4f * (fabsf(a) + 1.0f);
                }
            check(close, "%s K=%lld matches the reference", name, (long long)K);
        }
        free(wd); free(rowq);
        free(wf); free(xf); free(wq); free(xq);
    }
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static void run_set(const kernel_set *ks) {
    cur_label = ks->label;
    test_quantize(ks);
    test_i2s(ks);
    test_tq(ks);
    test_fw(ks);
}

static kernel_set set_from_table(const tk_kernels *k) {
    kernel_set s = {k->name, k->quantize_i8, k->i2s_gemm, k->tq2_gemm, k->tq1_gemm,
                    k->f16_gemm, k->bf16_gemm, k->q8_0_gemm, k->q6_k_gemm};
    return s;
}

int main(int argc, char **argv) {
    const char *expect = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect-path") == 0 && i + 1 < argc) {
            expect = argv[++i];
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            rng_state = strtoull(argv[++i], NULL, 0) | 1;
        } else {
            fprintf(stderr, "usage: %s [--expect-path scalar|avx2|avx512|neon|dotprod] [--seed N]\n", argv[0]);
            return 2;
        }
    }
    const tk_path best = tk_best_path();
    printf("cpu features: %s\n", tk_cpu_features());
    printf("best path: %s\n", tk_path_name(best));

    cur_label = "expect-path";
    if (expect) {
        if (tk_path_from_name(expect) < 0) {
            fprintf(stderr, "unknown path name '%s'\n", expect);
            return 2;
        }
        check(strcmp(expect, tk_path_name(best)) == 0, "best path is %s, expected %s", tk_path_name(best), expect);
    }

    test_known_answers();
    test_conversions();
    test_dequant_rows();
    test_dispatch();
    test_attn_scores();

    char tested[200] = "", skipped[200] = "";
    for (int p = 0; p < TK_PATH_COUNT; p++) {
        const tk_kernels *k = tk_kernels_get((tk_path)p);
        char *dst = k ? tested : skipped;
        snprintf(dst + strlen(dst), 200 - strlen(dst), "%s%s", dst[0] ? " " : "", tk_path_name((tk_path)p));
        if (!k) continue;
        const int before = n_failed;
        kernel_set ks = set_from_table(k);
        run_set(&ks);
        /* The same path through `bitnetd selftest`'s cases (so they run under qemu for ARM too). */
        {
            int cases = 0;
            char msg[512];
            int failures = tk_selftest(k, &cases, msg, sizeof msg);
            check(failures == 0 && cases >= 20, "tk_selftest(%s): %d of %d cases failed: %s", k->name, failures, cases, msg);
        }
        printf("path %-8s %s\n", k->name, n_failed == before ? "ok" : "FAILED");
#if defined(__x86_64__)
        if (p == TK_PATH_AVX512) {
            /* The table holds one of the two I2_S kernels; run the other as well when the CPU can. */
            ks.label = "avx512-bw";
            ks.i2s_gemm = tk_i2s_i8_gemm_avx512;
            test_i2s(&ks);
        }
#endif
    }
#if defined(TK_TEST_EMULATE_AVX512)
    {
        const int before = n_failed;
        kernel_set ks = set_from_table(tk_kernels_get(TK_PATH_SCALAR));
        ks.label = "avx512vnni-emulated";
        ks.i2s_gemm = tk_i2s_i8_gemm_avx512vnni;
        ks.tq2_gemm = tk_tq2_i8_gemm_avx512vnni;
        ks.tq1_gemm = tk_tq1_i8_gemm_avx512vnni;
        ks.f16_gemm = tk_f16_f32_gemm_avx512;
        ks.q6_k_gemm = tk_q6_k_f32_gemm_avx512;
        cur_label = ks.label;
        test_i2s(&ks);
        test_tq(&ks);
        test_fw(&ks);
        ks.label = "avx512bw-emulated";
        ks.i2s_gemm = tk_i2s_i8_gemm_avx512;
        cur_label = ks.label;
        test_i2s(&ks);
        printf("path %-8s %s (intrinsics emulated in C; logic only)\n", "avx512", n_failed == before ? "ok" : "FAILED");
        snprintf(tested + strlen(tested), sizeof tested - strlen(tested), " avx512(emulated)");
    }
#endif
    printf("paths tested: %s\n", tested);
    printf("paths not run (not in this build or not supported by this CPU): %s\n", skipped[0] ? skipped : "none");
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
