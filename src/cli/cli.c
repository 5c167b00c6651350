/* The lsr command's shared helpers: number flags, threads, errors, the
 * metrics printout, and OpenBLAS's core type. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifdef _OPENMP
#include <omp.h>
#endif

char *openblas_get_corename(void);

lsr_status cli_load_data(lsr_dataset *train, lsr_dataset *test, const char *dir) {
    const lsr_status st = lsr_dataset_load_dir(train, test, dir);
    return st == LSR_OK ? st : lsr__fail(st, "--data %s", lsr_last_error());
}

int cli_error(const char *cmd, const char *msg) {
    /* under mpirun the ranks read the same flags and files and mostly fail
     * alike: rank 0 says it, or, when it alone got through, the first failure
     * that cli_mpi_begin_collective brought it; once they exchange, a failure
     * may be one rank's alone */
    cli_mpi_failed_before(lsr__failed(), msg);
    if (cli_rank() == 0)
        fprintf(stderr, "lsr %s: %s\n", cmd, msg);
    else if (cli_mpi_in_collective())
        fprintf(stderr, "lsr %s: process %d: %s\n", cmd, cli_rank(), msg);
    return 1;
}

int cli_flag_error(const char *cmd, int c, char **argv) {
    char msg[512];
    if (c == ':')
        snprintf(msg, sizeof msg, "%s: needs a value", argv[optind - 1]);
    else
        snprintf(msg, sizeof msg, "unknown flag '%s' (lsr %s --help)", argv[optind - 1], cmd);
    return cli_error(cmd, msg);
}

int cli_argument_error(const char *cmd, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, "unexpected argument '%s'", arg);
    return cli_error(cmd, msg);
}

lsr_status cli_int(const char *flag, const char *s, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return lsr__fail(LSR_ERROR_OPTION, "%s: '%s' is not an integer in [%lld, %lld]", flag, s,
                         min, max);
    *out = v;
    return 0;
}

lsr_status cli_float(const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= min && v <= max))
        return lsr__fail(LSR_ERROR_OPTION, "%s: '%s' is not a number in [%g, %g]", flag, s, min,
                         max);
    *out = v;
    return 0;
}

static int thread_count = 1;

void cli_set_threads(int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
#else
    threads = 1;
#endif
    thread_count = threads;
}

int cli_threads(void) { return thread_count; }

int cli_cores(void) {
#ifdef _OPENMP
    return omp_get_num_procs(); /* those this process may run on (its affinity) */
#else
    return 1;
#endif
}

const char *cli_blas_core(void) { return openblas_get_corename(); }

void cli_print_metrics(const lsr_metrics *mt, int json, const char *title) {
    if (json) { /* 2: without the newline, to nest */
        printf("{\"n\": %lld, \"accuracy\": %.6f, \"top5\": %.6f, \"nll\": %.6f, \"ece\": %.6f, "
               "\"mce\": %.6f, \"brier\": %.6f, \"mean_confidence\": %.6f, "
               "\"confidence_minus_accuracy\": %.6f}%s",
               (long long)mt->n, mt->accuracy, mt->top5, mt->nll, mt->ece, mt->mce, mt->brier,
               mt->mean_confidence, mt->overconfidence, json == 2 ? "" : "\n");
        return;
    }
    printf("%s (%lld samples)\n", title, (long long)mt->n);
    printf("  accuracy   %.4f\n  top-5      %.4f\n  NLL        %.4f\n", mt->accuracy, mt->top5,
           mt->nll);
    printf("  ECE        %.4f  (%d equal-width bins)\n  MCE        %.4f\n", mt->ece,
           LSR_CALIBRATION_BINS, mt->mce);
    printf("  Brier      %.4f\n  confidence - accuracy  %+.4f (%s)\n", mt->brier,
           mt->overconfidence, mt->overconfidence > 0 ? "over-confident" : "under-confident");
}

/* Debian's OpenBLAS 0.3.21 takes some AVX-512 CPUs for "Prescott" and runs
 * its SSE3 kernels, 4x slower.  The core type is read when the library
 * loads, so lsr sets it and starts itself again, once. */
void cli_fix_blas_core(char **argv) {
#ifdef LSR_HAVE_ONEDNN
    (void)argv; /* the GEMMs are oneDNN's, which reads the CPU itself */
#else
    if (getenv("OPENBLAS_CORETYPE") || getenv("LSR_NO_BLAS_FIX")) return;
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "prescott") && strcasecmp(core, "core2") &&
                  strcasecmp(core, "nehalem") && strcasecmp(core, "unknown")))
        return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2"))
        want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slow kernels */
#endif
}
