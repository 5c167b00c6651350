/* lsr under mpirun (or mpiexec): MPI started when a launcher started this
 * process, this process's rank, and lsr train's data-parallel exchange
 * (lsr_train_parallel over MPI_Allgatherv).  Without MPI in the build, or
 * without a launcher, lsr is one process exactly as before. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#ifdef LSR_HAVE_MPI
#include <mpi.h>
#endif

static int rank, ranks = 1, collective_begun;
#ifdef LSR_HAVE_MPI
static int mpi_on;
static char command[32]; /* " argv[1]", for rank 0's report of another rank's failure */
#endif

/* Whether every rank got as far as its first exchange: each process takes
 * part once (agree), and the first failing rank's status and message reach
 * them all. */
static int agreed;
static struct {
    int rank; /* the lowest rank that failed, or -1 */
    int status;
    char msg[500];
} first_failure = {-1, 0, ""};

int cli_mpi_start(int *argc, char ***argv) {
#ifdef LSR_HAVE_MPI
    /* OpenMPI's mpirun, or a PMI/PMIx launcher (srun, MPICH's mpiexec) */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "lsr: started by an MPI launcher, but MPI_Init failed\n");
        return -1;
    }
    mpi_on = 1;
    if (*argc > 1) snprintf(command, sizeof command, " %s", (*argv)[1]);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
#else
    (void)argc, (void)argv;
#endif
    return 0;
}

int cli_rank(void) { return rank; }
int cli_ranks(void) { return ranks; }
int cli_mpi_built(void) {
#ifdef LSR_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

/* Once per process, on every rank: where it failed (failed, with its status
 * and message) or where it is ready to exchange. */
static void agree(int failed, lsr_status status, const char *msg) {
    if (agreed) return;
    agreed = 1;
    if (failed) {
        first_failure.rank = rank;
        first_failure.status =
            status != LSR_OK ? (int)status : (int)LSR_ERROR_OPTION; /* a flag's */
        snprintf(first_failure.msg, sizeof first_failure.msg, "%s", msg ? msg : "");
    }
#ifdef LSR_HAVE_MPI
    if (!mpi_on || ranks < 2) return;
    int mine = failed ? rank : ranks, lowest = ranks;
    if (MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS ||
        (lowest < ranks && MPI_Bcast(&first_failure, (int)sizeof first_failure, MPI_BYTE, lowest,
                                     MPI_COMM_WORLD) != MPI_SUCCESS)) {
        first_failure.rank = rank;
        first_failure.status = LSR_ERROR_IO;
        snprintf(first_failure.msg, sizeof first_failure.msg, "the ranks could not agree (MPI)");
    }
#endif
}

lsr_status cli_mpi_begin_collective(void) {
    agree(0, LSR_OK, NULL);
    if (first_failure.rank >= 0)
        return lsr__fail((lsr_status)first_failure.status, "process %d of %d: %s",
                         first_failure.rank, ranks, first_failure.msg);
    collective_begun = 1;
    return LSR_OK;
}

void cli_mpi_failed_before(lsr_status status, const char *msg) {
    if (!collective_begun) agree(1, status, msg);
}

void cli_mpi_collective_ended(void) { collective_begun = 0; }
int cli_mpi_in_collective(void) { return collective_begun && ranks > 1; }

int cli_mpi_barrier(void) {
#ifdef LSR_HAVE_MPI
    if (mpi_on && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) {
        lsr__fail(LSR_ERROR_IO, "MPI_Barrier failed");
        return -1;
    }
#endif
    return 0;
}

int cli_mpi_finish(int status) {
#ifdef LSR_HAVE_MPI
    if (!mpi_on) return status;
    /* a rank that ends without exchanging still takes part in the agreement
     * the others may be waiting in (cli_mpi_begin_collective) */
    if (!collective_begun) {
        agree(status != 0, lsr__failed(), lsr_last_error());
        /* rank 0 reports; its own failure it has said (cli_error) */
        if (rank == 0 && status == 0 && first_failure.rank > 0)
            fprintf(stderr, "lsr%s: process %d of %d: %s\n", command, first_failure.rank, ranks,
                    first_failure.msg);
    }
    /* A failure once the ranks exchange (the run itself) may be this rank's
     * alone, with the others waiting in an exchange: stop them all.  Before
     * that, the agreement has told every rank of any failure. */
    if (status != 0 && ranks > 1 && collective_begun) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
#endif
    return status;
}

#ifdef LSR_HAVE_MPI
static lsr_status allgather(void *ctx, const void *mine, void *all, const int *bytes,
                            const int *offsets) {
    (void)ctx;
    if (MPI_Allgatherv(mine, bytes[rank], MPI_BYTE, all, bytes, offsets, MPI_BYTE,
                       MPI_COMM_WORLD) != MPI_SUCCESS)
        return lsr__fail(LSR_ERROR_IO, "MPI_Allgatherv of the gradients failed");
    return LSR_OK;
}

static lsr_status allreduce(void *ctx, float *grads, int n_grads, double *sums, int n_sums) {
    (void)ctx;
    if (MPI_Allreduce(MPI_IN_PLACE, grads, n_grads, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS ||
        MPI_Allreduce(MPI_IN_PLACE, sums, n_sums, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
        return lsr__fail(LSR_ERROR_IO, "MPI_Allreduce of the gradients failed");
    return LSR_OK;
}
#endif

const lsr_train_parallel *cli_train_parallel(int micro_batches, int fast) {
#ifdef LSR_HAVE_MPI
    static lsr_train_parallel p;
    if (!mpi_on) return NULL;
    p.rank = rank;
    p.size = ranks;
    p.micro_batches = micro_batches;
    p.allgather = fast ? NULL : allgather;
    p.allreduce = fast ? allreduce : NULL;
    p.ctx = NULL;
    return &p;
#else
    (void)micro_batches, (void)fast;
    return NULL;
#endif
}
