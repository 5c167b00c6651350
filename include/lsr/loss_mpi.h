/*
 * lsr/loss_mpi.h - the label-smoothed cross-entropy with the classes split
 * over the processes of an MPI communicator (vocab-parallel), exact.
 *
 * Installed only where lsr is built with MPI (-DLSR_MPI=ON, the default
 * where MPI is found).  Each rank holds the logits of a contiguous shard of
 * the K classes for every row: rank r holds classes [k_0 + ... + k_{r-1},
 * that + k_r), in rank order, k_r >= 0 (a rank may hold none).  Labels are
 * global class indices, the same on every rank.  The loss is
 * lsr_cross_entropy's on the concatenated logits, every option included:
 * the smoothing distribution over all K classes (uniform 1/K with the
 * global K; "others" 1/(K-1); a prior, each rank passing its shard of it),
 * class weights (each rank its shard), ignore_index, the reductions, z-loss
 * and the statistics.  (Megatron-LM's vocab-parallel cross-entropy smooths
 * with the shard size and a per-shard mean instead.)
 *
 * Communication: one MPI_Allgather of three doubles per rank (shard size,
 * status, the prior's sum: every rank returns the same status), and one
 * MPI_Allreduce of 12 doubles per row with a reduction operator that
 * combines (max, sum of exp) pairs by rescaling, takes the min and adds the
 * rest.  Every
 * rank gets the same loss and statistics, and the gradient of its own shard.
 *
 * The computation is in double from float logits (float32 only); it is
 * tested against lsr_cross_entropy_reference on the concatenated logits.
 * Soft targets and bf16 logits are not supported here.
 */
#ifndef LSR_LOSS_MPI_H
#define LSR_LOSS_MPI_H

#include <mpi.h>

#include "lsr/loss.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 *   comm     the ranks that share the classes; every rank calls with the same
 *            n, labels and options (but its own shard's prior and weights)
 *   loss     out (N) for LSR_REDUCTION_NONE, else (1), or NULL: the same on
 *            every rank
 *   grad     out (N, stride) or NULL: d(reduced loss)/d(this rank's logits);
 *            may equal logits (in place)
 *   stats    out, or NULL: the same on every rank
 *   logits   in (N, stride): this rank's k_local classes of each row
 *   labels   in (N) global class indices in [0, K) or ignore_index
 *   k_local  classes on this rank, >= 0; K, the sum over the ranks, in
 *            1..LSR_MAX_CLASSES;  stride >= k_local
 *   options  as lsr_cross_entropy's; prior and class_weights (if given) hold
 *            this rank's k_local entries; the prior must sum to 1 over all
 *            ranks; logits_dtype and grad_dtype float32
 *
 * Every rank returns the same status: a bad argument on any rank is
 * reported by all (lsr_last_error() names the rank where it is not this
 * one), before any output is written.  A row with a logit that is not
 * finite, or two more than FLT_MAX apart, anywhere in it: as in
 * lsr_cross_entropy, LSR_ERROR_NONFINITE naming the first such row, its
 * gradient untouched and the loss NaN.
 */
LSR_API lsr_status lsr_cross_entropy_mpi(MPI_Comm comm, float *loss, float *grad,
                                         lsr_loss_stats *stats, const float *logits,
                                         const int64_t *labels, int64_t n, int64_t k_local,
                                         int64_t stride, const lsr_loss_options *options);

#ifdef __cplusplus
}
#endif

#endif /* LSR_LOSS_MPI_H */
