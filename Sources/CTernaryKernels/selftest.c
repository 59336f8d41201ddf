/*
 * selftest.c — the kernel cases `bitnetd selftest` runs on the CPU it is on: every operation of a
 * path's table against the scalar references, on generated data (a fixed seed). Integer kernels
 * (activation quantization, I2_S, TQ2_0, TQ1_0) must agree bit for bit; float-weight kernels
 * (F16, BF16, Q8_0, Q6_K) within a relative tolerance of the sum of |w·x|. It catches what qemu
 * cannot: a board's compiler, libc or CPU giving other results than the ones tested here.
 */
#include "ternary_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t s;
} st_rng;

static uint32_t st_next(st_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 16);
}

static float st_uniform(st_rng *r) { return (float)(st_next(r) & 0xFFFFFF) / (float)0x1000000; }

typedef struct {
    int cases;
    int failures;
    char *msg;
    size_t cap;
} st_report;

static void st_fail(st_report *rep, const char *what) {
    rep->failures++;
    size_t used = strlen(rep->msg);
    if (used + strlen(what) + 3 < rep->cap) {
        if (used) strcat(rep->msg, "; ");
        strcat(rep->msg, what);
    }
}

static void st_quantize(const tk_kernels *k, st_rng *r, st_report *rep) {
    static const int64_t ns[] = {32, 128, 2560, 6912};
    for (int c = 0; c < 4; c++) {
        int64_t n = ns[c];
        float *x = malloc((size_t)n * sizeof(float));
        int8_t *q1 = malloc((size_t)n), *q2 = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) x[i] = (st_uniform(r) - 0.5f) * (c == 3 ? 254.0f : 8.0f);
        if (c == 3) for (int64_t i = 0; i < n; i += 7) x[i] = (float)((int)x[i]) + 0.5f;  /* ties */
        int32_t s1 = 0, s2 = 0;
        float a = tk_quantize_row_i8_ref(x, q1, n, &s1);
        float b = k->quantize_i8(x, q2, n, &s2);
        rep->cases++;
        if (memcmp(&a, &b, sizeof a) != 0 || s1 != s2 || memcmp(q1, q2, (size_t)n) != 0) {
            char m[96];
            snprintf(m, sizeof m, "quantize_i8 n=%lld differs", (long long)n);
            st_fail(rep, m);
        }
        free(x), free(q1), free(q2);
    }
}

/* Random int8 activations, nt rows of K. */
static int8_t *st_acts(st_rng *r, int64_t K, int64_t nt, int extreme) {
    int8_t *q = malloc((size_t)(K * nt));
    for (int64_t i = 0; i < K * nt; i++) q[i] = extreme ? -128 : (int8_t)(st_next(r) & 0xFF);
    return q;
}

static void st_i2s(const tk_kernels *k, st_rng *r, st_report *rep) {
    static const int64_t Ks[] = {128, 640, 2560};
    /* token counts: the gemv, the tiles of every path (4, 6, 8 tokens) and their remainders */
    static const int64_t nts[] = {1, 3, 8, 13};
    const int64_t M = 19;
    for (int ki = 0; ki < 3; ki++)
        for (int ti = 0; ti < 4; ti++) {
            int64_t K = Ks[ki], nt = nts[ti];
            uint8_t *w = malloc((size_t)(M * K / 4));
            for (int64_t i = 0; i < M * K / 4; i++) {
                uint8_t b = 0;
                for (int g = 0; g < 4; g++) b = (uint8_t)(b << 2 | (st_next(r) % 3));
                w[i] = b;
            }
            int8_t *q = st_acts(r, K, nt, 0);
            int32_t *o1 = calloc((size_t)(M * nt), sizeof(int32_t)), *o2 = calloc((size_t)(M * nt), sizeof(int32_t));
            tk_i2s_i8_gemm_ref(w, K, 2, M - 1, q, K, nt, o1, M);
            k->i2s_gemm(w, K, 2, M - 1, q, K, nt, o2, M);
            rep->cases++;
            if (memcmp(o1, o2, (size_t)(M * nt) * sizeof(int32_t)) != 0) {
                char m[96];
                snprintf(m, sizeof m, "I2_S K=%lld tokens=%lld differs", (long long)K, (long long)nt);
                st_fail(rep, m);
            }
            free(w), free(q), free(o1), free(o2);
        }
}

static void st_tq(const tk_kernels *k, int tq1, st_rng *r, st_report *rep) {
    static const int64_t Ks[] = {256, 1024};
    static const int64_t nts[] = {1, 4};
    const int64_t M = 9;
    const size_t bsz = tq1 ? sizeof(tk_block_tq1_0) : sizeof(tk_block_tq2_0);
    for (int ki = 0; ki < 2; ki++)
        for (int ti = 0; ti < 2; ti++) {
            int64_t K = Ks[ki], nt = nts[ti], nb = M * K / 256;
            uint8_t *w = malloc((size_t)nb * bsz);
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = w + (size_t)b * bsz;
                /* Any bytes decode deterministically; the scale a normal f16. */
                for (size_t i = 0; i + 2 < bsz; i++) blk[i] = (uint8_t)(tq1 ? (st_next(r) & 0xFF) : (st_next(r) & 0xFF) % 0xFF);
                uint16_t d = tk_f32_to_f16(0.001f + st_uniform(r) * 0.05f);
                memcpy(blk + bsz - 2, &d, 2);
            }
            int8_t *q = st_acts(r, K, nt, ti == 1 && ki == 1);
            float *o1 = calloc((size_t)(M * nt), sizeof(float)), *o2 = calloc((size_t)(M * nt), sizeof(float));
            (tq1 ? tk_tq1_i8_gemm_ref : tk_tq2_i8_gemm_ref)(w, K, 1, M, q, K, nt, o1, M);
            (tq1 ? k->tq1_gemm : k->tq2_gemm)(w, K, 1, M, q, K, nt, o2, M);
            rep->cases++;
            if (memcmp(o1, o2, (size_t)(M * nt) * sizeof(float)) != 0) {
                char m[96];
                snprintf(m, sizeof m, "%s K=%lld tokens=%lld differs", tq1 ? "TQ1_0" : "TQ2_0", (long long)K, (long long)nt);
                st_fail(rep, m);
            }
            free(w), free(q), free(o1), free(o2);
        }
}

/* Float weights × f32: within 1e-5 of Σ|w·x| (+1e-6) per output; the sum of magnitudes from the
 * reference's own dequantized rows. */
static void st_float(const tk_kernels *k, uint32_t type, st_rng *r, st_report *rep) {
    const tk_type_traits *t = tk_type_traits_get(k, type);
    const tk_type_traits *ref = tk_type_traits_get(tk_kernels_get(TK_PATH_SCALAR), type);
    if (!t || !ref || !t->gemm_f32 || !ref->gemm_f32) return;
    const int64_t K = 512, M = 7, nt = 3;
    const int64_t rowb = K / t->block_elems * t->block_bytes;
    uint8_t *w = malloc((size_t)(M * rowb));
    for (int64_t i = 0; i < M * rowb; i++) w[i] = (uint8_t)st_next(r);
    /* Scales and halves must be finite: rewrite every f16/bf16 field with sane values. */
    if (type == TK_TYPE_F16 || type == TK_TYPE_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (int64_t i = 0; i < M * K; i++) {
            float v = (st_uniform(r) - 0.5f) * 2;
            uint32_t bits;
            memcpy(&bits, &v, 4);
            h[i] = type == TK_TYPE_F16 ? tk_f32_to_f16(v) : (uint16_t)(bits >> 16);
        }
    } else if (type == TK_TYPE_Q8_0) {
        for (int64_t b = 0; b < M * K / 32; b++) {
            tk_block_q8_0 *blk = (tk_block_q8_0 *)(w + b * (int64_t)sizeof(tk_block_q8_0));
            blk->d = tk_f32_to_f16(0.01f + st_uniform(r) * 0.02f);
        }
    } else if (type == TK_TYPE_Q6_K) {
        for (int64_t b = 0; b < M * K / 256; b++) {
            tk_block_q6_k *blk = (tk_block_q6_k *)(w + b * (int64_t)sizeof(tk_block_q6_k));
            blk->d = tk_f32_to_f16(0.001f + st_uniform(r) * 0.01f);
        }
    }
    float *x = malloc((size_t)(K * nt) * sizeof(float));
    for (int64_t i = 0; i < K * nt; i++) x[i] = (st_uniform(r) - 0.5f) * 4;
    float *o1 = calloc((size_t)(M * nt), sizeof(float)), *o2 = calloc((size_t)(M * nt), sizeof(float));
    float *row = malloc((size_t)K * sizeof(float));
    ref->gemm_f32(w, K, 0, M, x, K, nt, o1, M);
    t->gemm_f32(w, K, 0, M, x, K, nt, o2, M);
    rep->cases++;
    int bad = 0;
    for (int64_t m = 0; m < M && !bad; m++) {
        ref->dequant_row(w + m * rowb, row, K);
        for (int64_t tt = 0; tt < nt; tt++) {
            double mag = 0;
            for (int64_t i = 0; i < K; i++) mag += fabs((double)row[i] * x[tt * K + i]);
            double diff = fabs((double)o1[tt * M + m] - o2[tt * M + m]);
            if (!(diff <= 1e-5 * mag + 1e-6)) bad = 1;
        }
    }
    if (bad) {
        char m[96];
        snprintf(m, sizeof m, "%s × f32 outside tolerance", t->name);
        st_fail(rep, m);
    }
    free(w), free(x), free(o1), free(o2), free(row);
}

/* The Q8_0 LM-head copy (--lm-head q8_0): split-Q8_0 rows × Q8_0 activations against the reference
 * (integer block sums are exact on every path; the float sums differ by rounding order only). */
static void st_q8s(const tk_kernels *k, st_rng *r, st_report *rep) {
    static const int64_t Ks[] = {2560, 2656};
    const int64_t M = 23, nt = 2;
    for (int ki = 0; ki < 2; ki++) {
        const int64_t K = Ks[ki], nb = K / TK_QK8_0;
        float *wf = malloc((size_t)(M * K) * sizeof *wf), *xf = malloc((size_t)(nt * K) * sizeof *xf);
        int8_t *wq = malloc((size_t)(M * K));
        float *wd = malloc((size_t)(M * nb) * sizeof *wd);
        tk_block_q8_0 *xq = malloc((size_t)(nt * nb) * sizeof *xq);
        float *o1 = calloc((size_t)(M * nt), sizeof *o1), *o2 = calloc((size_t)(M * nt), sizeof *o2);
        for (int64_t i = 0; i < M * K; i++) wf[i] = st_uniform(r) * 2.0f - 1.0f;
        for (int64_t i = 0; i < nt * K; i++) xf[i] = st_uniform(r) * 2.0f - 1.0f;
        for (int64_t m = 0; m < M; m++) tk_quantize_row_q8s(wf + m * K, wq + m * K, wd + m * nb, K);
        for (int64_t t = 0; t < nt; t++) tk_quantize_row_q8_0(xf + t * K, xq + t * nb, K);
        tk_q8s_q8_0_gemm_ref(wq, wd, K, 1, M, xq, nt, o1, M);
        k->q8s_gemm(wq, wd, K, 1, M, xq, nt, o2, M);
        rep->cases++;
        int ok = 1;
        for (int64_t i = 0; i < M * nt; i++) ok &= fabsf(o1[i] - o2[i]) <= 1e-4f * (fabsf(o1[i]) + 1.0f);
        if (!ok) {
            char m[96];
            snprintf(m, sizeof m, "Q8_0 head copy K=%lld outside tolerance", (long long)K);
            st_fail(rep, m);
        }
        free(wf), free(xf), free(wq), free(wd), free(xq), free(o1), free(o2);
    }
}

int tk_selftest(const tk_kernels *k, int *cases, char *msg, size_t cap) {
    st_report rep = {0, 0, msg, cap};
    if (cap) msg[0] = 0;
    st_rng r = {0x9E3779B97F4A7C15ull};
    st_quantize(k, &r, &rep);
    st_i2s(k, &r, &rep);
    st_tq(k, 0, &r, &rep);
    st_tq(k, 1, &r, &rep);
    st_float(k, TK_TYPE_F16, &r, &rep);
    st_float(k, TK_TYPE_BF16, &r, &rep);
    st_float(k, TK_TYPE_Q8_0, &r, &rep);
    st_float(k, TK_TYPE_Q6_K, &r, &rep);
    st_q8s(k, &r, &rep);
    if (cases) *cases = rep.cases;
    return rep.failures;
}
