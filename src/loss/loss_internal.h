/* Shared between the reference and the fast loss: validation, errors, and
 * the per-ISA row kernels. Not installed. */
#ifndef LSR_LOSS_INTERNAL_H
#define LSR_LOSS_INTERNAL_H

#include "error.h"
#include "lsr/loss.h"

/* A call's arguments after validation. */
typedef struct loss_call {
    float *loss;
    float *grad;
    lsr_loss_stats *stats;
    const float *logits;   /* (N, stride) */
    const int64_t *labels; /* (N) or NULL for soft targets */
    const float *targets;  /* (N, stride) or NULL for labels */
    int64_t n, k, stride;
    lsr_loss_options opt;
    lsr_isa isa; /* resolved, never AUTO */
    int threads; /* resolved, >= 1 */
} loss_call;

/* Checks every argument (labels and targets included) and fills call.
 * Nothing is written to the outputs. */
lsr_status lsr__validate(loss_call *call, int soft, float *loss, float *grad, lsr_loss_stats *stats,
                         const float *logits, const int64_t *labels, const float *targets,
                         int64_t n, int64_t k, int64_t stride, const lsr_loss_options *options);

/* Logits are processed in chunks of this many values; the per-chunk maxima
 * and sums are combined in chunk order, so results do not depend on how
 * chunks are spread over threads. */
#define LSR_CHUNK 4096

/* Pass-2 summary of one chunk of a row.  Sums of logits are of d = z - max,
 * with max the row's largest logit, so that logits of large magnitude and
 * small spread keep their differences. */
typedef struct chunk_sums {
    float max;      /* the row's max (pass 1) */
    int nonfinite;  /* a logit was NaN or infinite */
    double sum_exp; /* sum exp(d) */
    double sum_z;   /* sum d */
    double dot_a;   /* sum a_k d_k when a is given */
    double dot_b;   /* sum b_k d_k when b is given */
} chunk_sums;

/* One instruction set's row kernels, each over len <= LSR_CHUNK values:
 *   pass_max    returns the largest z (a NaN may be missed).
 *   pass_exp    with d = z - max: e[k] = exp(d[k]) into e (NULL: not kept),
 *               and the sums of chunk_sums; prefetches next (len) unless NULL.
 *   pass_scale  g[k] = e[k] * scale_p - (a ? a[k] * a_scale : a_const);
 *               stream: non-temporal stores (g is not read back soon).
 *   stream_fence  orders the calling thread's non-temporal stores before
 *               what it writes next: once per row (not per chunk, where the
 *               wait for the write-combining buffers cost up to 10 %), and
 *               by every thread that streamed, before another reads or
 *               writes those rows. */
typedef struct row_kernels {
    float (*pass_max)(const float *z, int64_t len);
    void (*pass_exp)(chunk_sums *out, float *e, const float *z, int64_t len, float max,
                     const float *a, const float *b, const float *next);
    void (*pass_scale)(float *g, const float *e, int64_t len, float scale_p, const float *a,
                       float a_scale, float a_const, int stream);
    void (*stream_fence)(void);
} row_kernels;

extern const row_kernels lsr__kernels_scalar;
#if defined(LSR_HAVE_X86_KERNELS)
extern const row_kernels lsr__kernels_avx2;
extern const row_kernels lsr__kernels_avx512;
#endif

#endif
