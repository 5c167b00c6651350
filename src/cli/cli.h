/* The lsr command: helpers shared by its subcommands. */
#ifndef LSR_CLI_H
#define LSR_CLI_H

#include <math.h>

#include "../common/common.h"
#include "lsr/train.h"

/* The most --threads takes. */
#define CLI_MAX_THREADS 1024

/* A macro's value as a string literal, for usage texts: CLI_STR(6) is "6". */
#define CLI_STR(x) CLI_STR_(x)
#define CLI_STR_(x) #x

/* Parses a whole-string number in [min, max] for flag, or fails with
 * LSR_ERROR_OPTION and a message naming flag (lsr_last_error()).  The lsr
 * command keeps the library's error convention: every fallible function
 * returns an lsr_status and leaves its message for lsr_last_error(). */
lsr_status cli_int(const char *flag, const char *s, long long min, long long max, long long *out);
lsr_status cli_float(const char *flag, const char *s, double min, double max, double *out);
/* Applies --threads to OpenMP (0: every core); lsr_gemm shares its tiles over those threads. */
void cli_set_threads(int threads);
int cli_threads(void);
/* The cores this process may run on (its CPU affinity; 1 without OpenMP). */
int cli_cores(void);
const char *cli_blas_core(void);
/* Where OpenBLAS took an AVX-512 or AVX2 CPU for an older core, sets
 * OPENBLAS_CORETYPE and starts lsr again with argv (once); else returns. */
void cli_fix_blas_core(char **argv);

/* lsr_dataset_load_dir, its message naming the --data flag. */
lsr_status cli_load_data(lsr_dataset *train, lsr_dataset *test, const char *dir);

/* ---- class names (class_names.c) ---- */
/* Fashion-MNIST's ten names when dir is Debian's copy of it and the data has
 * 10 classes, else NULL. */
const char *const *cli_data_class_names(const char *dir, int classes);
/* --class-names FILE: one name a line, exactly k: *names is a list of them
 * in one malloc'd block (free(*names)). */
lsr_status cli_load_class_names(const char ***names, const char *path, int k);
/* The same, as many as m's classes, into m. */
lsr_status cli_read_class_names(lsr_model *m, const char *path);
/* Class k as a command shows it, in buf: m's name for it, else data_names[k]
 * (data_names may be NULL), else "class k".  Returns buf. */
const char *cli_class_label(char *buf, size_t size, const lsr_model *m,
                            const char *const *data_names, int k);

/* Prints the evaluation as text, or as one JSON object (json 2: no newline). */
void cli_print_metrics(const lsr_metrics *mt, int json, const char *title);

/* One-line error and the exit status for it. */
int cli_error(const char *cmd, const char *msg);

/* ---- MPI (cli_mpi.c) ---- */
/* MPI_Init when an MPI launcher started this process (mpirun, mpiexec);
 * else nothing: one process, as without MPI.  0, or -1 (said why). */
int cli_mpi_start(int *argc, char ***argv);
/* This process's rank and the process count (0 and 1 without a launcher). */
int cli_rank(void);
int cli_ranks(void);
int cli_mpi_built(void);
/* The ranks are about to exchange (training): every rank waits here until
 * each has got this far or failed on the way (cli_mpi_failed_before,
 * cli_mpi_finish), so that a file one node cannot read stops them all
 * instead of leaving the others waiting; the first failure comes back as
 * "process R of P: its message".  A failure after this may be one rank's,
 * and cli_mpi_finish then stops them all. */
lsr_status cli_mpi_begin_collective(void);
/* This rank failed before the exchange began (a no-op after it): takes
 * part in the agreement above.  cli_error calls it. */
void cli_mpi_failed_before(lsr_status status, const char *msg);
/* The ranks agree again (training ended alike everywhere). */
void cli_mpi_collective_ended(void);
/* Between the two, with more than one rank. */
int cli_mpi_in_collective(void);
/* Waits for every rank (nothing without MPI); 0, or -1 (said why). */
int cli_mpi_barrier(void);
/* MPI_Finalize (or MPI_Abort for a failure once the ranks exchange);
 * returns status. */
int cli_mpi_finish(int status);
/* lsr train's data-parallel exchange with micro_batches parts (fast: by
 * MPI_Allreduce, the bits then depend on the process count), or NULL
 * without a launcher. */
const lsr_train_parallel *cli_train_parallel(int micro_batches, int fast);
/* The error for what getopt_long returned for an unknown flag or a missing
 * value (optstring ":"). */
int cli_flag_error(const char *cmd, int c, char **argv);
/* The error for a word left after the flags. */
int cli_argument_error(const char *cmd, const char *arg);

/* The sample standard deviation of n values from their sum and sum of
 * squares (NAN for fewer than 2). */
static inline double cli_sample_sd(double n, double sum, double sum2) {
    return n > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / n) / (n - 1))) : NAN;
}

/* The columns UTF-8 text s takes on a terminal (wcwidth in C.UTF-8: a wide
 * East Asian character 2, a combining mark 0), and the bytes of its
 * longest beginning of whole characters within columns. */
int cli_text_columns(const char *s);
size_t cli_text_prefix(const char *s, int columns);

#endif
