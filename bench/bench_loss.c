#define _GNU_SOURCE /* sched_setaffinity */
/* make bench-loss: the fused loss against a plain copy of the same bytes
 * (the memory-bandwidth limit) and against PyTorch, in one run.
 *
 *   bench_loss [--threads LIST] [--repeats R] [--no-torch] [--in-place]
 *
 * LIST is thread counts separated by commas, "all" for every core this
 * process may run on (default 1,2,all, repeats dropped): one table each.
 * Each table runs in a child process pinned to the first T of those cores
 * (sched_setaffinity before any thread starts) with OMP_NUM_THREADS=T, and
 * PyTorch inherits both: torch.compile's generated code ignores
 * torch.set_num_threads and would otherwise use every core.
 * The torch.compile column times the same call compiled
 * (torch.compile(fn), default mode); "n/a" where the installed PyTorch has
 * no working torch.compile (Debian's 1.13).
 * lsr and the copy run in turn at least R times (default 10) and until
 * they have taken 2 s together (at most 2000 runs each), PyTorch at least R
 * times and for 1 s; each keeps its best time: on a shared machine a few
 * runs of a millisecond can all land in someone else's burst.  At
 * 8192 x 1000 (32 MB each way, with a 32 MB L3) the copy's best often finds
 * its data still in L3 and reaches 70+ GB/s.
 * Each shape runs with float32 logits and gradient, then with bfloat16
 * ones (computed in float32 inside the kernel), each against a copy of its
 * own bytes.  Effective bandwidth counts one read of the logits and one
 * write of the gradient (2 * N * K * 4 bytes, or * 2 for bfloat16).  The
 * last line of a table is
 *   min-vs-copy 0.NN min-speedup-vs-torch NN.N bf16-min-vs-copy-large 0.NN
 * with vs-torch against the faster of eager and compiled PyTorch, the first
 * two minima over the float32 rows with K >= 1000 (but the
 * in-cache 256 x 8192, there for its ns/logit), the last
 * over the bfloat16 rows with K >= 32000 (larger than a 32 MB L3 cache, where
 * a copy is not flattered by it).
 * --in-place: lsr writes its gradient over the logits (grad == logits,
 * which the API allows), the copy and PyTorch as without it; the logits of
 * each run after the first are then the previous run's gradient, finite
 * values that take the same time. */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "lsr/loss.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* memcpy of bytes split over the threads, as the loss splits its rows */
static void parallel_copy(void *dst, const void *src, size_t bytes, int threads) {
    (void)threads; /* unused without OpenMP */
#pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        size_t begin = bytes * (size_t)t / (size_t)nt / 64 * 64;
        size_t end = t + 1 == nt ? bytes : bytes * (size_t)(t + 1) / (size_t)nt / 64 * 64;
        memcpy((char *)dst + begin, (const char *)src + begin, end - begin);
    }
}

/* PyTorch's best time (mode "eager" or "compile"), NAN if it failed; 0 if
 * this PyTorch has no working torch.compile. */
static double torch_seconds(long n, long k, int threads, int repeats, const char *dtype,
                            const char *mode) {
    char cmd[768];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=%d '%s' %s/torch_loss.py %ld %ld %d %d %s %s 2>/dev/null", threads,
             python(), LSR_BENCH_DIR, n, k, threads, repeats, dtype, mode);
    FILE *p = popen(cmd, "r");
    if (!p) return NAN;
    double s = NAN;
    if (fscanf(p, "%lf", &s) != 1) s = NAN;
    if (pclose(p) != 0) s = NAN;
    return s;
}

/* The best time of PyTorch formatted for the table: "n/a" where there is no
 * torch.compile, "-" without PyTorch. */
static void format_ms(char *out, size_t size, double seconds, int used) {
    if (!used)
        snprintf(out, size, "-");
    else if (seconds == 0.0)
        snprintf(out, size, "n/a");
    else
        snprintf(out, size, "%.3f", 1e3 * seconds);
}

/* One table: every shape at this thread count.  Returns non-zero when a
 * PyTorch run failed. */
static int table(int threads, int repeats, int use_torch, int in_place) {
    /* 256 x 8192: rows of 32 KB (fp32) that stay in L2 between the passes and 8 MB
     * each way, in the 32 MB L3: the kernel's arithmetic with the memory out of the
     * way, its ns/logit the per-thread cost in cache (smaller shapes measure the
     * call's fixed cost); no minimum counts it (a copy in cache is not the memory
     * limit) */
    static const long shapes[][2] = {
        {65536, 10}, {256, 8192}, {8192, 1000}, {4096, 32000}, {1024, 128256}};
    printf("lsr %s, isa %s, %d threads, best of >= %d runs and >= 1 s; eps 0.1, mean, "
           "gradient of the logits' dtype written %s\n",
           LSR_VERSION_STRING, lsr_isa_name(lsr_isa_detect()), threads, repeats,
           in_place ? "over the logits (lsr; the copy to a separate buffer)"
                    : "to a separate buffer");
    printf("%-14s %-5s %10s %8s %10s %8s %10s %8s %10s %8s %8s %9s %9s\n", "N x K", "dtype",
           "lsr ms", "GB/s", "copy ms", "GB/s", "torch ms", "GB/s", "compile ms", "GB/s", "vs-copy",
           "vs-torch", "ns/logit");
    double min_vs_copy = INFINITY, min_vs_torch = INFINITY, bf16_min_vs_copy = INFINITY;
    int failed = 0;
    for (size_t row = 0; row < 2 * sizeof shapes / sizeof shapes[0]; row++) {
        const size_t s = row / 2;
        const int bf16 = (int)(row % 2);
        const long n = shapes[s][0], k = shapes[s][1];
        const size_t count = (size_t)n * (size_t)k;
        const size_t size = bf16 ? sizeof(uint16_t) : sizeof(float);
        float *logits = malloc(count * sizeof(float));
        void *grad = malloc(count * size);
        int64_t *labels = malloc((size_t)n * sizeof(int64_t));
        if (!logits || !grad || !labels) {
            fprintf(stderr, "bench_loss: out of memory for %ld x %ld\n", n, k);
            return 1;
        }
        unsigned x = 12345;
        for (size_t i = 0; i < count; i++) {
            x = x * 1664525u + 1013904223u;
            logits[i] = (float)((int)(x >> 9) - (1 << 22)) * (3.0f / (float)(1 << 22));
        }
        if (bf16) { /* the same values, rounded to nearest even, in place */
            uint16_t *half = (uint16_t *)(void *)logits;
            for (size_t i = 0; i < count; i++) {
                uint32_t u;
                memcpy(&u, &logits[i], sizeof u);
                half[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
            }
        }
        memset(grad, 0, count * size);
        for (long i = 0; i < n; i++)
            labels[i] = (int64_t)((i * 7919) % k);

        lsr_loss_options o = lsr_loss_options_default();
        o.smoothing = 0.1f;
        o.threads = threads;
        o.logits_dtype = o.grad_dtype = bf16 ? LSR_DTYPE_BFLOAT16 : LSR_DTYPE_FLOAT32;
        float loss;
        double best_lsr = INFINITY, best_copy = INFINITY;
        double spent = 0.0;
        for (int r = 0; r <= repeats || (spent < 2.0 && r <= 2000); r++) {
            double t0 = now();
            lsr_status st = lsr_cross_entropy(&loss, in_place ? (void *)logits : grad, NULL, logits,
                                              labels, n, k, k, &o);
            double t1 = now();
            if (st != LSR_OK) {
                fprintf(stderr, "bench_loss: %s\n", lsr_last_error());
                return 1;
            }
            if (r) best_lsr = fmin(best_lsr, t1 - t0);
            spent += t1 - t0;
            t0 = now();
            parallel_copy(grad, logits, count * size, threads);
            t1 = now();
            if (r) best_copy = fmin(best_copy, t1 - t0);
            spent += t1 - t0;
        }
        const double bytes = 2.0 * (double)count * (double)size;
        const char *dtype = bf16 ? "bfloat16" : "float32";
        double best_torch = use_torch ? torch_seconds(n, k, threads, repeats, dtype, "eager") : NAN;
        double best_compile =
            use_torch ? torch_seconds(n, k, threads, repeats, dtype, "compile") : NAN;
        if (use_torch && (isnan(best_torch) || best_torch == 0.0 || isnan(best_compile)))
            failed = 1;
        /* the strongest peer that runs here */
        double best_peer = best_torch;
        if (best_compile > 0.0 && best_compile < best_peer) best_peer = best_compile;
        const double vs_copy = best_copy / best_lsr, vs_torch = best_peer / best_lsr;
        char name[32], torch_ms[32], compile_ms[32], torch_gbs[32], compile_gbs[32];
        snprintf(name, sizeof name, "%ldx%ld", n, k);
        format_ms(torch_ms, sizeof torch_ms, best_torch, use_torch);
        format_ms(compile_ms, sizeof compile_ms, best_compile, use_torch);
        snprintf(torch_gbs, sizeof torch_gbs, "%.2f", bytes / best_torch * 1e-9);
        snprintf(compile_gbs, sizeof compile_gbs, "%.2f", bytes / best_compile * 1e-9);
        printf("%-14s %-5s %10.3f %8.2f %10.3f %8.2f %10s %8s %10s %8s %8.2f %9.1f %9.3f\n", name,
               bf16 ? "bf16" : "fp32", 1e3 * best_lsr, bytes / best_lsr * 1e-9, 1e3 * best_copy,
               bytes / best_copy * 1e-9, torch_ms, use_torch ? torch_gbs : "-", compile_ms,
               use_torch && best_compile > 0.0 ? compile_gbs : "-", vs_copy, vs_torch,
               best_lsr * 1e9 * threads / (double)count);
        fflush(stdout);
        if (!bf16 && k >= 1000 && !(n == 256 && k == 8192)) {
            min_vs_copy = fmin(min_vs_copy, vs_copy);
            if (use_torch) min_vs_torch = fmin(min_vs_torch, vs_torch);
        }
        if (bf16 && k >= 32000) bf16_min_vs_copy = fmin(bf16_min_vs_copy, vs_copy);
        free(logits);
        free(grad);
        free(labels);
    }
    if (failed) fprintf(stderr, "bench_loss: a PyTorch run with %s failed\n", python());
    printf("min-vs-copy %.2f min-speedup-vs-torch %.1f bf16-min-vs-copy-large %.2f\n", min_vs_copy,
           min_vs_torch, bf16_min_vs_copy);
    fflush(stdout);
    return failed;
}

/* Runs table(threads) in a child pinned to the first `threads` cores of
 * `allowed`, with OMP_NUM_THREADS=threads (for PyTorch, which inherits both);
 * the parent starts no thread of its own, so nothing runs unpinned. */
static int pinned_table(int threads, const cpu_set_t *allowed, int repeats, int use_torch,
                        int in_place) {
    const pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench_loss: fork failed\n");
        return 1;
    }
    if (pid == 0) {
        cpu_set_t mine;
        CPU_ZERO(&mine);
        for (int cpu = 0, taken = 0; cpu < CPU_SETSIZE && taken < threads; cpu++)
            if (CPU_ISSET(cpu, allowed)) {
                CPU_SET(cpu, &mine);
                taken++;
            }
        if (sched_setaffinity(0, sizeof mine, &mine) != 0)
            fprintf(stderr, "bench_loss: could not pin to %d cores; running unpinned\n", threads);
        char value[16];
        snprintf(value, sizeof value, "%d", threads);
        setenv("OMP_NUM_THREADS", value, 1);
        _exit(table(threads, repeats, use_torch, in_place));
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return 1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    int repeats = 10, use_torch = 1, in_place = 0;
    const char *list = "1,2,all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            list = argv[++i];
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else if (!strcmp(argv[i], "--in-place"))
            in_place = 1;
        else {
            fprintf(stderr, "bench_loss: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        fprintf(stderr, "bench_loss: sched_getaffinity failed\n");
        return 1;
    }
    const int cores = CPU_COUNT(&allowed);
    int counts[16], ncounts = 0;
    char copy[256];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        const int t = !strcmp(tok, "all") ? cores : atoi(tok);
        if (t < 1 || t > cores) {
            fprintf(stderr,
                    "bench_loss: --threads %s: %s is not between 1 and %d (the cores "
                    "this process may use)\n",
                    list, tok, cores);
            return 2;
        }
        int seen = 0;
        for (int j = 0; j < ncounts; j++)
            seen |= counts[j] == t;
        if (!seen && ncounts < 16) counts[ncounts++] = t;
    }
    if (use_torch) { /* one clear line before minutes of timing */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", python());
        if (system(cmd) != 0) {
            fprintf(stderr,
                    "bench_loss: %s cannot import torch (install python3-torch, set PYTHON "
                    "to an interpreter that has it, or pass --no-torch)\n",
                    python());
            return 1;
        }
    }
    fflush(stdout);
    int failed = 0;
    for (int j = 0; j < ncounts; j++) {
        if (j) printf("\n");
        fflush(stdout);
        failed |= pinned_table(counts[j], &allowed, repeats, use_torch, in_place);
    }
    return failed;
}
