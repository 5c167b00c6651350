/*
 * lsr/linear.h - a classifier head and its label-smoothed cross-entropy in
 * one call, without the N x K logits.
 *
 * With logits z = H W^T + b (H: N x D hidden states, W: K x D, b: K), one
 * call computes the loss of lsr_cross_entropy (lsr/loss.h: every smoothing
 * convention, a prior, class weights, ignore_index, the reductions, z-loss)
 * and its gradients with respect to H, W and b.  The logits exist only a
 * block of rows at a time: LSR_LINEAR_ROWS rows of K values (256 x K
 * floats, 33 MB at K = 32000), fewer for K > 65536 so that the block stays
 * within 64 MiB (128 rows at K = 128256), plus the loss's scratch of two
 * rows of K per thread and K doubles for db.  The block's rows depend on K
 * alone.  Each block costs the three products of the
 * unfused computation on its rows (its logits, its rows of dH, its share of
 * dW) and one pass of the loss kernel over its logits while they are in
 * cache; nothing is recomputed.
 *
 * Results are the same bits for any thread count: the products run in the
 * fixed tiles of the trainer's sgemm and the blocks in a fixed order.
 * Needs the full liblsr (BLAS); the loss-only part of the library does not
 * depend on it.
 *
 * bf16 H and W (options->logits_dtype = LSR_DTYPE_BFLOAT16): the three
 * products take bf16 factors and sum in float (oneDNN's bf16 matmul, in the
 * same fixed tiles, K summed in fixed chunks of 2048); the logits, the loss
 * and the gradients dH, dW, db are float.  The logits' gradient G is
 * computed in float and rounded to bf16 (nearest even, subnormals to zero)
 * for the products dH = G W and dW = G^T H, as bf16 training rounds it; db
 * sums the float G.  Extra memory as for float, plus each thread's matmul
 * scratchpad (under 2 MiB: a chunk of a factor, packed).  Needs lsr built with oneDNN and a CPU
 * with AVX512_BF16: elsewhere the call returns LSR_ERROR_UNSUPPORTED and says which is missing.
 */
#ifndef LSR_LINEAR_H
#define LSR_LINEAR_H

#include "lsr/loss.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows of logits per block (fewer for K > 65536, see above). */
#define LSR_LINEAR_ROWS 256

/*
 * Forward and backward of cross_entropy(H W^T + b, labels) in one call.
 *
 *   loss    out (N) for LSR_REDUCTION_NONE, else (1); may be NULL
 *   dh      out (N, ldh), d(reduced loss)/dH, or NULL; entries between D and
 *           ldh are not touched
 *   dw      out (K, D), d(reduced loss)/dW, overwritten (not accumulated), or NULL
 *   db      out (K), d(reduced loss)/db, or NULL (also without a bias: the
 *           gradient a bias would get)
 *   stats   out, or NULL: as lsr_cross_entropy's, of the logits H W^T + b
 *   h       in (N, ldh) float or bf16 (logits_dtype), the first D of each row read
 *   w       in (K, D) of h's dtype, row k the class's template
 *   bias    in (K) float, or NULL for none
 *   labels  in (N) class indices in [0, K) or options->ignore_index
 *   0 <= n < 2^31, 1 <= d < 2^31, k in 1..LSR_MAX_CLASSES, d <= ldh < 2^31
 *   row_scale in (N) finite factors, or NULL for all 1: the gradients are
 *           those of sum_n row_scale[n] * (row n's share of the reduced loss),
 *           e.g. an upstream gradient for LSR_REDUCTION_NONE; the losses
 *           written are not scaled
 *   options NULL for lsr_loss_options_default(); logits_dtype is the dtype of
 *           h and w (float32, or bfloat16: see above); grad_dtype must be
 *           float32 (the gradients are float), else LSR_ERROR_UNSUPPORTED
 *
 * Outputs must not overlap the inputs or each other.  Errors: everything but
 * LSR_ERROR_NONFINITE and LSR_ERROR_OUT_OF_MEMORY is found before any output
 * is written (the loss's scratch is allocated block by block, so running out
 * of memory can stop a call with dh and dw partly written).  A row whose
 * logits are not finite (or too far apart for float) gets no gradient of the
 * logits, the reduced loss (or that row's loss) is NaN, and lsr_last_error()
 * names the first such row.  Non-finite values in h or w still reach dh and
 * dw through the products (0 x inf is NaN), as in lsr's own unfused
 * composite, ignored rows included (a NaN in an ignored row of h gives a NaN
 * column of dw and LSR_OK; PyTorch's log_softmax backward spreads it further,
 * to all of dw, db and that row of dh).
 */
LSR_API lsr_status lsr_linear_cross_entropy(float *loss, float *dh, float *dw, float *db,
                                            lsr_loss_stats *stats, const void *h, int64_t ldh,
                                            const void *w, const float *bias, const int64_t *labels,
                                            int64_t n, int64_t d, int64_t k, const float *row_scale,
                                            const lsr_loss_options *options);

/*
 * The specification, same contract: the full N x K logits by a product
 * summed in double, lsr_cross_entropy_reference on them, and the gradients'
 * products summed in double.  Memory 2 N K floats; use it to check.
 */
LSR_API lsr_status lsr_linear_cross_entropy_reference(float *loss, float *dh, float *dw, float *db,
                                                      lsr_loss_stats *stats, const void *h,
                                                      int64_t ldh, const void *w, const float *bias,
                                                      const int64_t *labels, int64_t n, int64_t d,
                                                      int64_t k, const float *row_scale,
                                                      const lsr_loss_options *options);

#ifdef __cplusplus
}
#endif

#endif /* LSR_LINEAR_H */
