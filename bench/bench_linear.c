#define _POSIX_C_SOURCE 200809L
/* make bench-linear: lsr_linear_cross_entropy against the same three
 * products alone (its floor) and PyTorch's F.linear + F.cross_entropy, in
 * one run, time and extra memory.
 *
 *   bench_linear [--threads T] [--no-torch]
 *   bench_linear --child fused|gemm N D K T float32|bfloat16
 *                                   (one measurement; used by the above)
 *
 * Each measurement runs in a fresh process: its inputs and output buffers
 * are allocated and touched first, then one warm-up call and the best of 3
 * timed calls; "extra memory" is the peak resident set over the calls minus
 * the resident set before them (getrusage's ru_maxrss against /proc's
 * VmRSS).  "gemm" is the three products of the unfused computation alone,
 * by the same fixed-tile sgemm (logits N x K, then dH = G W and
 * dW = G^T H on that buffer), with nothing else.  PyTorch: forward and
 * backward of F.linear + F.cross_entropy(label_smoothing=0.1), the
 * gradients accumulated into preallocated .grad tensors.
 * Each shape runs in fp32, then with bf16 H and W (lsr: the bf16 products
 * of lsr_gemm_bf16, float sums and gradients; its floor the same three
 * bf16 products; PyTorch: h, w and b in bfloat16).  Last line:
 *   vs-gemm G vs-torch T mem-vs-torch M bf16-speedup S
 * G: fused time / products-alone time, T: PyTorch time / fused time, M:
 * fused extra memory / PyTorch's, each the worst over the fp32 shapes; S:
 * fp32 fused time / bf16 fused time, the worst over the shapes (nan where
 * bf16 products are not available). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"
#include "lsr/linear.h"
#include "net/net.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static double rss_mb(void) { /* current resident set, MB */
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = NAN;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lf", &kb) == 1) break;
    if (f) fclose(f);
    return kb / 1024.0;
}

static double peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static float *filled(size_t count, float scale, unsigned seed) {
    float *v = malloc(count * sizeof(float));
    if (!v) return NULL;
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = scale * ((float)(seed >> 8) * 0x1p-24f - 0.5f);
    }
    return v;
}

/* v rounded to bf16 in place: its first half holds the values */
static uint16_t *as_bf16(float *v, size_t count) {
    if (v) lsr_round_bf16((uint16_t *)(void *)v, v, count);
    return (uint16_t *)(void *)v;
}

static int child(const char *mode, long n, long d, long k, int threads, const char *dtype) {
    const int bf16 = strcmp(dtype, "bfloat16") == 0;
    float *h = filled((size_t)n * d, 2.0f, 1), *w = filled((size_t)k * d, 0.2f, 2);
    const uint16_t *h16 = bf16 ? as_bf16(h, (size_t)n * d) : NULL;
    const uint16_t *w16 = bf16 ? as_bf16(w, (size_t)k * d) : NULL;
    float *bias = filled((size_t)k, 0.1f, 3), *dh = filled((size_t)n * d, 0.0f, 4);
    float *dw = filled((size_t)k * d, 0.0f, 5), *db = filled((size_t)k, 0.0f, 6);
    int64_t *labels = malloc((size_t)n * sizeof(int64_t));
    if (!h || !w || !bias || !dh || !dw || !db || !labels) return 1;
    for (long i = 0; i < n; i++)
        labels[i] = (i * 7919) % k;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = 0.1f;
    o.threads = threads;
    if (bf16) o.logits_dtype = LSR_DTYPE_BFLOAT16;
    const int fused = strcmp(mode, "fused") == 0;
    float *logits = NULL;
    uint16_t *g16 = NULL; /* bf16: the gradient products' bf16 G */
    lsr_gemm_bf16_cache *cache = bf16 ? lsr_gemm_bf16_cache_new() : NULL;
    const double before = rss_mb();
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        const double t0 = now();
        if (fused) {
            float loss;
            if (lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, bf16 ? (const void *)h16 : h, d,
                                         bf16 ? (const void *)w16 : w, bias, labels, n, d, k, NULL,
                                         &o)) {
                fprintf(stderr, "bench_linear: %s\n", lsr_last_error());
                return 1;
            }
        } else if (bf16) {
            if (!logits) logits = malloc((size_t)n * k * sizeof(float));
            if (!g16) g16 = calloc((size_t)n * k, sizeof(uint16_t));
            if (!logits || !g16 || !cache) return 1;
            if (lsr_gemm_bf16(cache, 0, 1, (int)n, (int)k, (int)d, h16, (int)d, w16, (int)d, 0,
                              logits, (int)k) ||
                lsr_gemm_bf16(cache, 0, 0, (int)n, (int)d, (int)k, g16, (int)k, w16, (int)d, 0, dh,
                              (int)d) ||
                lsr_gemm_bf16(cache, 1, 0, (int)k, (int)d, (int)n, g16, (int)k, h16, (int)d, 0, dw,
                              (int)d)) {
                fprintf(stderr, "bench_linear: %s\n", lsr_last_error());
                return 1;
            }
        } else {
            if (!logits) logits = malloc((size_t)n * k * sizeof(float));
            if (!logits) return 1;
            lsr_gemm(0, 1, (int)n, (int)k, (int)d, 1.0f, h, (int)d, w, (int)d, 0.0f, logits,
                     (int)k);
            lsr_gemm(0, 0, (int)n, (int)d, (int)k, 1.0f, logits, (int)k, w, (int)d, 0.0f, dh,
                     (int)d);
            lsr_gemm(1, 0, (int)k, (int)d, (int)n, 1.0f, logits, (int)k, h, (int)d, 0.0f, dw,
                     (int)d);
        }
        const double t = now() - t0;
        if (r) best = fmin(best, t);
    }
    printf("%.6f %.1f\n", best, peak_mb() - before);
    return 0;
}

static int measure(const char *cmd, double *seconds, double *extra_mb) {
    FILE *p = popen(cmd, "r");
    if (!p) return 1;
    int got = fscanf(p, "%lf %lf", seconds, extra_mb);
    int rc = pclose(p);
    return got != 2 || rc != 0;
}

int main(int argc, char **argv) {
    if (argc == 8 && !strcmp(argv[1], "--child"))
        return child(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]), atoi(argv[6]), argv[7]);
    int threads = 2, use_torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else {
            fprintf(stderr, "bench_linear: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    static const long shapes[][3] = {{4096, 1024, 32000}, {2048, 2048, 128256}};
    const int have_bf16 = lsr_gemm_bf16_available() == LSR_OK;
    printf("lsr %s, %d threads, eps 0.1, mean, bias; sgemm: %s; bf16 products: %s; best of 3 "
           "after a warm-up, each in a fresh process\n",
           LSR_VERSION_STRING, threads, lsr_gemm_backend(),
           have_bf16 ? "oneDNN matmul, fixed tiles" : lsr_last_error());
    printf("%-20s %-5s %10s %9s %10s %9s %10s %9s %8s %8s %9s\n", "N x D x K", "dtype", "fused s",
           "extra MB", "gemms s", "extra MB", "torch s", "extra MB", "vs-gemm", "vs-torch",
           "mem-ratio");
    double worst_g = 0.0, worst_t = INFINITY, worst_m = 0.0, worst_bf16 = INFINITY;
    int failed = 0;
    for (size_t row = 0; row < 2 * sizeof shapes / sizeof shapes[0]; row++) {
        const size_t s = row / 2;
        const int bf16 = (int)(row % 2);
        if (bf16 && !have_bf16) {
            worst_bf16 = NAN;
            continue;
        }
        const char *dtype = bf16 ? "bfloat16" : "float32";
        const long n = shapes[s][0], d = shapes[s][1], k = shapes[s][2];
        char cmd[1024];
        double tf, mf, tg, mg, tt = NAN, mt = NAN;
        static double tf_fp32;
        snprintf(cmd, sizeof cmd, "'%s' --child fused %ld %ld %ld %d %s", argv[0], n, d, k, threads,
                 dtype);
        failed |= measure(cmd, &tf, &mf);
        snprintf(cmd, sizeof cmd, "'%s' --child gemm %ld %ld %ld %d %s", argv[0], n, d, k, threads,
                 dtype);
        failed |= measure(cmd, &tg, &mg);
        if (use_torch) {
            snprintf(cmd, sizeof cmd, "'%s' %s/torch_linear.py %ld %ld %ld %d %s 2>/dev/null",
                     python(), LSR_BENCH_DIR, n, d, k, threads, dtype);
            failed |= measure(cmd, &tt, &mt);
        }
        char name[48];
        snprintf(name, sizeof name, "%ldx%ldx%ld", n, d, k);
        printf("%-20s %-5s %10.3f %9.1f %10.3f %9.1f %10.3f %9.1f %8.2f %8.2f %9.4f\n", name,
               bf16 ? "bf16" : "fp32", tf, mf, tg, mg, tt, mt, tf / tg, tt / tf, mf / mt);
        fflush(stdout);
        if (bf16) {
            worst_bf16 = fmin(worst_bf16, tf_fp32 / tf);
            continue;
        }
        tf_fp32 = tf;
        worst_g = fmax(worst_g, tf / tg);
        if (use_torch) {
            worst_t = fmin(worst_t, tt / tf);
            worst_m = fmax(worst_m, mf / mt);
        }
    }
    if (failed) fprintf(stderr, "bench_linear: a measurement failed\n");
    printf("vs-gemm %.2f vs-torch %.2f mem-vs-torch %.4f bf16-speedup %.2f\n", worst_g,
           use_torch ? worst_t : NAN, use_torch ? worst_m : NAN, worst_bf16);
    return failed;
}
