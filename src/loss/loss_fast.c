/* The fast loss.  Per chunk of a row (LSR_CHUNK logits): pass 1 reads the
 * logits from memory (the chunk's max); pass 2 reads them again (from L1
 * for float logits, whose two passes of a chunk run back to back; bf16
 * logits take the row's pass 1 first), writes exp(z - chunk max) to a
 * per-thread scratch row and sums what the
 * smoothing term needs (and so finds non-finite logits).  Once the row's
 * chunks are done, their sums are shifted to the row's max and added up;
 * pass 3 turns the scratch row into the gradient, p * A - c (a factor per
 * chunk), and writes it once (with non-temporal stores when the gradient
 * is large).  One exp per logit, one read of the logits from memory, one
 * write of the gradient.
 * Rows are spread over OpenMP threads; when there are few rows and many
 * classes, the chunks of one row are.  Chunk and block boundaries do not
 * depend on the thread count, and partial sums are combined in a fixed
 * order, so the results are bit-identical for any number of threads. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "loss_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows whose sums are added up together before the blocks' sums are, in
 * block order: the summation tree, fixed whatever the thread count.  Rows
 * of one chunk go ROWS_PER_BLOCK to a block (a block of short rows is work
 * enough to spread); longer rows one to a block, so that any row count
 * spreads over any thread count (64 rows of 128256 were one block, one
 * thread's work, on any number of threads). */
#define ROWS_PER_BLOCK 64

/* What a call needs beyond its arguments. */
typedef struct loss_plan {
    const row_kernels *kernels;
    pass_max_fn pass_max; /* the kernels for the call's dtypes */
    pass_exp_fn pass_exp;
    pass_scale_fn pass_scale;
    pass_exp_scale_fn pass_exp_scale;
    lsr_dtype z_type, g_type;
    size_t z_size, g_size; /* bytes of a logit, of a gradient entry */
    int soft;
    int others; /* OTHERS convention without a prior: u[y] = 0 per row */
    double eps, lambda;
    double ce_scale; /* reduction divisor of the cross-entropy part */
    double z_scale;  /* and of the z-loss part */
    /* Labels: the smoothing coefficients a[j] = w[j] u[j] (u[y] fixed up per
     * row for OTHERS); a == NULL means all equal to a_const. */
    float *a_owned;
    const float *a;
    double a_const;
    double a_sum;
    const float *b;     /* vector whose dot with z gives H(u,p), if not a */
    double *sums_owned; /* a_sums and b_sums: each chunk's sum of a, of b */
    const double *a_sums, *b_sums;
    double prior_sum; /* sum of the prior, when one is given */
    int stream;       /* write the gradient with non-temporal stores */
    int max_first;    /* a row's pass 1 over all its chunks before its pass 2 (see row_pass1) */
    int64_t nchunks;  /* chunks per row */
} loss_plan;

/* Sums over the rows of one block, combined in block order at the end. */
typedef struct block_totals {
    double loss; /* reduced-loss contribution, already scaled */
    double label_ce, prior_ce, max_prob, lse;
    int64_t valid, hits;
    int64_t first_bad; /* first row with a non-finite logit, or -1 */
} block_totals;

/* Scratch rows of one thread (or of all threads sharing a row). */
typedef struct row_scratch {
    float *coef;        /* (K) soft targets: the row's coefficients w t' */
    float *exps;        /* (K) exp(z - chunk max), when a gradient is wanted */
    chunk_sums *chunks; /* (nchunks) */
    double *coef_sums;  /* (2 nchunks) soft targets: each chunk's sum of coef, then of t */
} row_scratch;

/* One row between its passes. */
typedef struct row_state {
    int skip;       /* non-finite logits: no pass 3 */
    const char *z;  /* the row's logits (bytes: the dtype is the plan's) */
    char *g;        /* its gradient, or NULL */
    const float *a; /* coefficients for passes 2 and 3, or NULL for a_const */
    const float *b;
    const double *a_sums, *b_sums; /* each chunk's sum of a, of b (when given) */
    double a_const, a_sum, sum_t;
    double dot_prior;   /* soft targets with a prior: sum prior (z - z[0]) */
    int64_t target;     /* label, or argmax of the soft target */
    const char *next_z; /* a later row's logits, to prefetch, or NULL */
    float z_target;
    double w_target;
    float max;                        /* the row's largest logit */
    float a_scale, a_const_scaled;    /* pass-3 factors (scale_p: per chunk) */
    double target_scale, target_coef; /* exact gradient of the target entry */
} row_state;

static int64_t chunk_length(int64_t k, int64_t chunk) {
    const int64_t rest = k - chunk * LSR_CHUNK;
    return rest < LSR_CHUNK ? rest : LSR_CHUNK;
}

/* Logit j of the row, as a float. */
static inline float logit(const row_state *r, const loss_plan *p, int64_t j) {
    return lsr__logit(r->z, j, p->z_type);
}

/* A soft-target row's coefficients coef = w t' (rs->coef), their sum and
 * each chunk's (rs->coef_sums, then t's), and the target's argmax.  Out of
 * line: row_begin stays small enough to inline for short labelled rows
 * (K = 10: 10 % of the time when it was not). */
static void soft_row_begin(row_state *r, const loss_call *c, const loss_plan *p, int64_t i,
                           const row_scratch *rs) {
    const int64_t k = c->k;
    /* coef[j] = w[j] t'[j], the full coefficient of -log p_j for this row */
    const float *t = c->targets + i * c->stride;
    const float *w = c->opt.class_weights, *prior = c->opt.prior;
    float *coef = rs->coef;
    const double eps = p->eps, keep = 1.0 - eps;
    const double others_scale = k > 1 ? eps / (double)(k - 1) : 0.0;
    double a_sum = 0.0, sum_t = 0.0;
    int64_t best = 0;
    for (int64_t ch = 0; ch < p->nchunks; ch++) {
        const int64_t end = ch * LSR_CHUNK + chunk_length(k, ch);
        double coef_chunk = 0.0, t_chunk = 0.0;
        for (int64_t j = ch * LSR_CHUNK; j < end; j++) {
            double u_part;
            if (prior)
                u_part = eps * prior[j];
            else if (p->others)
                u_part = others_scale * (1.0 - t[j]);
            else
                u_part = eps / (double)k;
            double v = keep * t[j] + u_part;
            if (w) v *= w[j];
            coef[j] = (float)v;
            a_sum += (double)coef[j]; /* the sum of what pass 3 subtracts */
            sum_t += t[j];
            coef_chunk += (double)coef[j];
            t_chunk += t[j];
            if (t[j] > t[best]) best = j;
        }
        rs->coef_sums[ch] = coef_chunk;
        rs->coef_sums[p->nchunks + ch] = t_chunk;
    }
    if (prior) /* read now: an in-place gradient overwrites z */
        for (int64_t j = 0; j < k; j++)
            r->dot_prior += (double)prior[j] * ((double)logit(r, p, j) - logit(r, p, 0));
    r->a = coef;
    r->b = t;
    r->a_sums = rs->coef_sums;
    r->b_sums = rs->coef_sums + p->nchunks;
    r->a_sum = a_sum;
    r->sum_t = sum_t;
    r->target = best;
}

/* The row's pass 1 runs over all its chunks before its pass 2: rows of one
 * chunk, and max_first (see row_pass1).  Then pass 2 prefetches a row
 * ahead; otherwise the next chunk (chunk_next). */
static inline int pass1_first(const loss_plan *p) { return p->nchunks == 1 || p->max_first; }

/* Sets up a row; returns 0 when the row is ignored (then it is finished). */
static inline int row_begin(row_state *r, const loss_call *c, const loss_plan *p, int64_t i,
                            const row_scratch *rs) {
    static const row_state zero; /* a copy, not memset: rep stos costs ~15 % at K = 10 */
    *r = zero;
    const size_t z_row = (size_t)c->stride * p->z_size, g_row = (size_t)c->stride * p->g_size;
    r->z = (const char *)c->logits + (size_t)i * z_row;
    r->g = c->grad ? (char *)c->grad + (size_t)i * g_row : NULL;
    /* what pass 2 prefetches (chunk_next): with the row's pass 1 first
     * (rows of one chunk, max_first), the same chunk of a row ahead, two
     * rows while two rows with their exps fit in L2; otherwise each chunk
     * the next one, and the row's last the next row's first */
    const int64_t ahead = pass1_first(p) && c->k <= 65536 ? 2 : 1;
    if (i + ahead < c->n) r->next_z = r->z + (size_t)ahead * z_row;
    const int64_t k = c->k;
    if (!p->soft) {
        const int64_t y = c->labels[i];
        if (y == c->opt.ignore_index) {
            if (r->g) memset(r->g, 0, (size_t)k * p->g_size); /* 0.0f and bf16 0 alike */
            if (c->loss && c->opt.reduction == LSR_REDUCTION_NONE) c->loss[i] = 0.0f;
            return 0;
        }
        r->target = y;
        r->a = p->a;
        r->b = p->b;
        r->a_sums = p->a_sums;
        r->b_sums = p->b_sums;
        r->a_const = p->a_const;
        r->a_sum = p->a_sum;
        r->w_target = c->opt.class_weights ? c->opt.class_weights[y] : 1.0;
    } else {
        soft_row_begin(r, c, p, i, rs);
    }
    r->z_target = logit(r, p, r->target);
    return 1;
}

/* What pass 2 of a chunk prefetches (or NULL): the logits that pass 1
 * reads next.  Each chunk the next one (1024 x 128256 and 4096 x 32000 in
 * float at 1 thread, alternating runs: 5-10 % less time than the same
 * chunk of the next row, and than 2, 4 or 8 chunks ahead); with the row's
 * pass 1 first (max_first, and rows of one chunk), the same chunk of a
 * row ahead, as pass 1 reads whole rows. */
static const char *chunk_next(const row_state *r, const loss_plan *p, int64_t k, int64_t chunk) {
    if (pass1_first(p)) /* the same chunk of a row ahead */
        return r->next_z ? r->next_z + (size_t)(chunk * LSR_CHUNK) * p->z_size : NULL;
    if (chunk + 1 == p->nchunks) return r->next_z; /* its first chunk is no shorter */
    /* the kernel prefetches as many values as this chunk has: not past a
     * shorter last chunk (and the end of the logits) */
    if (chunk_length(k, chunk + 1) < LSR_CHUNK) return NULL;
    return r->z + (size_t)((chunk + 1) * LSR_CHUNK) * p->z_size;
}

/* Pass 1 of a chunk alone, for max_first: its max into chunks.  Either
 * order computes the same (each chunk's pass 2 is relative to its own
 * max); what differs is speed.  Float logits: a chunk's two passes back to
 * back, the second reading the chunk from L1, take less time than the
 * whole row's pass 1 first (4096 x 32000 and 1024 x 128256 at 1 thread,
 * alternating runs: 6-9 % with chunks of 1024); bf16 logits: 10-30 % more,
 * so they keep the row's pass 1 first (docs/loss.md). */
static void row_pass1(const row_state *r, const loss_plan *p, int64_t k, int64_t chunk,
                      chunk_sums *chunks) {
    const int64_t off = chunk * LSR_CHUNK;
    chunks[chunk].max = p->pass_max(r->z + (size_t)off * p->z_size, chunk_length(k, chunk));
}

/* The chunk's max: row_pass1's (max_known), or pass 1 now. */
static inline float chunk_max(const loss_plan *p, const char *z, int64_t len,
                              const chunk_sums *chunks, int64_t chunk, int max_known) {
    return max_known ? chunks[chunk].max : p->pass_max(z, len);
}

/* Passes 1 (unless row_pass1 has done it: max_known) and 2 of a chunk:
 * its max, then its exps and sums relative to that max. */
static inline void row_pass12(const row_state *r, const loss_plan *p, int64_t k, int64_t chunk,
                              chunk_sums *chunks, float *exps, int max_known) {
    const int64_t off = chunk * LSR_CHUNK, len = chunk_length(k, chunk);
    const char *z = r->z + (size_t)off * p->z_size;
    const float max = chunk_max(p, z, len, chunks, chunk, max_known);
    p->pass_exp(&chunks[chunk], r->g ? exps + off : NULL, z, len, max, r->a ? r->a + off : NULL,
                r->b ? r->b + off : NULL, chunk_next(r, p, k, chunk));
}

/* After every chunk's pass 2: the row's max. */
static void row_after_pass12(row_state *r, const loss_plan *p, const chunk_sums *chunks) {
    float m = -FLT_MAX;
    for (int64_t ch = 0; ch < p->nchunks; ch++)
        if (!(chunks[ch].max <= m)) m = chunks[ch].max; /* NaN too */
    r->max = m;
}

/* The "others" convention leaves the target's own term out: with
 * n_k = lse - z_k = L - d_k >= 0 (d = z - max, L = log sum exp d),
 *     O = sum_{k != y} n_k = T - n_y,  T = sum_k n_k = K L - sum_k d_k,
 * and likewise O_a = T_a - a_y n_y with T_a = sum_k a_k n_k, a_k >= 0.
 * T is formed from the float sums of pass 2, so it carries an error
 * |T^ - T| <= delta T + K e_L: delta from the rounding of d_k = fl(z_k - max)
 * and of the float accumulation of sum d_k, e_L the absolute error of L
 * (float sum of exps, logf): the error that the "all" convention's term
 * eps/K T carries and is tested for.  n_y = (max - z_y) + L is formed in
 * double from the floats, exact but for e_L.  The subtraction
 * O^ = T^ - n_y (in double, 1e-16) then keeps the whole error of T^, which
 * relative to O is delta (O + n_y) / O and has no bound when the target's
 * logit lies far below the max and its term dwarfs the others' (K = 2,
 * z = [-1000.1234, 2999.5678], y = 0: T^ carries the rounding of
 * fl(-3999.6912), 1.2e-4, against O = L = log(1 + e^-3999.7) = 0).
 *
 * So O^ is kept only when n_y <= O^.  Then, with E = |O^ - O| <= delta T +
 * K e_L:  T = O + n_y <= O + O^ <= 2 O + E, so T <= (2 O + K e_L) / (1 - delta)
 * and
 *     E <= (2 delta O + K e_L) / (1 - delta):
 * relatively at most twice the error of the "all" convention's sum, and
 * absolutely K e_L, as there.  The same argument holds for O_a with a_y n_y
 * (smooth, the weighted case), and, with a third delta from
 * label_ce^ = sum_k t_k n_k (t_k >= 0), for the soft targets'
 * sum_k (1 - t_k) n_k.
 * Otherwise (n_y > O^: for K = 2 every row whose target is not the max,
 * so K = 2 always takes this way, for its one other term; for large K
 * only where the target's n_y exceeds the sum of the K - 1 others', so
 * rarely that the extra pass over the row costs nothing measurable) the
 * other classes are added up directly in double, each term n_k >= 0
 * formed from the float logits to double's 1e-16 (soft: terms
 * (1 - t_k) n_k, as the definition has them): nothing cancels beyond what
 * the definition itself does.  The gradient does not use O. */
static void others_direct(const row_state *r, const loss_plan *p, int64_t k, double L,
                          double *others_sum, double *smooth) {
    if (k == 2) { /* one other class, no loop: K = 2 takes this way for every row */
        const int64_t j = 1 - r->target;
        const double nll = ((double)r->max - (double)logit(r, p, j)) + L;
        *others_sum = nll;
        *smooth = (r->a ? (double)r->a[j] : r->a_const) * nll;
        return;
    }
    double o = 0.0, sm = 0.0;
    for (int64_t j = 0; j < k; j++) {
        if (j == r->target) continue;
        const double nll = ((double)r->max - (double)logit(r, p, j)) + L;
        o += nll;
        sm += (r->a ? (double)r->a[j] : r->a_const) * nll;
    }
    *others_sum = o;
    *smooth = sm;
}

/* Soft targets t (r->b): sum_j (1 - t_j)(lse - z_j), directly in double. */
static double soft_others_direct(const row_state *r, const loss_plan *p, int64_t k, double L) {
    double o = 0.0;
    for (int64_t j = 0; j < k; j++)
        o += (1.0 - (double)r->b[j]) * (((double)r->max - (double)logit(r, p, j)) + L);
    return o;
}

/* A row whose sums of d = z - max reach float's range (|sum d| >= FLT_MAX
 * / 4, or a dot product not finite): logit by logit, is some fl(z - max)
 * not finite (the row is refused, as by the reference), and if none is,
 * the sums again in double, which the kernels' float accumulators could
 * not hold (K = 4000 logits of 0-9 and one of 1e38: every d about -1e38,
 * their float sum -inf, the loss inf where the reference's is 1e37).  Rare
 * enough that a scalar pass costs nothing measurable. */
static void far_row_sums(chunk_sums *s, const row_state *r, const loss_plan *p, int64_t k) {
    double sum_z = 0.0, dot_a = 0.0, dot_b = 0.0;
    for (int64_t j = 0; j < k; j++) {
        const float z = logit(r, p, j);
        if (!isfinite(z - r->max)) {
            s->nonfinite = 1;
            return;
        }
        const double d = (double)z - (double)r->max;
        sum_z += d;
        if (r->a) dot_a += (double)r->a[j] * d;
        if (r->b) dot_b += (double)r->b[j] * d;
    }
    s->sum_z = sum_z;
    s->dot_a = dot_a;
    s->dot_b = dot_b;
}

/* After pass 2: the row's loss and statistics, and the pass-3 factors; or
 * skip the row when a logit is not finite.  With d = z - max and
 * L = lse - max = log sum exp(d): sum_k a_k (lse - z_k) = L sum_k a_k - dot_a.
 * A chunk's sums are of d' = z - m (m its max), so with s = m - max <= 0
 * (in double: exact unless m and max are 2^29 apart, then to 2^-53) its
 * exps count exp(s) times and its d' sums n s more (n its length; a and b
 * sums: s times the chunk's sum of a, of b).  Each term keeps its sign, so
 * nothing cancels: |d'| <= |d| and the bounds of sums of d hold as they
 * did for sums of fl(z - max).  A logit whose fl(z - max) would overflow
 * makes |sum d| at least about FLT_MAX (terms of one sign, and the float
 * sum of a chunk no smaller than its largest term): then far_row_sums
 * checks the row logit by logit, and also takes the sums in double where
 * the float ones overflowed without a logit doing so. */
static void row_after_pass2(row_state *r, const loss_call *c, const loss_plan *p, int64_t i,
                            chunk_sums *chunks, block_totals *bt) {
    const int64_t k = c->k;
    chunk_sums s;
    if (p->nchunks == 1) { /* its max is the row's: nothing to shift */
        chunks[0].weight = 1.0;
        s = chunks[0];
    } else {
        s = (chunk_sums){r->max, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0f};
        for (int64_t ch = 0; ch < p->nchunks; ch++) {
            chunk_sums *cs = &chunks[ch];
            const double shift = (double)cs->max - (double)r->max;
            cs->weight = shift == 0.0 ? 1.0 : exp(shift);
            s.nonfinite |= cs->nonfinite;
            s.sum_exp += cs->sum_exp * cs->weight;
            s.sum_z += cs->sum_z + (double)chunk_length(k, ch) * shift;
            if (r->a) s.dot_a += cs->dot_a + shift * r->a_sums[ch];
            if (r->b) s.dot_b += cs->dot_b + shift * r->b_sums[ch];
        }
    }
    if (!s.nonfinite && !(fabs(s.sum_z) < 0.25 * FLT_MAX && isfinite(s.dot_a) && isfinite(s.dot_b)))
        far_row_sums(&s, r, p, k);
    if (s.nonfinite) {
        if (bt->first_bad < 0) bt->first_bad = i;
        if (c->loss && c->opt.reduction == LSR_REDUCTION_NONE) c->loss[i] = NAN;
        r->skip = 1;
        return;
    }
    /* sum_exp >= 1 (the max contributes 1); float log is exact to 1e-7 relative */
    const double log_sum = (double)logf((float)s.sum_exp);
    const double inv_sum_exp = 1.0 / s.sum_exp;
    const double lse = (double)s.max + log_sum;
    const double L = log_sum;
    const double nll_target = ((double)s.max - (double)r->z_target) + log_sum;
    const double eps = p->eps, keep = 1.0 - eps;
    double ce, label_ce, prior_ce, coef_sum, target_coef;
    if (!p->soft) {
        const double a_t = r->a ? (double)r->a[r->target] : r->a_const;
        double smooth = r->a ? r->a_sum * L - s.dot_a : r->a_const * ((double)k * L - s.sum_z);
        double a_sum = r->a_sum;
        double others_sum = 0.0; /* OTHERS: sum over k != y of (lse - z_k) */
        if (p->others) {         /* u[y] = 0: take the target's term out of the sums */
            const double a_nll = a_t * nll_target;
            others_sum = ((double)k * L - s.sum_z) - nll_target;
            smooth -= a_nll;
            a_sum -= a_t;
            /* see others_direct; K = 2 always (a branch on the data would
             * be mispredicted on half the rows, and is costlier than it) */
            if (k == 2 || nll_target > others_sum || a_nll > smooth)
                others_direct(r, p, k, L, &others_sum, &smooth);
        }
        ce = keep * r->w_target * nll_target + eps * smooth;
        label_ce = nll_target;
        if (c->opt.prior)
            prior_ce = r->b ? p->prior_sum * L - s.dot_b : r->a_sum * L - s.dot_a;
        else if (!p->others)
            prior_ce = L - s.sum_z / (double)k;
        else
            prior_ce = k > 1 ? others_sum / (double)(k - 1) : 0.0;
        coef_sum = keep * r->w_target + eps * a_sum;
        target_coef = keep * r->w_target + (p->others ? 0.0 : eps * a_t);
    } else {
        ce = r->a_sum * L - s.dot_a;
        label_ce = r->sum_t * L - s.dot_b;
        if (c->opt.prior)
            prior_ce = p->prior_sum * (lse - (double)logit(r, p, 0)) - r->dot_prior;
        else if (!p->others)
            prior_ce = L - s.sum_z / (double)k;
        else if (k > 1) {
            /* sum_j (1 - t_j)(lse - z_j): the all-classes sum less label_ce */
            double others = ((double)k * L - s.sum_z) - label_ce;
            if (k == 2 || label_ce > others) /* see others_direct */
                others = soft_others_direct(r, p, k, L);
            prior_ce = others / (double)(k - 1);
        } else
            prior_ce = 0.0;
        coef_sum = r->a_sum;
        target_coef = 0.0;
    }
    const double zl = p->lambda * lse * lse;

    bt->loss += ce * p->ce_scale + zl * p->z_scale;
    if (c->loss && c->opt.reduction == LSR_REDUCTION_NONE) c->loss[i] = (float)(ce + zl);
    bt->label_ce += label_ce;
    bt->prior_ce += prior_ce;
    bt->max_prob += inv_sum_exp; /* exp(max - lse) */
    bt->lse += lse;
    bt->valid++;
    if (r->z_target == s.max) bt->hits++;

    /* p = exps weight (weight = exp(m - max) / sum_exp, per chunk), so the
     * gradient p A - c is exps (A weight) - c */
    const double scale_p = p->ce_scale * coef_sum + p->z_scale * 2.0 * p->lambda * lse;
    for (int64_t ch = 0; ch < p->nchunks; ch++) {
        chunks[ch].weight *= inv_sum_exp;
        chunks[ch].scale_p = (float)(scale_p * chunks[ch].weight);
    }
    r->a_scale = (float)(p->soft ? p->ce_scale : eps * p->ce_scale);
    r->a_const_scaled = (float)(eps * p->ce_scale * r->a_const);
    r->target_scale = scale_p;
    r->target_coef = p->ce_scale * target_coef;
}

static void row_pass3(const row_state *r, const loss_plan *p, int64_t k, int64_t chunk,
                      const float *exps, const chunk_sums *chunks) {
    const int64_t off = chunk * LSR_CHUNK;
    p->pass_scale(r->g + (size_t)off * p->g_size, exps + off, chunk_length(k, chunk),
                  chunks[chunk].scale_p, r->a ? r->a + off : NULL, r->a_scale, r->a_const_scaled,
                  p->stream);
}

/* Passes 1 (unless max_known) and 2 of row r and pass 3 of row prev on the
 * same chunk, the last two in one loop (a, b NULL): what row_pass12 and
 * row_pass3 compute. */
static void row_pass12_and_3(const row_state *r, const row_state *prev, const loss_plan *p,
                             int64_t k, int64_t chunk, chunk_sums *chunks, float *exps,
                             const chunk_sums *prev_chunks, const float *prev_exps, int max_known) {
    const int64_t off = chunk * LSR_CHUNK, len = chunk_length(k, chunk);
    const char *z = r->z + (size_t)off * p->z_size;
    const float max = chunk_max(p, z, len, chunks, chunk, max_known);
    p->pass_exp_scale(&chunks[chunk], exps + off, z, len, max, chunk_next(r, p, k, chunk),
                      prev->g + (size_t)off * p->g_size, prev_exps + off,
                      prev_chunks[chunk].scale_p, prev->a_const_scaled, p->stream);
}

/* After pass 3.  Orders this thread's streamed stores of the row first:
 * before the plain store below, and before any other thread reads them. */
static void row_end(const row_state *r, const loss_plan *p, const float *exps,
                    const chunk_sums *chunks) {
    if (p->stream) p->kernels->stream_fence();
    if (p->soft) return;
    /* The label's entry p_y A - c_y in double: pass 3 left out (1 - eps) w_y. */
    const int64_t ch = p->nchunks == 1 ? 0 : r->target / LSR_CHUNK; /* no division for K = 10 */
    const double pt = (double)exps[r->target] * chunks[ch].weight;
    lsr__grad_store(r->g, r->target, (float)(pt * r->target_scale - r->target_coef), p->g_type);
}

static lsr_status plan_init(loss_plan *p, const loss_call *c) {
    memset(p, 0, sizeof *p);
    const int64_t n = c->n, k = c->k;
    const lsr_loss_options *opt = &c->opt;
    switch (c->isa) {
#if defined(LSR_HAVE_X86_KERNELS)
    case LSR_ISA_AVX512: /* the same bits either way */
        p->kernels = &lsr__kernels_avx512;
#if defined(LSR_HAVE_AVX512BF16_KERNELS)
        if (lsr__cpu_has_avx512_bf16()) p->kernels = &lsr__kernels_avx512_bf16;
#endif
        break;
    case LSR_ISA_AVX2:
        p->kernels = &lsr__kernels_avx2;
        break;
#endif
    default:
        p->kernels = &lsr__kernels_scalar;
        break;
    }
    p->z_type = opt->logits_dtype;
    p->g_type = opt->grad_dtype;
    p->z_size = lsr__dtype_size(p->z_type);
    p->g_size = lsr__dtype_size(p->g_type);
    p->pass_max = p->kernels->pass_max[p->z_type];
    p->pass_exp = p->kernels->pass_exp[p->z_type];
    p->pass_scale = p->kernels->pass_scale[p->g_type];
    p->pass_exp_scale = p->kernels->pass_exp_scale[p->z_type][p->g_type];
    p->soft = c->labels == NULL;
    p->others = opt->convention == LSR_SMOOTHING_OTHERS && !opt->prior;
    p->eps = opt->smoothing;
    p->lambda = opt->z_loss;
    p->nchunks = (k + LSR_CHUNK - 1) / LSR_CHUNK;
    p->max_first = p->z_type == LSR_DTYPE_BFLOAT16 && p->nchunks > 1;
    /* Streaming stores pay off once the gradient is far larger than the caches. */
    p->stream = c->grad && (double)n * (double)c->stride * (double)p->g_size >= 64.0 * (1 << 20);
    if (opt->prior)
        for (int64_t j = 0; j < k; j++)
            p->prior_sum += opt->prior[j];

    if (p->soft) { /* every row counts, with weight 1 */
        const int mean = opt->reduction == LSR_REDUCTION_MEAN;
        p->ce_scale = p->z_scale = mean ? (n > 0 ? 1.0 / (double)n : 0.0) : 1.0;
    } else {
        lsr__loss_divisors(&p->ce_scale, &p->z_scale, opt, c->labels, n);
    }
    if (p->soft) return LSR_OK;

    const double u_const = p->others ? (k > 1 ? 1.0 / (double)(k - 1) : 0.0) : 1.0 / (double)k;
    const float *w = opt->class_weights;
    if (!w && !opt->prior) {
        p->a_const = u_const;
        p->a_sum = u_const * (double)k;
        return LSR_OK;
    }
    p->a_owned = malloc((size_t)k * sizeof(float));
    p->sums_owned = calloc(2 * (size_t)p->nchunks, sizeof(double));
    if (!p->a_owned || !p->sums_owned)
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %lld classes", (long long)k);
    if (w && opt->prior) p->b = opt->prior;
    double *a_sums = p->sums_owned, *b_sums = p->sums_owned + p->nchunks;
    for (int64_t j = 0; j < k; j++) { /* a, its sum and each chunk's, and b's */
        const double u = opt->prior ? opt->prior[j] : u_const;
        p->a_owned[j] = (float)((w ? w[j] : 1.0) * u);
        p->a_sum += (double)p->a_owned[j];
        a_sums[j / LSR_CHUNK] += (double)p->a_owned[j];
        if (p->b) b_sums[j / LSR_CHUNK] += (double)p->b[j];
    }
    p->a = p->a_owned;
    p->a_sums = a_sums;
    p->b_sums = p->b ? b_sums : NULL;
    return LSR_OK;
}

static void process_row(const loss_call *c, const loss_plan *p, int64_t i, const row_scratch *rs,
                        block_totals *bt) {
    const int64_t k = c->k;
    row_state r;
    if (!row_begin(&r, c, p, i, rs)) return;
    if (p->max_first)
        for (int64_t ch = 0; ch < p->nchunks; ch++)
            row_pass1(&r, p, k, ch, rs->chunks);
    for (int64_t ch = 0; ch < p->nchunks; ch++)
        row_pass12(&r, p, k, ch, rs->chunks, rs->exps, p->max_first);
    row_after_pass12(&r, p, rs->chunks);
    row_after_pass2(&r, c, p, i, rs->chunks, bt);
    if (r.skip || !r.g) return;
    for (int64_t ch = 0; ch < p->nchunks; ch++)
        row_pass3(&r, p, k, ch, rs->exps, rs->chunks);
    row_end(&r, p, rs->exps, rs->chunks);
}

/* Short rows (one chunk): a row is a chain of dependent steps too short to
 * keep the core busy, so SMALL_GROUP rows go through each step together
 * and their chains overlap.  Rows are still accounted in order. */
#define SMALL_GROUP 4
static void process_small_rows(const loss_call *c, const loss_plan *p, int64_t first, int64_t count,
                               const row_scratch *rs, block_totals *bt) {
    const int64_t k = c->k;
    row_state r[SMALL_GROUP];
    int live[SMALL_GROUP];
    for (int64_t g = 0; g < count; g++)
        live[g] = row_begin(&r[g], c, p, first + g, &rs[g]);
    for (int64_t g = 0; g < count; g++) /* each step for all the rows: their chains overlap */
        if (live[g]) row_pass1(&r[g], p, k, 0, rs[g].chunks);
    for (int64_t g = 0; g < count; g++)
        if (live[g]) row_pass12(&r[g], p, k, 0, rs[g].chunks, rs[g].exps, 1);
    for (int64_t g = 0; g < count; g++)
        if (live[g]) row_after_pass12(&r[g], p, rs[g].chunks);
    for (int64_t g = 0; g < count; g++)
        if (live[g]) {
            row_after_pass2(&r[g], c, p, first + g, rs[g].chunks, bt);
            live[g] = !r[g].skip;
        }
    if (!c->grad) return;
    for (int64_t g = 0; g < count; g++)
        if (live[g]) row_pass3(&r[g], p, k, 0, rs[g].exps, rs[g].chunks);
    for (int64_t g = 0; g < count; g++)
        if (live[g]) row_end(&r[g], p, rs[g].exps, rs[g].chunks);
}

/* Rows with a gradient, one thread: pass 3 of each row runs chunk by chunk
 * between the chunks of the next row's pass 2 (and pass 1, but with
 * max_first), so that the
 * gradient's writes spread over the time the next row's reads take,
 * instead of coming in one burst per row.  Same arithmetic, same order of
 * accounting as process_row: the results are bit-identical to it.  rs: two
 * scratch sets, used in turn.  Rows of two chunks or more only, which go a
 * row to a block: row i's sums into totals[i]. */
static void process_rows_pipelined(const loss_call *c, const loss_plan *p, int64_t first,
                                   int64_t end, const row_scratch *rs, block_totals *totals) {
    const int64_t k = c->k, nchunks = p->nchunks;
    row_state r[2];
    int pending = -1; /* the set whose row still needs pass 3, or -1 */
    for (int64_t i = first; i < end; i++) {
        const int cur = (int)(i & 1);
        const int live = row_begin(&r[cur], c, p, i, &rs[cur]);
        if (live && p->max_first)
            for (int64_t ch = 0; ch < nchunks; ch++)
                row_pass1(&r[cur], p, k, ch, rs[cur].chunks);
        /* passes 2 and 3 in one loop where the kernels have it (no a, b),
         * streamed or not (in cache, 256 x 8192 at 1 thread: 10-15 % less
         * time than the two loops in turn) */
        const int fused = live && pending >= 0 && !r[cur].a && !r[cur].b && !r[pending].a;
        for (int64_t ch = 0; ch < nchunks; ch++) {
            if (fused) {
                row_pass12_and_3(&r[cur], &r[pending], p, k, ch, rs[cur].chunks, rs[cur].exps,
                                 rs[pending].chunks, rs[pending].exps, p->max_first);
                continue;
            }
            if (live) row_pass12(&r[cur], p, k, ch, rs[cur].chunks, rs[cur].exps, p->max_first);
            if (pending >= 0)
                row_pass3(&r[pending], p, k, ch, rs[pending].exps, rs[pending].chunks);
        }
        if (pending >= 0) {
            row_end(&r[pending], p, rs[pending].exps, rs[pending].chunks);
            pending = -1;
        }
        if (live) {
            row_after_pass12(&r[cur], p, rs[cur].chunks);
            row_after_pass2(&r[cur], c, p, i, rs[cur].chunks, &totals[i]); /* a row a block */
            if (!r[cur].skip) pending = cur;
        }
    }
    if (pending >= 0) {
        for (int64_t ch = 0; ch < nchunks; ch++)
            row_pass3(&r[pending], p, k, ch, rs[pending].exps, rs[pending].chunks);
        row_end(&r[pending], p, rs[pending].exps, rs[pending].chunks);
    }
}

/* Few rows, many classes: all threads work on each row in turn. */
static void process_row_shared(const loss_call *c, const loss_plan *p, int64_t i,
                               const row_scratch *rs, block_totals *bt) {
    const int64_t k = c->k, nchunks = p->nchunks;
    row_state r;
    if (!row_begin(&r, c, p, i, rs)) return;
#pragma omp parallel for schedule(static) num_threads(c->threads)
    for (int64_t ch = 0; ch < nchunks; ch++)
        row_pass12(&r, p, k, ch, rs->chunks, rs->exps, 0);
    row_after_pass12(&r, p, rs->chunks);
    row_after_pass2(&r, c, p, i, rs->chunks, bt);
    if (r.skip || !r.g) return;
#pragma omp parallel num_threads(c->threads)
    {
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nchunks; ch++)
            row_pass3(&r, p, k, ch, rs->exps, rs->chunks);
        if (p->stream) p->kernels->stream_fence(); /* row_end fences only this thread */
    }
    row_end(&r, p, rs->exps, rs->chunks);
}

/* The scratch rows of the last call, kept for the next (one block for the
 * process, handed from call to call by atomic exchange: calls from several
 * threads at once each get a block).  A fresh block of megabytes (rows of
 * exps: 1 MB a thread at K = 128256) comes from mmap and is page-faulted
 * by every call, ~250 faults a thread and call, taken in parallel by all
 * the threads on the process's one address space; a kept one is warm.
 * Blocks over SCRATCH_KEEP_MAX are not kept.  The block kept at exit is
 * still reachable, not leaked. */
#define SCRATCH_KEEP_MAX ((size_t)256 << 20)
typedef struct scratch_block {
    size_t bytes; /* usable bytes from data */
    char pad[64 - sizeof(size_t)];
    float data[]; /* 64-byte aligned */
} scratch_block;
static _Atomic(scratch_block *) kept_scratch;

static scratch_block *scratch_take(size_t bytes) {
    scratch_block *b = atomic_exchange(&kept_scratch, NULL);
    if (b && b->bytes >= bytes) return b;
    free(b);
    b = aligned_alloc(64, sizeof *b + (bytes + 63) / 64 * 64);
    if (b) b->bytes = bytes;
    return b;
}

static void scratch_give_back(scratch_block *b) {
    if (!b) return;
    if (b->bytes > SCRATCH_KEEP_MAX) {
        free(b);
        return;
    }
    scratch_block *old = atomic_exchange(&kept_scratch, b);
    if (old && old->bytes > b->bytes) /* keep the larger one */
        old = atomic_exchange(&kept_scratch, old);
    free(old);
}

static lsr_status run(const loss_call *c, const loss_plan *p, lsr__loss_sums *sums_out) {
    const int64_t n = c->n, k = c->k;
    const int64_t rows_per_block = p->nchunks >= 2 ? 1 : ROWS_PER_BLOCK;
    const int64_t nblocks = (n + rows_per_block - 1) / rows_per_block;
    const int threads = c->threads;
    const int share_rows = threads > 1 && p->nchunks >= 2 && n < 4 * (int64_t)threads;
    const int pipelined = c->grad && p->nchunks >= 2; /* one-chunk rows: no gain measured */
    const int group = k <= 256 ? SMALL_GROUP : pipelined ? 2 : 1; /* scratch sets per thread */
    const int sets = share_rows ? 1 : threads * group;
    /* Each scratch set starts on its own cache lines (no false sharing). */
    const size_t line_floats = 64 / sizeof(float);
    const size_t row_floats = ((size_t)k + line_floats - 1) / line_floats * line_floats;
    const size_t coef_floats = p->soft ? row_floats : 0, exp_floats = c->grad ? row_floats : 0;
    const size_t set_floats = coef_floats + exp_floats;
    const size_t chunk_bytes_used = (size_t)p->nchunks * sizeof(chunk_sums) +
                                    (p->soft ? 2 * (size_t)p->nchunks * sizeof(double) : 0);
    const size_t set_chunk_bytes = (chunk_bytes_used + 63) / 64 * 64;

    block_totals *totals = calloc((size_t)(nblocks ? nblocks : 1), sizeof *totals);
    scratch_block *block =
        set_floats ? scratch_take((size_t)sets * set_floats * sizeof(float)) : NULL;
    float *floats = block ? block->data : NULL;
    char *chunk_bytes = aligned_alloc(64, (size_t)sets * set_chunk_bytes);
    row_scratch *scratch = malloc((size_t)sets * sizeof *scratch);
    if (!totals || !chunk_bytes || !scratch || (set_floats && !floats)) {
        free(totals);
        scratch_give_back(block);
        free(chunk_bytes);
        free(scratch);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for scratch of %lld classes",
                         (long long)k);
    }
    for (int set = 0; set < sets; set++) {
        float *mine = floats ? floats + (size_t)set * set_floats : NULL;
        scratch[set].coef = coef_floats ? mine : NULL;
        scratch[set].exps = exp_floats ? mine + coef_floats : NULL;
        scratch[set].chunks = (chunk_sums *)(void *)(chunk_bytes + (size_t)set * set_chunk_bytes);
        scratch[set].coef_sums =
            p->soft ? (double *)(void *)(scratch[set].chunks + p->nchunks) : NULL;
    }
    for (int64_t b = 0; b < nblocks; b++)
        totals[b].first_bad = -1;

    if (!share_rows) {
#pragma omp parallel num_threads(threads)
        {
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            const row_scratch *rs = scratch + (size_t)tid * (size_t)group;
            if (pipelined) { /* one stretch of rows a thread, pipelined from end to end */
                process_rows_pipelined(c, p, n * tid / nth, n * (tid + 1) / nth, rs, totals);
            } else {
#pragma omp for schedule(static)
                for (int64_t b = 0; b < nblocks; b++) {
                    const int64_t first = b * rows_per_block;
                    const int64_t end = first + rows_per_block < n ? first + rows_per_block : n;
                    for (int64_t i = first; i < end; i += group) {
                        if (group == 1)
                            process_row(c, p, i, rs, &totals[b]);
                        else
                            process_small_rows(c, p, i, end - i < group ? end - i : group, rs,
                                               &totals[b]);
                    }
                }
            }
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            process_row_shared(c, p, i, scratch, &totals[i / rows_per_block]);
    }

    block_totals sum = {0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, -1};
    for (int64_t b = 0; b < nblocks; b++) {
        sum.loss += totals[b].loss;
        sum.label_ce += totals[b].label_ce;
        sum.prior_ce += totals[b].prior_ce;
        sum.max_prob += totals[b].max_prob;
        sum.lse += totals[b].lse;
        sum.valid += totals[b].valid;
        sum.hits += totals[b].hits;
        if (sum.first_bad < 0) sum.first_bad = totals[b].first_bad;
    }
    free(totals);
    scratch_give_back(block);
    free(chunk_bytes);
    free(scratch);

    if (sums_out) { /* the caller reduces, and reports non-finite rows itself */
        *sums_out = (lsr__loss_sums){sum.loss, sum.label_ce, sum.prior_ce, sum.max_prob,
                                     sum.lse,  sum.valid,    sum.hits,     sum.first_bad};
        return LSR_OK;
    }
    if (c->loss && c->opt.reduction != LSR_REDUCTION_NONE)
        c->loss[0] = sum.first_bad >= 0 ? NAN : (float)sum.loss;
    if (c->stats) {
        const double d = sum.valid > 0 ? (double)sum.valid : 1.0;
        c->stats->valid_rows = sum.valid;
        c->stats->top1_hits = sum.hits;
        c->stats->label_ce = sum.label_ce / d;
        c->stats->prior_ce = sum.prior_ce / d;
        c->stats->mean_max_prob = sum.max_prob / d;
        c->stats->mean_lse = sum.lse / d;
    }
    if (sum.first_bad >= 0)
        return lsr__fail(LSR_ERROR_NONFINITE,
                         "logits row %lld has a NaN or infinite value, or values too far apart "
                         "for float",
                         (long long)sum.first_bad);
    return LSR_OK;
}

static lsr_status fast(const loss_call *c) {
    loss_plan p;
    lsr_status s = plan_init(&p, c);
    if (s == LSR_OK) s = run(c, &p, NULL);
    free(p.a_owned);
    free(p.sums_owned);
    return s;
}

void lsr__loss_divisors(double *ce_scale, double *z_scale, const lsr_loss_options *opt,
                        const int64_t *labels, int64_t n) {
    double weight_sum = 0.0;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == opt->ignore_index) continue;
        valid++;
        weight_sum += opt->class_weights ? opt->class_weights[labels[i]] : 1.0;
    }
    *ce_scale = *z_scale = 1.0;
    if (opt->reduction == LSR_REDUCTION_MEAN) {
        *ce_scale = weight_sum > 0.0 ? 1.0 / weight_sum : 0.0;
        *z_scale = valid > 0 ? 1.0 / (double)valid : 0.0;
    }
}

lsr_status lsr__cross_entropy_rows(lsr__loss_sums *sums, float *row_loss, float *grad,
                                   const float *logits, const int64_t *labels, int64_t n, int64_t k,
                                   int64_t stride, const lsr_loss_options *options, double ce_scale,
                                   double z_scale) {
    loss_call call;
    lsr_loss_options o = *options;
    o.reduction = row_loss ? LSR_REDUCTION_NONE : LSR_REDUCTION_SUM;
    o.logits_dtype = o.grad_dtype = LSR_DTYPE_FLOAT32;
    lsr__loss_call_fill(&call, row_loss, grad, NULL, logits, labels, NULL, n, k, stride, &o);
    loss_plan p;
    lsr_status s = plan_init(&p, &call);
    if (s == LSR_OK) {
        p.ce_scale = ce_scale;
        p.z_scale = z_scale;
        p.stream = 0; /* the caller reads the gradient back at once */
        s = run(&call, &p, sums);
    }
    free(p.a_owned);
    free(p.sums_owned);
    return s;
}

lsr_status lsr_cross_entropy(float *loss, void *grad, lsr_loss_stats *stats, const void *logits,
                             const int64_t *labels, int64_t n, int64_t k, int64_t stride,
                             const lsr_loss_options *options) {
    loss_call call;
    lsr_status s =
        lsr__validate(&call, 0, loss, grad, stats, logits, labels, NULL, n, k, stride, options);
    return s ? s : fast(&call);
}

lsr_status lsr_cross_entropy_soft(float *loss, void *grad, lsr_loss_stats *stats,
                                  const void *logits, const float *targets, int64_t n, int64_t k,
                                  int64_t stride, const lsr_loss_options *options) {
    loss_call call;
    lsr_status s =
        lsr__validate(&call, 1, loss, grad, stats, logits, NULL, targets, n, k, stride, options);
    return s ? s : fast(&call);
}
