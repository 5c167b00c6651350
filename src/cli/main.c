/* lsr: train and evaluate classifiers with label-smoothing regularization.
 * main: --help, --version and the subcommands (cmd_NAME.c each). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../net/net.h"
#include "cli.h"
#include "cmd.h"
#include "lsr/loss.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: lsr <command> [flags]\n"
               "  train    train a classifier with label smoothing (lsr train --help)\n"
               "  eval     evaluate a model file on a dataset (lsr eval --help)\n"
               "  attack   FGSM against a model file (lsr attack --help)\n"
               "  calibrate  fit a temperature on the held-out validation split"
               " (lsr calibrate --help)\n"
               "  sweep    train and compare several eps and seeds, with a report"
               " (lsr sweep --help)\n"
               "  project  the penultimate layer of three classes, as a picture"
               " (lsr project --help)\n"
               "  --version, --help\n");
}

static void version(void) {
    printf("lsr %s\nloss kernels: %s\nGEMM: %s\n", LSR_VERSION_STRING,
           lsr_isa_name(lsr_isa_detect()), lsr_gemm_backend());
    printf("OpenBLAS: core %s%s%s\n", cli_blas_core(),
           getenv("OPENBLAS_CORETYPE") ? " (set by OPENBLAS_CORETYPE)" : " (detected)",
#if defined(LSR_HAVE_ONEDNN) && defined(_OPENMP)
           ", a fallback only (for a GEMM oneDNN cannot run)"
#else
           ""
#endif
    );
    if (lsr_precision_available(LSR_PRECISION_BF16) == LSR_OK)
        printf("--precision bf16: available (oneDNN)\n");
    else
        printf("--precision bf16: unavailable (%s)\n", lsr_last_error());
#ifdef _OPENMP
    printf("threads: %d (OpenMP)\n", omp_get_num_procs());
#endif
    if (cli_mpi_built())
        printf("MPI: built in (data-parallel 'mpirun -np P lsr train'); %d process%s here\n",
               cli_ranks(), cli_ranks() > 1 ? "es" : "");
    else
        printf("MPI: not built in (libopenmpi-dev was not found)\n");
}

static int run(int argc, char **argv);

int main(int argc, char **argv) {
    /* a file-size limit (ulimit -f) must fail the write with EFBIG, so that
     * the error path names the file and removes the temporary, instead of
     * killing the process */
    signal(SIGXFSZ, SIG_IGN);
    cli_fix_blas_core(argv);
    if (cli_mpi_start(&argc, &argv)) return 1;
    return cli_mpi_finish(run(argc, argv));
}

/* The command line after MPI: a command, --help or --version. */
static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        version();
        return 0;
    }
    if (!strcmp(argv[1], "train")) return lsr_cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return lsr_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "attack")) return lsr_cmd_attack(argc - 1, argv + 1);
    if (!strcmp(argv[1], "calibrate")) return lsr_cmd_calibrate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "sweep")) return lsr_cmd_sweep(argc - 1, argv + 1);
    if (!strcmp(argv[1], "project")) return lsr_cmd_project(argc - 1, argv + 1);
    fprintf(stderr,
            "lsr: unknown command '%s' (train, eval, attack, calibrate, sweep, project, --help, "
            "--version)\n",
            argv[1]);
    return 2;
}
