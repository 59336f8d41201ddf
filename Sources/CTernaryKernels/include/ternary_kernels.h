/*
 * ternary_kernels.h — bitnetd's ternary and int8 CPU kernels.
 *
 * Contract (read before calling):
 *  - Every function here receives shapes that the Swift side has already validated against the
 *    model file (K a multiple of the type's block size, pointers valid for the whole range).
 *    Kernels never validate and never allocate.
 *  - All kernels are thread-safe and reentrant: callers split rows [r0, r1) among threads.
 *  - On-disk layouts are defined once, here, with static asserts (spec bitnet-gguf.md §3).
 *    The layout is read as published on every CPU; no ISA-specific file format exists.
 *  - Integer kernels (I2_S, TQ2_0/TQ1_0 inner sums) give bit-identical results on every path;
 *    float kernels (F16/BF16/Q8_0/Q6_K × f32) agree to float rounding only.
 *
 * Naming: tk_<weights>_<activations>_<op>_<isa>; the *_ref functions are the scalar references and
 * are always compiled. Fast paths are reached through the traits table returned by tk_kernels_get().
 */
#ifndef BITNETD_TERNARY_KERNELS_H
#define BITNETD_TERNARY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Block layouts (spec §3.2, §3.5). All little-endian; f16 stored as raw uint16_t bits.
 * ------------------------------------------------------------------------------------------- */

/* I2_S: 128 ternary values per 32-byte block; byte 32b+j holds elements 128b+j, +32, +64, +96 in
 * bit pairs 7..6, 5..4, 3..2, 1..0; code = T + 1 (0 = -1, 1 = 0, 2 = +1; 3 never produced).
 * A tensor of M rows × K columns is M·K/4 bytes of codes (row m at m·K/4), then one float32 α,
 * then 28 undefined bytes. K must be a multiple of 128. */
#define TK_I2S_BLOCK 128
#define TK_I2S_BLOCK_BYTES 32

#define TK_QK_K 256
#define TK_QK8_0 32

/* TQ2_0: byte 32c+m, bit pair n (bits 2n..2n+1) holds element 128c + 32n + m; value (t-1)·d. */
typedef struct {
    uint8_t qs[64];
    uint16_t d;
} tk_block_tq2_0;

/* TQ1_0: qs[0..31] 5 trits (elements m + 32n), qs[32..47] 5 trits (160 + m + 16n),
 * qh[0..3] 4 trits (240 + j + 4n); trit n of byte b: ((uint8_t)(b·3^n) · 3) >> 8. */
typedef struct {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
} tk_block_tq1_0;

/* Q8_0: 32 int8 values and one f16 scale (scale first). */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} tk_block_q8_0;

/* Q6_K: 256 values; 4-bit low parts, 2-bit high parts, 16 int8 sub-scales, f16 super-scale. */
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} tk_block_q6_k;

_Static_assert(sizeof(tk_block_tq2_0) == 66, "TQ2_0 block is 66 bytes");
_Static_assert(sizeof(tk_block_tq1_0) == 54, "TQ1_0 block is 54 bytes");
_Static_assert(sizeof(tk_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(tk_block_q6_k) == 210, "Q6_K block is 210 bytes");

/* ---------------------------------------------------------------------------------------------
 * Scalar conversions
 * ------------------------------------------------------------------------------------------- */

float tk_f16_to_f32(uint16_t h);
uint16_t tk_f32_to_f16(float f);          /* round to nearest even, like F16C / ggml */
float tk_bf16_to_f32(uint16_t h);
/* Round each value to f16 precision and back (x[i] = f32(f16(x[i]))), in place. */
void tk_round_f16_inplace(float *x, int64_t n);

/* ---------------------------------------------------------------------------------------------
 * Activation quantization (spec §3.3): per token, int8 absmax.
 *   amax = max(1e-5, max|x|) in double; s = (float)(127/amax);
 *   q[k] = clamp(nearest_int(x[k]*s), -128, 127) with round-half-to-even; *sum = Σ q[k].
 * Returns s (the activation scale). n any positive length.
 * Inputs are expected to be finite; with NaN or ±inf in x the result is unspecified (paths may
 * differ), as no valid forward pass produces them.
 * ------------------------------------------------------------------------------------------- */
float tk_quantize_row_i8_ref(const float *x, int8_t *q, int64_t n, int32_t *sum);

/* ---------------------------------------------------------------------------------------------
 * Kernel signatures (the traits table holds one pointer per operation).
 *
 * Matrix × matrix over rows [r0, r1) of the weight matrix and nt activation rows ("tokens"):
 *   w      start of the weight tensor's data (row 0), K columns per row;
 *   act    nt rows of activations, row t at act + t*ldact;
 *   out    out[t*ldo + m] for m in [r0, r1).
 * nt == 1 is the matrix × vector case used for token generation.
 * ------------------------------------------------------------------------------------------- */

/* I2_S × int8: out = Σ_k code[m][k]·q[t][k] (raw codes 0..2, int32). The caller subtracts the
 * activation sum to get Σ T·q. Range: |out| ≤ 2·128·K fits int32 for K < 8,388,608. */
typedef void (*tk_i2s_i8_gemm_fn)(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                                  const int8_t *q, int64_t ldq, int64_t nt,
                                  int32_t *out, int64_t ldo);

/* TQ2_0 / TQ1_0 × int8 (per-token int8 activations, same quantizer as I2_S):
 *   out = Σ_b f16(d_b) · (float)(Σ_{k∈b} t·q − Σ_{k∈b} q), summed in float in block order b = 0,1,…
 * so that every path gives bit-identical results (the inner int sums are exact). Each step is one
 * fused multiply-add, acc = fmaf(f16(d_b), (float)isum_b, acc), so the bits do not depend on whether
 * a compiler would have contracted a separate multiply and add. */
typedef void (*tk_tq_i8_gemm_fn)(const void *w, int64_t K, int64_t r0, int64_t r1,
                                 const int8_t *q, int64_t ldq, int64_t nt,
                                 float *out, int64_t ldo);

/* Float weights (F16, BF16, Q8_0, Q6_K; w points to row 0) × f32 activations:
 *   out = Σ_k W[m][k]·x[t][k], accumulated in f32 (order is path-specific). */
typedef void (*tk_f_gemm_fn)(const void *w, int64_t K, int64_t r0, int64_t r1,
                             const float *x, int64_t ldx, int64_t nt,
                             float *out, int64_t ldo);

/* Quantize one activation row (same contract as tk_quantize_row_i8_ref; bit-identical). */
typedef float (*tk_quantize_i8_fn)(const float *x, int8_t *q, int64_t n, int32_t *sum);

/* Scalar references (always compiled). */
void tk_i2s_i8_gemm_ref(const uint8_t *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, int32_t *out, int64_t ldo);
void tk_tq2_i8_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo);
void tk_tq1_i8_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, int64_t ldq, int64_t nt, float *out, int64_t ldo);
void tk_f16_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo);
void tk_bf16_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo);
void tk_q8_0_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo);
void tk_q6_k_f32_gemm_ref(const void *w, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t ldx, int64_t nt, float *out, int64_t ldo);

/* ---------------------------------------------------------------------------------------------
 * Row dequantization (embedding lookup, tests). `row` points at the start of the row's bytes.
 * I2_S needs α (the tensor scale) and K a multiple of 128; block types need K a multiple of
 * their block size.
 * ------------------------------------------------------------------------------------------- */
void tk_dequant_row_f16(const void *row, float *y, int64_t K);
void tk_dequant_row_bf16(const void *row, float *y, int64_t K);
void tk_dequant_row_q8_0(const void *row, float *y, int64_t K);
void tk_dequant_row_q6_k(const void *row, float *y, int64_t K);
void tk_dequant_row_tq2_0(const void *row, float *y, int64_t K);
void tk_dequant_row_tq1_0(const void *row, float *y, int64_t K);
void tk_dequant_row_i2s(const void *row, float alpha, float *y, int64_t K);

/* ---------------------------------------------------------------------------------------------
 * Traits table and run-time dispatch
 * ------------------------------------------------------------------------------------------- */

typedef enum {
    TK_PATH_SCALAR = 0,
    TK_PATH_AVX2 = 1,     /* x86-64 AVX2 (+F16C, FMA) */
    TK_PATH_AVX512 = 2,   /* x86-64 AVX-512 F/BW (+VNNI where present) */
    TK_PATH_NEON = 3,     /* aarch64 ARMv8.0 NEON (Pi 4), or armhf NEON on 32-bit ARM */
    TK_PATH_DOTPROD = 4,  /* aarch64 NEON + SDOT (ARMv8.2 dotprod; Pi 5) */
    TK_PATH_COUNT = 5
} tk_path;

/* Attention and the Q8_0 head copy (contracts below: tk_attn_scores, tk_attn_values, tk_q8s_q8_0_gemm). */
typedef void (*tk_attn_scores_fn)(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out);
typedef void (*tk_attn_values_fn)(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                                  const float *p, float *out);
typedef void (*tk_q8s_gemm_fn)(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                               int64_t nt, float *out, int64_t ldo);

typedef struct {
    tk_path path;
    const char *name;               /* "scalar", "avx2", "avx512", "neon", "dotprod" */
    tk_quantize_i8_fn quantize_i8;
    tk_i2s_i8_gemm_fn i2s_gemm;
    tk_tq_i8_gemm_fn tq2_gemm;
    tk_tq_i8_gemm_fn tq1_gemm;
    tk_f_gemm_fn f16_gemm;
    tk_f_gemm_fn bf16_gemm;
    tk_f_gemm_fn q8_0_gemm;
    tk_f_gemm_fn q6_k_gemm;
    tk_attn_scores_fn attn_scores;  /* same bits on every path */
    tk_attn_values_fn attn_values;  /* same bits on every path */
    tk_q8s_gemm_fn q8s_gemm;        /* the Q8_0 LM-head copy × Q8_0 activations */
} tk_kernels;

/* ---------------------------------------------------------------------------------------------
 * Per weight type: what the engine needs to run a matrix of that type on one path (ggml's
 * type_traits_cpu is the model). Indexed by the GGUF type id of the file; the kernels come from
 * the path's table (which points at the reference where the path has no faster one).
 * ------------------------------------------------------------------------------------------- */

enum {
    TK_TYPE_F32 = 0, TK_TYPE_F16 = 1, TK_TYPE_Q8_0 = 8, TK_TYPE_Q6_K = 14, TK_TYPE_BF16 = 30,
    TK_TYPE_TQ1_0 = 34, TK_TYPE_TQ2_0 = 35, TK_TYPE_I2_S = 36,
};

typedef enum {
    TK_ACT_I8 = 0,   /* per-token int8 activations (tk_quantize_row_i8): the ternary types */
    TK_ACT_F32 = 1,  /* f32 activations: the float types */
} tk_act;

typedef struct {
    uint32_t type;          /* GGUF type id (TK_TYPE_*) */
    const char *name;       /* "I2_S", "TQ2_0", … */
    int32_t block_elems;    /* a row's length is a multiple of this */
    int32_t block_bytes;    /* bytes per block (I2_S: 32 per 128 codes; its tensor adds α and padding) */
    tk_act act;
    tk_i2s_i8_gemm_fn gemm_i2s;   /* I2_S: raw-code sums (int32); NULL otherwise */
    tk_tq_i8_gemm_fn gemm_i8;     /* TQ2_0/TQ1_0 × int8 (float); NULL otherwise */
    tk_f_gemm_fn gemm_f32;        /* float weights × f32; NULL otherwise (F32: none in C) */
    /* One row to f32 (embedding lookup); NULL for I2_S (needs α: tk_dequant_row_i2s) and F32. */
    void (*dequant_row)(const void *row, float *y, int64_t K);
} tk_type_traits;

/* The row of `type` for the path of `k`, or NULL for a type the kernels do not know. */
const tk_type_traits *tk_type_traits_get(const tk_kernels *k, uint32_t type);

/* 1 if this build contains `path` and the running CPU supports it, else 0. */
int tk_path_available(tk_path path);
/* The fastest available path for this CPU. */
tk_path tk_best_path(void);
/* The traits table for `path` (operations a path does not accelerate point at the reference),
 * or NULL when tk_path_available(path) == 0. Tables are static; never freed. */
const tk_kernels *tk_kernels_get(tk_path path);

/* `bitnetd selftest`: runs every operation of `k` against the scalar references on generated data
 * (integer kernels bit-exact, float-weight kernels within 1e-5 of Σ|w·x|). Returns the number of
 * failed cases; *cases gets the number run; msg (cap bytes) a "; "-separated list of failures. */
int tk_selftest(const tk_kernels *k, int *cases, char *msg, size_t cap);
/* Parses "scalar|avx2|avx512|neon|dotprod"; returns -1 for an unknown name. */
int tk_path_from_name(const char *name);
const char *tk_path_name(tk_path path);
/* A short human-readable description of the CPU features seen (e.g. "avx2 avx512f avx512vnni"). */
const char *tk_cpu_features(void);
/* The raw AT_HWCAP word of this process (Linux; 0 elsewhere), for tests that check the dispatcher
 * against the OS's own report (some Swift SDKs do not export getauxval). */
unsigned long tk_hwcap(void);

/* ---------------------------------------------------------------------------------------------
 * Attention scores with one summation order on every path (attention.c).
 *
 * out[j] = Σ_i f32(k[j·D + i]) · q[i] for j in [0, rows), where k holds F16 bits. The sum uses eight
 * lanes: lane l accumulates the products of elements i ≡ l (mod 8) in index order, each product
 * and each sum rounded to float (no fused multiply-add); the lanes are then combined as
 * ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). Every path computes exactly this, so attention — whose
 * output is re-quantized to int8 by the next layer and would amplify a last-bit difference — is
 * bit-identical across CPUs. `path` picks the implementation (an unavailable one falls back to
 * the reference, which gives the same bits).
 * ------------------------------------------------------------------------------------------- */
float tk_f16_dot8_ref(const uint16_t *k, const float *q, int64_t D);
void tk_attn_scores(const uint16_t *k, int64_t D, int64_t rows, const float *q, float *out, tk_path path);

/* Attention output out[i] = Σ_j p[j] · f32(v[row_j·D + i]) for i in [0, D), where row_j = j for
 * j < prefix and slots[j − prefix] for the next nslots terms (a tree pass's own path; slots may be
 * NULL when nslots is 0). Each element starts at 0 and adds its terms in j order, every product and
 * sum rounded to float (no fused multiply-add) — the same bits on every path. */
void tk_attn_values(const uint16_t *v, int64_t D, int64_t prefix, const int32_t *slots, int64_t nslots,
                    const float *p, float *out, tk_path path);

/* Q8_0 quantization of one row of K floats (K a multiple of 32) into K/32 tk_block_q8_0. */
void tk_quantize_row_q8_0(const float *x, void *out, int64_t K);

/* The optional Q8_0 LM-head copy, split layout: row m's K int8 values at wq + m·K and its K/32 block
 * scales (f16-rounded, stored as float) at wd + m·K/32 — the values and scales of
 * tk_quantize_row_q8_0, kept apart so that a kernel scales eight blocks with one vector operation.
 * The gemm multiplies by nt activation rows quantized to Q8_0 (K/32 blocks each at xq):
 * out[t·ldo + m] = Σ_b dw_b·dx_b·(Σ q_w·q_x) for m in [r0, r1). Integer block sums exact
 * everywhere; the float accumulation order is path-specific. */
void tk_quantize_row_q8s(const float *x, int8_t *wq, float *wd, int64_t K);
void tk_q8s_q8_0_gemm_ref(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                          int64_t nt, float *out, int64_t ldo);
void tk_q8s_q8_0_gemm(const int8_t *wq, const float *wd, int64_t K, int64_t r0, int64_t r1, const void *xq,
                      int64_t nt, float *out, int64_t ldo, tk_path path);

#ifdef __cplusplus
}
#endif
#endif /* BITNETD_TERNARY_KERNELS_H */
