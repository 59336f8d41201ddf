/*
 * bench-kernels.c — micro-benchmark of the CTernaryKernels fast paths (native only).
 *
 *   bench-kernels [--path NAME] [--quick]
 *
 * Reports, for the chosen path (default: tk_best_path()):
 *   - plain memory read bandwidth (a reference for what streaming kernels can reach);
 *   - I2_S gemv K=2560 × M=6912, weights streamed from a pool larger than the caches, GB/s of weight
 *     bytes, 1 thread; and the same matrix cache-hot;
 *   - I2_S gemm with 8 / 64 tokens (prompt processing), GMAC/s;
 *   - F16 gemv K=2560 × M=128256 (the 2B4T LM head, 657 MB), GB/s, 1 thread;
 *   - (1-thread figures are per CPU-second; see now())
 *   - a model-shaped pass: 30 layers of 2B4T ternary matmuls (Q, K, V, O, gate, up, down, each
 *     preceded by its activation quantization) plus the F16 LM head, 1 and 2 threads (rows split,
 *     spin barrier between matmuls): kernel-only upper bounds for tokens/s in generation and, with
 *     64 tokens and no LM head, for prompt processing.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ternary_kernels.h"

/* Single-threaded figures are timed in process CPU time, so a machine shared with other jobs still
 * gives the throughput of one unloaded core (memory contention aside); the multi-threaded model pass
 * is timed on the wall clock. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *xalloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static void fill_codes(uint8_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t r = rnd();
        w[i] = (uint8_t)((r % 3) << 6 | (r / 3 % 3) << 4 | (r / 9 % 3) << 2 | (r / 27 % 3));
    }
}

static void fill_f16(uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = tk_f32_to_f16(((float)(rnd() >> 40) / 16777216.0f - 0.5f) * 0.1f);
}

static volatile int64_t sink;

/* ---------------------------------------------------------------------------------------------
 * Memory read bandwidth reference
 * ------------------------------------------------------------------------------------------- */

static double read_bandwidth(const uint8_t *p, size_t n) {
    const uint64_t *u = (const uint64_t *)p;
    const size_t words = n / 8;
    uint64_t best = 0;
    double best_dt = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        const double t = now();
        uint64_t a = 0, b = 0, c = 0, d = 0;
        for (size_t i = 0; i + 4 <= words; i += 4) {
            a += u[i];
            b += u[i + 1];
            c += u[i + 2];
            d += u[i + 3];
        }
        const double dt = now() - t;
        if (dt < best_dt) best_dt = dt;
        best += a ^ b ^ c ^ d;
    }
    sink = (int64_t)best;
    return (double)n / best_dt / 1e9;
}

/* ---------------------------------------------------------------------------------------------
 * Model-shaped pass with a small spin-barrier thread team
 * ------------------------------------------------------------------------------------------- */

enum { D = 2560, DKV = 640, F = 6912, VOCAB = 128256, LAYERS = 30 };

typedef struct {
    int64_t M, K;
    uint8_t *w;
} ternary_mat;

typedef struct {
    const tk_kernels *k;
    ternary_mat mats[LAYERS][7];
    uint16_t *head;
    float *x;     /* [nt][F] activations (random; the pass measures kernels, not a model) */
    int8_t *q;    /* [nt][F] */
    int32_t *acc; /* [nt][F] */
    float *logits;
    int64_t nt;
    int with_head;
    int nthreads;
    atomic_int barrier_count;
    atomic_int barrier_sense;
} model;

static void spin_barrier(model *m, int *local_sense) {
    *local_sense = !*local_sense;
    if (atomic_fetch_add(&m->barrier_count, 1) == m->nthreads - 1) {
        atomic_store(&m->barrier_count, 0);
        atomic_store(&m->barrier_sense, *local_sense);
    } else {
        /* Spin briefly, then yield: on a machine shared with other jobs a pure spin would burn the
         * time slice the other thread needs. */
        for (int spins = 0; atomic_load_explicit(&m->barrier_sense, memory_order_acquire) != *local_sense; spins++)
            if (spins > 2000) sched_yield();
    }
}

typedef struct {
    model *m;
    int tid;
} worker_arg;

static void model_pass(model *m, int tid) {
    int sense = 0;
    const int nth = m->nthreads;
    for (int l = 0; l < LAYERS; l++) {
        for (int j = 0; j < 7; j++) {
            const ternary_mat *tm = &m->mats[l][j];
            /* Quantization of the nt activation rows is split by token; then rows of W by thread. */
            for (int64_t t = tid; t < m->nt; t += nth) {
                int32_t s;
                m->k->quantize_i8(m->x + t * F, m->q + t * F, tm->K, &s);
            }
            spin_barrier(m, &sense);
            const int64_t r0 = tm->M * tid / nth, r1 = tm->M * (tid + 1) / nth;
            m->k->i2s_gemm(tm->w, tm->K, r0, r1, m->q, F, m->nt, m->acc, F);
            spin_barrier(m, &sense);
        }
    }
    if (m->with_head) {
        const int64_t r0 = (int64_t)VOCAB * tid / nth, r1 = (int64_t)VOCAB * (tid + 1) / nth;
        /* Only the last token needs logits. */
        m->k->f16_gemm(m->head, D, r0, r1, m->x + (m->nt - 1) * F, F, 1, m->logits, VOCAB);
        spin_barrier(m, &sense);
    }
}

static void *worker(void *p) {
    worker_arg *a = p;
    model_pass(a->m, a->tid);
    return NULL;
}

static double run_model(model *m, int nthreads) {
    m->nthreads = nthreads;
    atomic_store(&m->barrier_count, 0);
    atomic_store(&m->barrier_sense, 0);
    pthread_t th[8];
    worker_arg args[8];
    const double t = nthreads == 1 ? now() : wall();
    for (int i = 1; i < nthreads; i++) {
        args[i].m = m;
        args[i].tid = i;
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    model_pass(m, 0);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
    return (nthreads == 1 ? now() : wall()) - t;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    tk_path path = tk_best_path();
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
            const int p = tk_path_from_name(argv[++i]);
            if (p < 0 || !tk_path_available((tk_path)p)) {
                fprintf(stderr, "path %s not available\n", argv[i]);
                return 2;
            }
            path = (tk_path)p;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: %s [--path NAME] [--quick]\n", argv[0]);
            return 2;
        }
    }
    const tk_kernels *k = tk_kernels_get(path);
    printf("bench path: %s (cpu: %s)\n", k->name, tk_cpu_features());
    printf("load average at start: ");
    FILE *la = fopen("/proc/loadavg", "r");
    char lbuf[64] = "?";
    if (la) {
        if (!fgets(lbuf, sizeof lbuf, la)) lbuf[0] = 0;
        fclose(la);
    }
    printf("%s", lbuf);

    /* Pool of I2_S matrices 2560 × 6912 (4.4 MB each), ~265 MB in total: streamed like a model. */
    const int64_t K = D, M = F;
    const size_t mat_bytes = (size_t)(M * K / 4);
    const int pool = quick ? 16 : 60;
    uint8_t *wpool = xalloc(mat_bytes * (size_t)pool);
    fill_codes(wpool, mat_bytes * (size_t)pool);
    printf("memory read bandwidth (plain loop, 1 thread): %.1f GB/s\n", read_bandwidth(wpool, mat_bytes * (size_t)pool));

    int8_t *q = xalloc((size_t)F * 64);
    for (int i = 0; i < F * 64; i++) q[i] = (int8_t)(rnd() % 255 - 127);
    int32_t *out = xalloc(sizeof(int32_t) * (size_t)M * 64);

    {
        const int reps = pool * (quick ? 2 : 4);
        double t = now();
        for (int r = 0; r < reps; r++) k->i2s_gemm(wpool + (size_t)(r % pool) * mat_bytes, K, 0, M, q, K, 1, out, M);
        double dt = now() - t;
        printf("i2s gemv 2560x6912, streamed: %.3f ms/call, %.1f GB/s of weights, %.1f GMAC/s\n",
               dt / reps * 1e3, (double)mat_bytes * reps / dt / 1e9, (double)M * K * reps / dt / 1e9);
        t = now();
        for (int r = 0; r < reps; r++) k->i2s_gemm(wpool, K, 0, M, q, K, 1, out, M);
        dt = now() - t;
        printf("i2s gemv 2560x6912, cache-hot: %.3f ms/call, %.1f GB/s of weights, %.1f GMAC/s\n",
               dt / reps * 1e3, (double)mat_bytes * reps / dt / 1e9, (double)M * K * reps / dt / 1e9);
        const int64_t nts[] = {4, 8, 64};
        for (int i = 0; i < 3; i++) {
            const int64_t nt = nts[i];
            const int reps2 = quick ? 4 : (int)(256 / nt) + 2;
            t = now();
            for (int r = 0; r < reps2; r++) k->i2s_gemm(wpool + (size_t)(r % pool) * mat_bytes, K, 0, M, q, K, nt, out, M);
            dt = now() - t;
            printf("i2s gemm 2560x6912 x %lld tokens: %.2f ms/call, %.1f GMAC/s\n", (long long)nt, dt / reps2 * 1e3,
                   (double)M * K * nt * reps2 / dt / 1e9);
        }
    }

    /* Quantizer. */
    {
        float *x = xalloc(sizeof(float) * F);
        for (int i = 0; i < F; i++) x[i] = (float)(rnd() % 1000) * 0.01f - 5.0f;
        const int reps = 20000;
        int32_t s;
        double t = now();
        for (int r = 0; r < reps; r++) k->quantize_i8(x, q, F, &s);
        double dt = now() - t;
        printf("quantize_i8 n=6912: %.2f us/call\n", dt / reps * 1e6);
        free(x);
    }

    /* F16 LM head gemv. */
    const size_t head_elems = (size_t)VOCAB * D;
    uint16_t *head = xalloc(head_elems * 2);
    fill_f16(head, head_elems);
    float *xf = xalloc(sizeof(float) * (size_t)F * 64);
    for (int i = 0; i < F * 64; i++) xf[i] = (float)(rnd() % 2000) * 0.001f - 1.0f;
    float *logits = xalloc(sizeof(float) * VOCAB * 4);
    {
        const int reps = quick ? 2 : 5;
        k->f16_gemm(head, D, 0, VOCAB, xf, D, 1, logits, VOCAB);
        double t = now();
        for (int r = 0; r < reps; r++) k->f16_gemm(head, D, 0, VOCAB, xf, D, 1, logits, VOCAB);
        double dt = now() - t;
        printf("f16 gemv 2560x128256 (LM head): %.1f ms/call, %.1f GB/s\n", dt / reps * 1e3,
               (double)head_elems * 2 * reps / dt / 1e9);
        t = now();
        k->f16_gemm(head, D, 0, VOCAB, xf, D, 4, logits, VOCAB);
        dt = now() - t;
        printf("f16 gemm 2560x128256 x 4 tokens: %.1f ms/call, %.1f GFLOP/s\n", dt * 1e3,
               2.0 * (double)head_elems * 4 / dt / 1e9);
    }
    /* Q6_K LM head gemv (a Q6_K token embedding used as the head): streamed, and cache-hot
     * (256 rows, 168 KB, called repeatedly) to separate the kernel's compute from memory. */
    {
        const size_t nbk = head_elems / TK_QK_K;
        tk_block_q6_k *q6 = xalloc(nbk * sizeof *q6);
        uint8_t *p = (uint8_t *)q6;
        for (size_t i = 0; i < nbk * sizeof *q6; i++) p[i] = (uint8_t)rnd();
        for (size_t b = 0; b < nbk; b++) q6[b].d = tk_f32_to_f16(0.01f);
        const int reps = quick ? 2 : 5;
        k->q6_k_gemm(q6, D, 0, VOCAB, xf, D, 1, logits, VOCAB);
        double t = now();
        for (int r = 0; r < reps; r++) k->q6_k_gemm(q6, D, 0, VOCAB, xf, D, 1, logits, VOCAB);
        double dt = now() - t;
        printf("q6_k gemv 2560x128256 (LM head), streamed: %.1f ms/call, %.1f GB/s of weights\n", dt / reps * 1e3,
               (double)(nbk * sizeof *q6) * reps / dt / 1e9);
        const int hot_reps = quick ? 200 : 1000;
        t = now();
        for (int r = 0; r < hot_reps; r++) k->q6_k_gemm(q6, D, 0, 256, xf, D, 1, logits, VOCAB);
        dt = now() - t;
        printf("q6_k gemv 2560x256, cache-hot: %.1f us/call, %.2f Gvalues/s\n", dt / hot_reps * 1e6,
               256.0 * D * hot_reps / dt / 1e9);
        free(q6);
    }
    free(wpool);

    /* Model-shaped pass. */
    if (!quick) {
        static model m;
        memset(&m, 0, sizeof m);
        m.k = k;
        const int64_t shapes[7][2] = {{D, D}, {DKV, D}, {DKV, D}, {D, D}, {F, D}, {F, D}, {D, F}}; /* M, K */
        size_t total = 0;
        for (int l = 0; l < LAYERS; l++)
            for (int j = 0; j < 7; j++) {
                ternary_mat *tm = &m.mats[l][j];
                tm->M = shapes[j][0];
                tm->K = shapes[j][1];
                tm->w = xalloc((size_t)(tm->M * tm->K / 4));
                fill_codes(tm->w, (size_t)(tm->M * tm->K / 4));
                total += (size_t)(tm->M * tm->K / 4);
            }
        m.head = head;
        m.x = xf;
        m.q = q;
        m.acc = out;
        m.logits = logits;
        printf("model-shaped pass: %.0f MB ternary + %.0f MB F16 head\n", total / 1e6, head_elems * 2 / 1e6);
        for (int nth = 1; nth <= 2; nth++) {
            m.nt = 1;
            m.with_head = 1;
            run_model(&m, nth); /* warm-up */
            double best = 1e9;
            for (int r = 0; r < 3; r++) {
                const double dt = run_model(&m, nth);
                if (dt < best) best = dt;
            }
            m.with_head = 0;
            double best_nohead = 1e9;
            for (int r = 0; r < 3; r++) {
                const double dt = run_model(&m, nth);
                if (dt < best_nohead) best_nohead = dt;
            }
            printf("  generation, %d thread(s): %.1f ms/token → %.1f tok/s (ternary only: %.1f ms, head: %.1f ms)\n", nth,
                   best * 1e3, 1.0 / best, best_nohead * 1e3, (best - best_nohead) * 1e3);
            m.nt = 64;
            m.with_head = 0;
            const double dt = run_model(&m, nth);
            printf("  prompt, 64 tokens, %d thread(s): %.0f ms → %.1f tok/s (ternary matmuls only)\n", nth, dt * 1e3,
                   64.0 / dt);
        }
    }
    free(head);
    free(xf);
    free(q);
    free(out);
    free(logits);
    return 0;
}
