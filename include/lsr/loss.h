/*
 * lsr/loss.h - softmax cross-entropy with label-smoothing regularization.
 *
 * The loss library of lsr.  It depends on nothing but libc, libm and
 * (optionally) OpenMP.  Every function returns an lsr_status; none of them
 * prints, exits or aborts.  After a failure, lsr_last_error() returns a
 * one-line message naming the offending argument or row.
 *
 * The loss of one row with logits z (K values) and label y is
 *
 *     loss = (1 - eps) * w[y] * H(onehot_y, p) + eps * sum_k w[k] u[k] (-log p_k)
 *          + z_loss * lse(z)^2
 *
 * where p = softmax(z), lse is the log-sum-exp of the row, w are the class
 * weights (all 1 when none are given) and u is the smoothing distribution:
 *
 *   LSR_SMOOTHING_ALL     u[k] = 1/K for every k: the target gets
 *                         1 - eps + eps/K, every other class eps/K
 *                         (PyTorch, TensorFlow, Keras).
 *   LSR_SMOOTHING_OTHERS  u[k] = 1/(K-1) for k != y, 0 for y: the target
 *                         gets 1 - eps, every other class eps/(K-1)
 *                         (darknet, Megatron).
 *   a prior               u[k] = prior[k], any distribution given by the
 *                         caller, e.g. the class frequencies.
 *
 * Without weights and z-loss this is the cross-entropy H(q', p) against the
 * smoothed target q' = (1 - eps) onehot_y + eps u, which splits into
 * (1 - eps) H(q, p) + eps H(u, p); lsr_loss_stats reports both terms.
 * With weights it follows PyTorch's F.cross_entropy(weight=...,
 * label_smoothing=...) exactly, see lsr_reduction.
 *
 * Soft targets (lsr_cross_entropy_soft) replace onehot_y by a target row t:
 * loss = -sum_k w[k] t'[k] log p_k with t' = (1 - eps) t + eps u, where for
 * LSR_SMOOTHING_OTHERS u[k] = (1 - t[k]) / (K - 1).
 *
 * The gradient written is d(reduced loss)/d(logits) = p * sum_k c_k - c
 * for the row's coefficients c (c = q' without weights: p - q').
 *
 * Logits and gradient are float, or bfloat16 (lsr_loss_options.logits_dtype
 * and grad_dtype): computed in float either way.
 */
#ifndef LSR_LOSS_H
#define LSR_LOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LSR_VERSION_STRING "0.1.0"

/* What the shared library exports: the functions declared in the lsr headers, and
 * nothing else (the library is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define LSR_API __attribute__((visibility("default")))
#else
#define LSR_API
#endif

/* The largest class count accepted (K); the smallest is 1. */
#define LSR_MAX_CLASSES (1 << 24)
/* The default ignore_index, as in PyTorch. */
#define LSR_IGNORE_INDEX_DEFAULT (-100)

typedef enum lsr_status {
    LSR_OK = 0,
    LSR_ERROR_NULL_ARGUMENT, /* a pointer that must be given is NULL */
    LSR_ERROR_SIZE,          /* N, K or the row stride is out of range */
    LSR_ERROR_LABEL,         /* a label outside [0, K) that is not ignore_index */
    LSR_ERROR_SMOOTHING,     /* eps not in [0, 1], or OTHERS with K = 1 and eps > 0 */
    LSR_ERROR_PRIOR,         /* prior not finite, negative, or not summing to 1 */
    LSR_ERROR_WEIGHT,        /* a class weight not finite or negative */
    LSR_ERROR_TARGET,        /* a soft target value not finite or negative */
    LSR_ERROR_OVERLAP,       /* an output overlaps an input (other than grad == logits) */
    LSR_ERROR_NONFINITE,     /* a logit is NaN or infinite, or two differ by more than FLT_MAX */
    LSR_ERROR_OPTION,        /* an invalid option: enum value, z_loss, threads, ... */
    LSR_ERROR_UNSUPPORTED,   /* the requested instruction set is not available */
    LSR_ERROR_OUT_OF_MEMORY, /* a scratch allocation failed */
    /* lsr/train.h */
    LSR_ERROR_IO,       /* a file could not be opened, read or written */
    LSR_ERROR_FORMAT,   /* a file is not what its format requires (IDX, CSV,
                           safetensors, model, checkpoint) */
    LSR_ERROR_MISMATCH, /* model, data, checkpoint or settings do not fit each other */
    LSR_STOPPED,        /* lsr_train stopped on request (not an error) */
    LSR_STATUS_COUNT
} lsr_status;

/* A short constant name for a status, e.g. "LSR_ERROR_LABEL". */
LSR_API const char *lsr_status_name(lsr_status status);

/* The message of the last failed call on this thread ("" if none). The
 * string is owned by the library and valid until the next call. */
LSR_API const char *lsr_last_error(void);

typedef enum lsr_smoothing_convention {
    LSR_SMOOTHING_ALL = 0,    /* eps/K to every class, target 1 - eps + eps/K */
    LSR_SMOOTHING_OTHERS = 1, /* eps/(K-1) to the other classes, target 1 - eps */
} lsr_smoothing_convention;

typedef enum lsr_reduction {
    /* Sum of row losses divided by the sum of w[y] over non-ignored rows
     * (the number of such rows without weights); the z-loss part is
     * divided by the number of non-ignored rows.  For soft targets the
     * divisor is N, as in PyTorch.  When the divisor is 0 (every row
     * ignored) the loss and gradient are 0; PyTorch returns NaN there. */
    LSR_REDUCTION_MEAN = 0,
    LSR_REDUCTION_SUM = 1,  /* sum of row losses */
    LSR_REDUCTION_NONE = 2, /* one loss per row, 0 for ignored rows; the
                               gradient is that of their sum */
} lsr_reduction;

/* Which vector code the fast implementation runs. AUTO picks the widest
 * the CPU supports; the others exist so that tests can hold each path
 * against the reference. */
typedef enum lsr_isa {
    LSR_ISA_AUTO = 0,
    LSR_ISA_SCALAR = 1,
    LSR_ISA_AVX2 = 2,   /* AVX2 + FMA */
    LSR_ISA_AVX512 = 3, /* AVX-512 F + DQ */
} lsr_isa;

/* Element types of the logits and of the gradient (lsr_loss_options). */
typedef enum lsr_dtype {
    LSR_DTYPE_FLOAT32 = 0,  /* float */
    LSR_DTYPE_BFLOAT16 = 1, /* bfloat16: the upper 16 bits of a float, stored as uint16_t;
                               read exactly, written rounded to nearest even with
                               subnormals (below 1.2e-38) flushed to zero */
} lsr_dtype;

typedef struct lsr_loss_options {
    float smoothing;                     /* eps in [0, 1]; 0 = plain cross-entropy */
    lsr_smoothing_convention convention; /* ignored when prior is given */
    const float *prior;                  /* (K) smoothing distribution u, or NULL for
                                            the convention's; finite, >= 0, sums to 1
                                            within 1e-4. Borrowed for the call. */
    const float *class_weights;          /* (K) finite, >= 0, or NULL for all ones */
    int64_t ignore_index;                /* rows with this label are skipped entirely;
                                            soft targets accept only the default */
    lsr_reduction reduction;
    float z_loss; /* lambda >= 0: adds lambda * lse^2 per row */
    int threads;  /* 0: OpenMP's default; otherwise >= 1 */
    lsr_isa isa;  /* LSR_ISA_AUTO unless testing */
    /* What logits and grad point to.  Everything is computed in float (sums
     * in double) whatever the types; a bfloat16 gradient is the float one
     * rounded to nearest even.  In place (grad == logits) needs equal types. */
    lsr_dtype logits_dtype;
    lsr_dtype grad_dtype;
} lsr_loss_options;

/* Defaults: eps 0, ALL, no prior, no weights, ignore_index -100, MEAN,
 * z_loss 0, threads 0, ISA auto, float32 logits and gradient. */
LSR_API lsr_loss_options lsr_loss_options_default(void);

/* sizeof(lsr_loss_options) and sizeof(lsr_loss_stats) in this library: for
 * bindings that mirror the structs (Python's ctypes) to check that they
 * were written for this version. */
LSR_API size_t lsr_loss_options_size(void);
LSR_API size_t lsr_loss_stats_size(void);

/* Per-call statistics, all over the non-ignored rows. */
typedef struct lsr_loss_stats {
    int64_t valid_rows;   /* rows not ignored */
    int64_t top1_hits;    /* rows whose target logit equals the row maximum (for
                             soft targets: the logit of the target's largest entry) */
    double label_ce;      /* mean H(q, p) against the unsmoothed target */
    double prior_ce;      /* mean H(u, p) against the smoothing distribution */
    double mean_max_prob; /* mean of max_k p_k */
    double mean_lse;      /* mean log-sum-exp of the logits (what z-loss pulls to 0) */
} lsr_loss_stats;

/* The ISA that LSR_ISA_AUTO selects on this CPU. */
LSR_API lsr_isa lsr_isa_detect(void);
/* "scalar", "avx2", "avx512" or "auto". */
LSR_API const char *lsr_isa_name(lsr_isa isa);

/*
 * Fused forward and backward of the label-smoothed cross-entropy with
 * integer labels.
 *
 *   loss    out (N) for LSR_REDUCTION_NONE, else (1); may be NULL
 *   grad    out (N, stride) of options->grad_dtype, or NULL; gradient of the
 *           reduced loss. May equal logits (in place, same dtype); otherwise
 *           it must not overlap any input.  Entries between K and stride in
 *           each row are not touched.
 *   stats   out, or NULL
 *   logits  in (N, stride) of options->logits_dtype (float unless set);
 *           only the first K of each row are read
 *   labels  in (N) class indices in [0, K) or ignore_index
 *   n       rows, >= 0;  k  classes, 1..LSR_MAX_CLASSES;  stride >= k
 *   options NULL for lsr_loss_options_default()
 *
 * Errors: everything but LSR_ERROR_NONFINITE is detected before any output
 * is written.  On LSR_ERROR_NONFINITE the rows with non-finite logits keep
 * their grad rows untouched, the reduced loss (or those rows' losses) is
 * NaN, and lsr_last_error() names the first such row.
 */
LSR_API lsr_status lsr_cross_entropy(float *loss, void *grad, lsr_loss_stats *stats,
                                     const void *logits, const int64_t *labels, int64_t n,
                                     int64_t k, int64_t stride, const lsr_loss_options *options);

/*
 * The same with dense target rows (soft labels), as PyTorch's probability
 * targets: targets is (N, stride) float whatever the logits' dtype, values
 * finite and >= 0 (rows need not sum to 1).  ignore_index is not accepted
 * (only the default value).
 */
LSR_API lsr_status lsr_cross_entropy_soft(float *loss, void *grad, lsr_loss_stats *stats,
                                          const void *logits, const float *targets, int64_t n,
                                          int64_t k, int64_t stride,
                                          const lsr_loss_options *options);

/*
 * Reference implementations: same contract, plain loops in double precision,
 * single-threaded.  They are the specification the fast ones are tested
 * against; use them to check, not to train.
 */
LSR_API lsr_status lsr_cross_entropy_reference(float *loss, void *grad, lsr_loss_stats *stats,
                                               const void *logits, const int64_t *labels, int64_t n,
                                               int64_t k, int64_t stride,
                                               const lsr_loss_options *options);
LSR_API lsr_status lsr_cross_entropy_soft_reference(float *loss, void *grad, lsr_loss_stats *stats,
                                                    const void *logits, const float *targets,
                                                    int64_t n, int64_t k, int64_t stride,
                                                    const lsr_loss_options *options);

#ifdef __cplusplus
}
#endif

#endif /* LSR_LOSS_H */
