/* Shared between the reference and the fast loss: validation, errors, and
 * the per-ISA row kernels. Not installed. */
#ifndef LSR_LOSS_INTERNAL_H
#define LSR_LOSS_INTERNAL_H

#include "lsr/loss.h"

/* Records a printf-style message for lsr_last_error() and returns status. */
lsr_status lsr__fail(lsr_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void lsr__clear_error(void);

/* A call's arguments after validation. */
typedef struct loss_call {
    float *loss;
    float *grad;
    lsr_loss_stats *stats;
    const float *logits;     /* (N, stride) */
    const int64_t *labels;   /* (N) or NULL for soft targets */
    const float *targets;    /* (N, stride) or NULL for labels */
    int64_t n, k, stride;
    lsr_loss_options opt;
    lsr_isa isa;             /* resolved, never AUTO */
    int threads;             /* resolved, >= 1 */
} loss_call;

/* Checks every argument (labels and targets included) and fills call.
 * Nothing is written to the outputs. */
lsr_status lsr__validate(loss_call *call, int soft, float *loss, float *grad,
                         lsr_loss_stats *stats, const float *logits, const int64_t *labels,
                         const float *targets, int64_t n, int64_t k, int64_t stride,
                         const lsr_loss_options *options);

/* Logits are processed in chunks of this many values; the pass-1 results of
 * the chunks are combined in order, so results do not depend on how chunks
 * are spread over threads. */
#define LSR_CHUNK 4096

/* Pass-1 summary of one chunk of a row.  Sums of logits are taken of
 * z - shift, with shift a value of the same row, so that logits of large
 * magnitude and small spread do not lose their differences to rounding. */
typedef struct chunk_sums {
    float max;        /* largest logit (-FLT_MAX for an empty chunk) */
    int nonfinite;    /* a logit was NaN or infinite */
    double sum_exp;   /* sum exp(z - max) */
    double sum_z;     /* sum (z - shift) */
    double dot_a;     /* sum a_k (z_k - shift) when a is given */
    double dot_b;     /* sum b_k (z_k - shift) when b is given */
} chunk_sums;

/* One instruction set's row kernels.
 * pass1: z (len <= LSR_CHUNK), a and b (len) or NULL.
 * pass2: g[k] = exp((z[k] - max) - log_sum) * scale_p - (a ? a[k] * a_scale : a_const),
 *        where lse = max + log_sum; g may equal z. */
typedef struct row_kernels {
    void (*pass1)(chunk_sums *out, const float *z, int64_t len, const float *a,
                  const float *b, float shift);
    void (*pass2)(float *g, const float *z, int64_t len, float max, float log_sum,
                  float scale_p, const float *a, float a_scale, float a_const);
} row_kernels;

extern const row_kernels lsr__kernels_scalar;
#if defined(LSR_HAVE_X86_KERNELS)
extern const row_kernels lsr__kernels_avx2;
extern const row_kernels lsr__kernels_avx512;
#endif

#endif
