/*
 * dispatch.c — traits tables per path and run-time CPU feature detection.
 *
 * One table per path; operations a path does not accelerate point at the scalar reference. A path is
 * available when this build contains it and the running CPU (and, on x86, the OS's saved register
 * state) supports every instruction set its functions were compiled for.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kernels-internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#if defined(__aarch64__) || (defined(__arm__) && defined(__ARM_NEON))
#include <sys/auxv.h>
#if defined(__aarch64__) && !defined(HWCAP_ASIMDDP)
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#if defined(__arm__) && !defined(HWCAP_NEON)
#define HWCAP_NEON (1UL << 12)
#endif
#endif

static const char *const path_names[TK_PATH_COUNT] = {"scalar", "avx2", "avx512", "neon", "dotprod"};

/* ---------------------------------------------------------------------------------------------
 * CPU features (computed once)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int avx2;       /* avx2 + fma + f16c (+ OS support for ymm state) */
    int avx512;     /* avx512f + avx512bw + avx512vl (+ OS support for zmm state) */
    int avx512vnni;
    int neon;
    int dotprod;
    char description[160];
} cpu_features;

static cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void append_feature(char *buf, size_t cap, const char *name) {
    size_t len = strlen(buf);
    if (len + strlen(name) + 2 > cap) return;
    snprintf(buf + len, cap - len, "%s%s", len ? " " : "", name);
}

static void detect_features(void) {
    cpu_features f;
    memset(&f, 0, sizeof f);
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks XCR0, i.e. that the OS saves the ymm/zmm state. */
    const int avx2 = __builtin_cpu_supports("avx2");
    const int fma = __builtin_cpu_supports("fma");
    /* F16C from CPUID leaf 1, ECX bit 29: clang 17 (Swift 6.0.3, Debian trixie) does not know
     * "f16c" as a __builtin_cpu_supports name. AVX2 implies the OS saves ymm state already. */
    unsigned int eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
    const int f16c = __get_cpuid(1, &eax1, &ebx1, &ecx1, &edx1) ? (int)((ecx1 >> 29) & 1u) : 0;
    const int avx512f = __builtin_cpu_supports("avx512f");
    const int avx512bw = __builtin_cpu_supports("avx512bw");
    const int avx512vl = __builtin_cpu_supports("avx512vl");
    const int avx512vnni = __builtin_cpu_supports("avx512vnni");
    f.avx2 = avx2 && fma && f16c;
    f.avx512 = f.avx2 && avx512f && avx512bw && avx512vl;
    f.avx512vnni = f.avx512 && avx512vnni;
    if (avx2) append_feature(f.description, sizeof f.description, "avx2");
    if (fma) append_feature(f.description, sizeof f.description, "fma");
    if (f16c) append_feature(f.description, sizeof f.description, "f16c");
    if (avx512f) append_feature(f.description, sizeof f.description, "avx512f");
    if (avx512bw) append_feature(f.description, sizeof f.description, "avx512bw");
    if (avx512vl) append_feature(f.description, sizeof f.description, "avx512vl");
    if (avx512vnni) append_feature(f.description, sizeof f.description, "avx512vnni");
#elif defined(__aarch64__)
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f.neon = 1; /* Advanced SIMD is mandatory on aarch64 Linux */
    f.dotprod = (hwcap & HWCAP_ASIMDDP) != 0;
    append_feature(f.description, sizeof f.description, "asimd");
    if (f.dotprod) append_feature(f.description, sizeof f.description, "asimddp");
#elif defined(__arm__) && defined(__ARM_NEON)
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f.neon = (hwcap & HWCAP_NEON) != 0;
    if (f.neon) append_feature(f.description, sizeof f.description, "neon");
#endif
    if (f.description[0] == 0) append_feature(f.description, sizeof f.description, "none");
    features = f;
}

static const cpu_features *get_features(void) {
    pthread_once(&features_once, detect_features);
    return &features;
}

/* ---------------------------------------------------------------------------------------------
 * Traits tables
 * ------------------------------------------------------------------------------------------- */

static const tk_kernels table_scalar = {
    .path = TK_PATH_SCALAR,
    .name = "scalar",
    .quantize_i8 = tk_quantize_row_i8_ref,
    .i2s_gemm = tk_i2s_i8_gemm_ref,
    .tq2_gemm = tk_tq2_i8_gemm_ref,
    .tq1_gemm = tk_tq1_i8_gemm_ref,
    .f16_gemm = tk_f16_f32_gemm_ref,
    .bf16_gemm = tk_bf16_f32_gemm_ref,
    .q8_0_gemm = tk_q8_0_f32_gemm_ref,
    .q6_k_gemm = tk_q6_k_f32_gemm_ref,
    .attn_scores = tk_attn_scores_ref,
    .attn_values = tk_attn_values_ref,
    .q8s_gemm = tk_q8s_q8_0_gemm_ref,
};

#if defined(__x86_64__)
static const tk_kernels table_avx2 = {
    .path = TK_PATH_AVX2,
    .name = "avx2",
    .quantize_i8 = tk_quantize_row_i8_avx2,
    .i2s_gemm = tk_i2s_i8_gemm_avx2,
    .tq2_gemm = tk_tq2_i8_gemm_avx2,
    .tq1_gemm = tk_tq1_i8_gemm_avx2,
    .f16_gemm = tk_f16_f32_gemm_avx2,
    .bf16_gemm = tk_bf16_f32_gemm_avx2,
    .q8_0_gemm = tk_q8_0_f32_gemm_avx2,
    .q6_k_gemm = tk_q6_k_f32_gemm_avx2,
    .attn_scores = tk_attn_scores_avx2,
    .attn_values = tk_attn_values_avx2,
    .q8s_gemm = tk_q8s_q8_0_gemm_avx2,
};

/* AVX-512 without VNNI (Skylake-X): maddubs-based I2_S kernel; TQ2_0, TQ1_0 and the Q8_0 head copy
 * keep the AVX2 kernels (their AVX-512 versions need vpdpbusd). */
static const tk_kernels table_avx512 = {
    .path = TK_PATH_AVX512,
    .name = "avx512",
    .quantize_i8 = tk_quantize_row_i8_avx2,
    .i2s_gemm = tk_i2s_i8_gemm_avx512,
    .tq2_gemm = tk_tq2_i8_gemm_avx2,
    .tq1_gemm = tk_tq1_i8_gemm_avx2,
    .f16_gemm = tk_f16_f32_gemm_avx512,
    .bf16_gemm = tk_bf16_f32_gemm_avx2,
    .q8_0_gemm = tk_q8_0_f32_gemm_avx2,
    .q6_k_gemm = tk_q6_k_f32_gemm_avx512,
    .attn_scores = tk_attn_scores_avx2,
    .attn_values = tk_attn_values_avx2,
    .q8s_gemm = tk_q8s_q8_0_gemm_avx2,
};

/* AVX-512 with VNNI (Cascade Lake, Ice Lake, Zen 4 and later). */
static const tk_kernels table_avx512vnni = {
    .path = TK_PATH_AVX512,
    .name = "avx512",
    .quantize_i8 = tk_quantize_row_i8_avx2,
    .i2s_gemm = tk_i2s_i8_gemm_avx512vnni,
    .tq2_gemm = tk_tq2_i8_gemm_avx512vnni,
    .tq1_gemm = tk_tq1_i8_gemm_avx512vnni,
    .f16_gemm = tk_f16_f32_gemm_avx512,
    .bf16_gemm = tk_bf16_f32_gemm_avx2,
    .q8_0_gemm = tk_q8_0_f32_gemm_avx2,
    .q6_k_gemm = tk_q6_k_f32_gemm_avx512,
    .attn_scores = tk_attn_scores_avx2,
    .attn_values = tk_attn_values_avx2,
    .q8s_gemm = tk_q8s_q8_0_gemm_avx512vnni,
};
#endif

#if defined(__aarch64__) || defined(__ARM_NEON)
static const tk_kernels table_neon = {
    .path = TK_PATH_NEON,
    .name = "neon",
    .quantize_i8 = tk_quantize_row_i8_neon,
    .i2s_gemm = tk_i2s_i8_gemm_neon,
    .tq2_gemm = tk_tq2_i8_gemm_neon,
    .tq1_gemm = tk_tq1_i8_gemm_neon,
#if defined(__aarch64__)
    .f16_gemm = tk_f16_f32_gemm_neon,
    .bf16_gemm = tk_bf16_f32_gemm_neon,
    .q8_0_gemm = tk_q8_0_f32_gemm_ref,
    .q6_k_gemm = tk_q6_k_f32_gemm_neon,
#else
    .f16_gemm = tk_f16_f32_gemm_ref,
    .bf16_gemm = tk_bf16_f32_gemm_ref,
    .q8_0_gemm = tk_q8_0_f32_gemm_ref,
    .q6_k_gemm = tk_q6_k_f32_gemm_ref,
#endif
#if defined(__aarch64__)
    .attn_scores = tk_attn_scores_neon,
    .attn_values = tk_attn_values_neon,
    .q8s_gemm = tk_q8s_q8_0_gemm_neon,
#else
    .attn_scores = tk_attn_scores_ref,
    .attn_values = tk_attn_values_ref,
    .q8s_gemm = tk_q8s_q8_0_gemm_ref,
#endif
};
#endif

#if defined(__aarch64__)
static const tk_kernels table_dotprod = {
    .path = TK_PATH_DOTPROD,
    .name = "dotprod",
    .quantize_i8 = tk_quantize_row_i8_neon,
    .i2s_gemm = tk_i2s_i8_gemm_dotprod,
    .tq2_gemm = tk_tq2_i8_gemm_dotprod,
    .tq1_gemm = tk_tq1_i8_gemm_dotprod,
    .f16_gemm = tk_f16_f32_gemm_neon,
    .bf16_gemm = tk_bf16_f32_gemm_neon,
    .q8_0_gemm = tk_q8_0_f32_gemm_ref,
    .q6_k_gemm = tk_q6_k_f32_gemm_neon,
    .attn_scores = tk_attn_scores_neon,
    .attn_values = tk_attn_values_neon,
    .q8s_gemm = tk_q8s_q8_0_gemm_neon,
};
#endif

/* ---------------------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------------------- */

int tk_path_available(tk_path path) {
    const cpu_features *f = get_features();
    switch (path) {
    case TK_PATH_SCALAR: return 1;
#if defined(__x86_64__)
    case TK_PATH_AVX2: return f->avx2;
    case TK_PATH_AVX512: return f->avx512;
#endif
#if defined(__aarch64__) || defined(__ARM_NEON)
    case TK_PATH_NEON: return f->neon;
#endif
#if defined(__aarch64__)
    case TK_PATH_DOTPROD: return f->dotprod;
#endif
    default: (void)f; return 0;
    }
}

tk_path tk_best_path(void) {
    static const tk_path order[] = {TK_PATH_AVX512, TK_PATH_AVX2, TK_PATH_DOTPROD, TK_PATH_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (tk_path_available(order[i])) return order[i];
    return TK_PATH_SCALAR;
}

const tk_kernels *tk_kernels_get(tk_path path) {
    if (!tk_path_available(path)) return NULL;
    switch (path) {
    case TK_PATH_SCALAR: return &table_scalar;
#if defined(__x86_64__)
    case TK_PATH_AVX2: return &table_avx2;
    case TK_PATH_AVX512: return get_features()->avx512vnni ? &table_avx512vnni : &table_avx512;
#endif
#if defined(__aarch64__) || defined(__ARM_NEON)
    case TK_PATH_NEON: return &table_neon;
#endif
#if defined(__aarch64__)
    case TK_PATH_DOTPROD: return &table_dotprod;
#endif
    default: return NULL;
    }
}

/* Per-type rows, one set per table, built once from the tables above. */
enum { TK_N_TYPES = 8, TK_N_TABLES = 6 };
static const uint32_t known_types[TK_N_TYPES] = {TK_TYPE_F32, TK_TYPE_F16, TK_TYPE_Q8_0, TK_TYPE_Q6_K, TK_TYPE_BF16,
                                                 TK_TYPE_TQ1_0, TK_TYPE_TQ2_0, TK_TYPE_I2_S};
static tk_type_traits type_rows[TK_N_TABLES][TK_N_TYPES];
static const tk_kernels *row_tables[TK_N_TABLES];
static pthread_once_t rows_once = PTHREAD_ONCE_INIT;

static tk_type_traits type_row(const tk_kernels *k, uint32_t type) {
    tk_type_traits r;
    memset(&r, 0, sizeof r);
    r.type = type;
    switch (type) {
    case TK_TYPE_F32: r.name = "F32"; r.block_elems = 1; r.block_bytes = 4; r.act = TK_ACT_F32; break;
    case TK_TYPE_F16:
        r.name = "F16"; r.block_elems = 1; r.block_bytes = 2; r.act = TK_ACT_F32;
        r.gemm_f32 = k->f16_gemm; r.dequant_row = tk_dequant_row_f16; break;
    case TK_TYPE_BF16:
        r.name = "BF16"; r.block_elems = 1; r.block_bytes = 2; r.act = TK_ACT_F32;
        r.gemm_f32 = k->bf16_gemm; r.dequant_row = tk_dequant_row_bf16; break;
    case TK_TYPE_Q8_0:
        r.name = "Q8_0"; r.block_elems = TK_QK8_0; r.block_bytes = (int32_t)sizeof(tk_block_q8_0); r.act = TK_ACT_F32;
        r.gemm_f32 = k->q8_0_gemm; r.dequant_row = tk_dequant_row_q8_0; break;
    case TK_TYPE_Q6_K:
        r.name = "Q6_K"; r.block_elems = TK_QK_K; r.block_bytes = (int32_t)sizeof(tk_block_q6_k); r.act = TK_ACT_F32;
        r.gemm_f32 = k->q6_k_gemm; r.dequant_row = tk_dequant_row_q6_k; break;
    case TK_TYPE_TQ1_0:
        r.name = "TQ1_0"; r.block_elems = TK_QK_K; r.block_bytes = (int32_t)sizeof(tk_block_tq1_0); r.act = TK_ACT_I8;
        r.gemm_i8 = k->tq1_gemm; r.dequant_row = tk_dequant_row_tq1_0; break;
    case TK_TYPE_TQ2_0:
        r.name = "TQ2_0"; r.block_elems = TK_QK_K; r.block_bytes = (int32_t)sizeof(tk_block_tq2_0); r.act = TK_ACT_I8;
        r.gemm_i8 = k->tq2_gemm; r.dequant_row = tk_dequant_row_tq2_0; break;
    case TK_TYPE_I2_S:
        r.name = "I2_S"; r.block_elems = TK_I2S_BLOCK; r.block_bytes = TK_I2S_BLOCK_BYTES; r.act = TK_ACT_I8;
        r.gemm_i2s = k->i2s_gemm; break;
    }
    return r;
}

static void build_rows(void) {
    const tk_kernels *tables[TK_N_TABLES] = {&table_scalar, NULL, NULL, NULL, NULL, NULL};
#if defined(__x86_64__)
    tables[1] = &table_avx2;
    tables[2] = &table_avx512;
    tables[3] = &table_avx512vnni;
#endif
#if defined(__aarch64__) || defined(__ARM_NEON)
    tables[4] = &table_neon;
#endif
#if defined(__aarch64__)
    tables[5] = &table_dotprod;
#endif
    for (int t = 0; t < TK_N_TABLES; t++) {
        row_tables[t] = tables[t];
        if (!tables[t]) continue;
        for (int i = 0; i < TK_N_TYPES; i++) type_rows[t][i] = type_row(tables[t], known_types[i]);
    }
}

const tk_type_traits *tk_type_traits_get(const tk_kernels *k, uint32_t type) {
    if (k == NULL) return NULL;
    pthread_once(&rows_once, build_rows);
    for (int t = 0; t < TK_N_TABLES; t++) {
        if (row_tables[t] != k) continue;
        for (int i = 0; i < TK_N_TYPES; i++)
            if (known_types[i] == type) return &type_rows[t][i];
    }
    return NULL;
}

int tk_path_from_name(const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < TK_PATH_COUNT; i++)
        if (strcmp(name, path_names[i]) == 0) return i;
    return -1;
}

const char *tk_path_name(tk_path path) {
    if ((int)path < 0 || path >= TK_PATH_COUNT) return "unknown";
    return path_names[path];
}

const char *tk_cpu_features(void) { return get_features()->description; }

unsigned long tk_hwcap(void) {
#if defined(__aarch64__) || (defined(__arm__) && defined(__ARM_NEON))
    return getauxval(AT_HWCAP);
#else
    return 0;
#endif
}
