/* Shared between the reference and the fast loss: validation, errors, and
 * the per-ISA row kernels. Not installed. */
#ifndef LSR_LOSS_INTERNAL_H
#define LSR_LOSS_INTERNAL_H

#include "bf16.h"
#include "error.h"
#include "lsr/loss.h"

/* A call's arguments after validation. */
typedef struct loss_call {
    float *loss;
    void *grad; /* (N, stride) of opt.grad_dtype */
    lsr_loss_stats *stats;
    const void *logits;    /* (N, stride) of opt.logits_dtype */
    const int64_t *labels; /* (N) or NULL for soft targets */
    const float *targets;  /* (N, stride) or NULL for labels */
    int64_t n, k, stride;
    lsr_loss_options opt;
    lsr_isa isa; /* resolved, never AUTO */
    int threads; /* resolved, >= 1 */
} loss_call;

/* An argument's bytes [begin, end), named, for the overlap checks. */
typedef struct lsr__span {
    const char *name;
    uintptr_t begin, end;
} lsr__span;

/* n rows of k values of elem bytes, stride values apart; empty when p is
 * NULL or n <= 0. */
lsr__span lsr__rows_span(const char *name, const void *p, int64_t n, int64_t k, int64_t stride,
                         size_t elem);

/* LSR_ERROR_OVERLAP, naming both, for the first output that overlaps an
 * input or another output; output allow_out may share input allow_in (in
 * place; -1: none may). */
lsr_status lsr__check_overlaps(const lsr__span *outputs, int n_outputs, const lsr__span *inputs,
                               int n_inputs, int allow_out, int allow_in);

/* Fills call from arguments already checked (lsr__validate's last step):
 * resolves the ISA and the thread count. */
void lsr__loss_call_fill(loss_call *call, float *loss, void *grad, lsr_loss_stats *stats,
                         const void *logits, const int64_t *labels, const float *targets, int64_t n,
                         int64_t k, int64_t stride, const lsr_loss_options *opt);

/* Checks every argument (labels and targets included) and fills call.
 * Nothing is written to the outputs. */
/* The options' own values (smoothing, convention, reduction, z_loss,
 * threads, dtypes), each refused with its status and a message naming it. */
lsr_status lsr__check_option_values(const lsr_loss_options *o);
/* v (k values): finite and >= 0, and summing to 1 within 1e-4 when
 * must_sum_to_one; else status, naming v[i] by name.  *sum_out (may be NULL):
 * the sum, in double. */
lsr_status lsr__check_distribution(double *sum_out, const float *v, int64_t k, const char *name,
                                   int must_sum_to_one, lsr_status status);

lsr_status lsr__validate(loss_call *call, int soft, float *loss, void *grad, lsr_loss_stats *stats,
                         const void *logits, const int64_t *labels, const float *targets, int64_t n,
                         int64_t k, int64_t stride, const lsr_loss_options *options);

/* Logits are processed in chunks of this many values; the per-chunk maxima
 * and sums are combined in chunk order, so results do not depend on how
 * chunks are spread over threads.  1536: a chunk of float logits, its exps
 * and the exps pass 3 reads beside them fit in L1 together (18 KB), and
 * bf16 chunks are not so short that their per-chunk work shows
 * (docs/loss.md, "Chunks"). */
#define LSR_CHUNK 1536

/* Pass-2 summary of one chunk of a row.  Sums of logits are of d = z - max,
 * with max the chunk's largest logit, so that logits of large magnitude and
 * small spread keep their differences; the row's sums shift them to the
 * row's max.  The kernels fill the first six fields. */
typedef struct chunk_sums {
    float max;      /* the chunk's max (pass 1) */
    int nonfinite;  /* a logit was NaN or infinite, or too far from max */
    double sum_exp; /* sum exp(d) */
    double sum_z;   /* sum d */
    double dot_a;   /* sum a_k d_k when a is given */
    double dot_b;   /* sum b_k d_k when b is given */
    double weight;  /* after the row's pass 2: exp(max - row max) / row sum of exps, so
                       that e_k weight is p_k */
    float scale_p;  /* and pass 3's factor of e_k */
} chunk_sums;

/* Bytes of one value of a dtype. */
static inline size_t lsr__dtype_size(lsr_dtype t) {
    return t == LSR_DTYPE_BFLOAT16 ? sizeof(uint16_t) : sizeof(float);
}

/* Value j of a row of logits of either type, as a float (exact). */
static inline float lsr__logit(const void *z, int64_t j, lsr_dtype t) {
    return t == LSR_DTYPE_BFLOAT16 ? lsr_bf16_to_float(((const uint16_t *)z)[j])
                                   : ((const float *)z)[j];
}

/* Stores v as value j of a gradient row of either type (bf16: rounded to
 * nearest even, subnormals flushed to zero). */
static inline void lsr__grad_store(void *g, int64_t j, float v, lsr_dtype t) {
    if (t == LSR_DTYPE_BFLOAT16)
        ((uint16_t *)g)[j] = lsr_bf16_from_float_flush(v);
    else
        ((float *)g)[j] = v;
}

/* One instruction set's row kernels, each over len <= LSR_CHUNK values;
 * each exists for both dtypes of z (pass_max, pass_exp) and of g
 * (pass_scale), indexed by lsr_dtype:
 *   pass_max    returns the largest z (a NaN may be missed).
 *   pass_exp    with d = z - max: e[k] = exp(d[k]) into e (NULL: not kept),
 *               and the sums of chunk_sums; prefetches next (len) unless NULL.
 *   pass_scale  g[k] = e[k] * scale_p - (a ? a[k] * a_scale : a_const);
 *               stream: non-temporal stores (g is not read back soon).
 *   pass_exp_scale  pass_exp of a chunk without a or b, and pass_scale
 *               without a of the same chunk of another row (g, e_prev), in
 *               one loop; the same results as the two calls.
 *   stream_fence  orders the calling thread's non-temporal stores before
 *               what it writes next: once per row (not per chunk, where the
 *               wait for the write-combining buffers cost up to 10 %), and
 *               by every thread that streamed, before another reads or
 *               writes those rows. */
typedef float (*pass_max_fn)(const void *z, int64_t len);
typedef void (*pass_exp_fn)(chunk_sums *out, float *e, const void *z, int64_t len, float max,
                            const float *a, const float *b, const void *next);
typedef void (*pass_scale_fn)(void *g, const float *e, int64_t len, float scale_p, const float *a,
                              float a_scale, float a_const, int stream);
typedef void (*pass_exp_scale_fn)(chunk_sums *out, float *e, const void *z, int64_t len, float max,
                                  const void *next, void *g, const float *e_prev, float scale_p,
                                  float a_const, int stream);
typedef struct row_kernels {
    pass_max_fn pass_max[2];
    pass_exp_fn pass_exp[2];
    pass_scale_fn pass_scale[2];
    pass_exp_scale_fn pass_exp_scale[2][2]; /* [z dtype][g dtype] */
    void (*stream_fence)(void);
} row_kernels;

extern const row_kernels lsr__kernels_scalar;
#if defined(LSR_HAVE_X86_KERNELS)
extern const row_kernels lsr__kernels_avx2;
extern const row_kernels lsr__kernels_avx512;
#if defined(LSR_HAVE_AVX512BF16_KERNELS)
extern const row_kernels lsr__kernels_avx512_bf16; /* with AVX512_BF16, BW, VL */
#endif
#endif
/* The build has lsr__kernels_avx512_bf16 and the CPU AVX512_BF16, BW and VL
 * as well as AVX-512 F and DQ. */
int lsr__cpu_has_avx512_bf16(void);

/* What a call adds up over its rows, before any division: the reduced
 * loss's share (already scaled), the sums behind lsr_loss_stats, and the
 * first row with a non-finite logit (-1: none). */
typedef struct lsr__loss_sums {
    double loss, label_ce, prior_ce, max_prob, lse;
    int64_t valid, hits, first_bad;
} lsr__loss_sums;

/* The fast loss of some rows of a larger problem whose reduction divisors
 * the caller knows (lsr_linear_cross_entropy's row blocks): the gradient
 * written is ce_scale d(CE)/dz + z_scale d(z-loss)/dz; row_loss, when not
 * NULL, gets each row's unscaled loss.  options' reduction and dtypes are
 * ignored (float).  The arguments are not checked again: the caller has
 * (labels, options, sizes).  Non-finite rows are reported in
 * sums->first_bad, not as a status. */
/* The reduction's divisors of n labelled rows, as lsr_cross_entropy's: for
 * the mean, 1 / (sum of the counted rows' class weights) for the
 * cross-entropy and 1 / (counted rows) for the z-loss (0 when none); 1 and
 * 1 otherwise. */
void lsr__loss_divisors(double *ce_scale, double *z_scale, const lsr_loss_options *opt,
                        const int64_t *labels, int64_t n);

lsr_status lsr__cross_entropy_rows(lsr__loss_sums *sums, float *row_loss, float *grad,
                                   const float *logits, const int64_t *labels, int64_t n, int64_t k,
                                   int64_t stride, const lsr_loss_options *options, double ce_scale,
                                   double z_scale);

#endif
