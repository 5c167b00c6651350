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

static int mpi_on, rank, ranks = 1, collective_begun;

int cli_mpi_start(int *argc, char ***argv) {
#ifdef LSR_HAVE_MPI
    /* OpenMPI's mpirun, or a PMI/PMIx launcher (srun, MPICH's mpiexec) */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "lsr: started by an MPI launcher, but MPI_Init failed\n");
        return -1;
    }
    mpi_on = 1;
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

void cli_mpi_collective_begun(void) { collective_begun = 1; }
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
    /* A failure once the ranks exchange (the run itself) may be this rank's
     * alone, with the others waiting in an exchange: stop them all.  Before
     * that every rank read the same flags and files and failed alike. */
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
