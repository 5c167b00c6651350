/* lsr_cross_entropy_mpi: the loss with the classes split over the ranks
 * (lsr/loss_mpi.h).
 *
 * Per row, each rank sums over its shard, relative to its shard's largest
 * logit m:  s = sum exp(z - m),  da = sum a (z - m),  sa = sum a,
 * dp = sum p (z - m),  sp = sum p  (a_k = w_k u_k the smoothing
 * coefficients, u the convention's or the prior; p the prior, or 1 without
 * one), and the rank that holds the label adds its z_y, w_y and a_y.  One
 * MPI_Allreduce combines the rows' values: the (m, s, da, dp) of two parts
 * move to the larger m (s times exp(m' - M), da plus (m' - M) sa, ...), the
 * rest add.  With the row's max M, L = log s (s >= 1) and lse = M + L:
 *     sum_k a_k (lse - z_k) = sa L - da          (both terms >= 0)
 * and the "others" convention takes the label's a_y (lse - z_y) out.  Then
 * every rank computes the same losses and statistics, and its shard's
 * gradient p A - c as the single-process loss defines it. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss_internal.h"
#include "lsr/loss_mpi.h"

#ifdef _OPENMP
#include <omp.h>
static int max_threads(void) { return omp_get_max_threads(); }
#else
static int max_threads(void) { return 1; }
#endif

enum { M_MAX, M_MIN, S_EXP, D_A, S_A, D_P, S_P, Z_Y, W_Y, A_Y, OWNER, NONFINITE, ROW_VALUES };

/* y += x for rows of ROW_VALUES doubles (the MPI reduction operator). */
static void combine(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const double *x = in;
    double *y = inout;
    for (int r = 0; r < *len; r++, x += ROW_VALUES, y += ROW_VALUES) {
        const double m = fmax(x[M_MAX], y[M_MAX]);
        if (m > -INFINITY) { /* else both parts hold no class */
            const double fx = x[M_MAX] > -INFINITY ? exp(x[M_MAX] - m) : 0.0;
            const double fy = y[M_MAX] > -INFINITY ? exp(y[M_MAX] - m) : 0.0;
            const double sx = x[M_MAX] > -INFINITY ? x[M_MAX] - m : 0.0;
            const double sy = y[M_MAX] > -INFINITY ? y[M_MAX] - m : 0.0;
            y[S_EXP] = x[S_EXP] * fx + y[S_EXP] * fy;
            y[D_A] = (x[D_A] + sx * x[S_A]) + (y[D_A] + sy * y[S_A]);
            y[D_P] = (x[D_P] + sx * x[S_P]) + (y[D_P] + sy * y[S_P]);
            y[M_MAX] = m;
        }
        y[M_MIN] = fmin(x[M_MIN], y[M_MIN]);
        y[S_A] += x[S_A];
        y[S_P] += x[S_P];
        for (int v = Z_Y; v < ROW_VALUES; v++)
            y[v] += x[v];
    }
}

/* This rank's checks of its own arguments (the global ones come after the
 * exchange); the first failure's status, its message in lsr_last_error. */
static lsr_status check_local(const lsr_loss_options *o, float *loss, float *grad,
                              lsr_loss_stats *stats, const float *logits, const int64_t *labels,
                              int64_t n, int64_t k, int64_t stride, double *prior_sum) {
    if (n < 0 || n > INT32_MAX)
        return lsr__fail(LSR_ERROR_SIZE, "n = %lld: must be in [0, 2^31)", (long long)n);
    if (k < 0 || k > LSR_MAX_CLASSES)
        return lsr__fail(LSR_ERROR_SIZE, "k_local = %lld: must be in [0, %d]", (long long)k,
                         LSR_MAX_CLASSES);
    if (stride < k)
        return lsr__fail(LSR_ERROR_SIZE, "stride = %lld: must be >= k_local = %lld",
                         (long long)stride, (long long)k);
    if (stride > INT64_MAX / 4 / (n > 0 ? n : 1))
        return lsr__fail(LSR_ERROR_SIZE, "n = %lld rows of stride %lld do not fit in memory",
                         (long long)n, (long long)stride);
    if (n > 0 && k > 0 && !logits) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "logits is NULL");
    if (n > 0 && !labels) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "labels is NULL");
    LSR_TRY(lsr__check_option_values(o));
    if (o->logits_dtype != LSR_DTYPE_FLOAT32 || o->grad_dtype != LSR_DTYPE_FLOAT32)
        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                         "logits_dtype, grad_dtype: lsr_cross_entropy_mpi takes float32 only");
    *prior_sum = 0.0; /* this shard's: the ranks' add up to 1 (check_global) */
    if (o->prior)
        LSR_TRY(lsr__check_distribution(prior_sum, o->prior, k, "prior", 0, LSR_ERROR_PRIOR));
    if (o->class_weights)
        LSR_TRY(lsr__check_distribution(NULL, o->class_weights, k, "class_weights", 0,
                                        LSR_ERROR_WEIGHT));
    const int64_t loss_count = o->reduction == LSR_REDUCTION_NONE ? n : 1;
    const lsr__span outputs[] = {
        lsr__rows_span("loss", loss, 1, loss_count, loss_count, sizeof(float)),
        lsr__rows_span("grad", grad, n, k, stride, sizeof(float)),
        lsr__rows_span("stats", stats, 1, 1, 1, sizeof *stats)};
    const lsr__span inputs[] = {
        lsr__rows_span("logits", logits, n, k, stride, sizeof(float)),
        lsr__rows_span("labels", labels, n, 1, 1, sizeof(int64_t)),
        lsr__rows_span("prior", o->prior, 1, k, k, sizeof(float)),
        lsr__rows_span("class_weights", o->class_weights, 1, k, k, sizeof(float))};
    return lsr__check_overlaps(outputs, 3, inputs, 4, grad && grad == logits ? 1 : -1, 0);
}

/* The checks that need every rank's shard: K, the labels, the prior's sum. */
static lsr_status check_global(const lsr_loss_options *o, const int64_t *labels, int64_t n,
                               int64_t k_total, double prior_total) {
    if (k_total < 1 || k_total > LSR_MAX_CLASSES)
        return lsr__fail(LSR_ERROR_SIZE, "K = %lld classes over the ranks: must be in [1, %d]",
                         (long long)k_total, LSR_MAX_CLASSES);
    if (o->convention == LSR_SMOOTHING_OTHERS && !o->prior && k_total == 1 && o->smoothing > 0.0f)
        return lsr__fail(LSR_ERROR_SMOOTHING,
                         "smoothing = %g with the 'others' convention needs K >= 2",
                         (double)o->smoothing);
    if (o->prior && !(fabs(prior_total - 1.0) <= 1e-4))
        return lsr__fail(LSR_ERROR_PRIOR,
                         "prior sums to %.7g over the ranks: must sum to 1 within 1e-4",
                         prior_total);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != o->ignore_index && (labels[i] < 0 || labels[i] >= k_total))
            return lsr__fail(
                LSR_ERROR_LABEL, "labels[%lld] = %lld: must be in [0, %lld) or ignore_index %lld",
                (long long)i, (long long)labels[i], (long long)k_total, (long long)o->ignore_index);
    return LSR_OK;
}

/* This rank's values of row i (v: ROW_VALUES doubles). */
static void row_values(double *v, const float *z, int64_t k, int64_t k0, int64_t y,
                       const lsr_loss_options *o, double u_const) {
    memset(v, 0, ROW_VALUES * sizeof *v);
    v[M_MAX] = -INFINITY;
    v[M_MIN] = INFINITY;
    float m = -FLT_MAX, lo = FLT_MAX;
    int bad = 0;
    for (int64_t j = 0; j < k; j++) {
        bad |= !isfinite(z[j]);
        if (z[j] > m) m = z[j];
        if (z[j] < lo) lo = z[j];
    }
    if (bad) {
        v[NONFINITE] = 1.0;
    } else if (k > 0) {
        double s = 0.0, da = 0.0, sa = 0.0, dp = 0.0, sp = 0.0;
        for (int64_t j = 0; j < k; j++) {
            const double d = (double)z[j] - m;
            const double w = o->class_weights ? o->class_weights[j] : 1.0;
            const double p = o->prior ? o->prior[j] : 1.0;
            const double a = w * (o->prior ? p : u_const);
            s += exp(d);
            da += a * d;
            sa += a;
            dp += p * d;
            sp += p;
        }
        v[M_MAX] = m, v[M_MIN] = lo, v[S_EXP] = s, v[D_A] = da, v[S_A] = sa, v[D_P] = dp;
        v[S_P] = sp;
    }
    if (y >= k0 && y < k0 + k) { /* the label is here */
        const int64_t j = y - k0;
        const double w = o->class_weights ? o->class_weights[j] : 1.0;
        v[Z_Y] = z[j];
        v[W_Y] = w;
        v[A_Y] = w * (o->prior ? o->prior[j] : u_const);
        v[OWNER] = 1.0;
    }
}

lsr_status lsr_cross_entropy_mpi(MPI_Comm comm, float *loss, float *grad, lsr_loss_stats *stats,
                                 const float *logits, const int64_t *labels, int64_t n,
                                 int64_t k_local, int64_t stride, const lsr_loss_options *options) {
    lsr__clear_error();
    const lsr_loss_options o = options ? *options : lsr_loss_options_default();
    int rank = 0, size = 1;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS)
        return lsr__fail(LSR_ERROR_OPTION, "comm: not a communicator");

    /* What this rank needs for the exchanges, made first: a failure here is
     * this rank's status, which the others learn in the first exchange (none
     * returns early while the others wait). */
    double prior_sum = 0.0;
    lsr_status local =
        check_local(&o, loss, grad, stats, logits, labels, n, k_local, stride, &prior_sum);
    double few[3 * 64];
    double *all = size <= 64 ? few : malloc((size_t)size * 3 * sizeof(double));
    if (!all) /* a few bytes a rank: the others would wait; not seen in practice */
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %d ranks", size);
    double *v = local ? NULL : calloc((size_t)(n > 0 ? n : 1) * ROW_VALUES, sizeof(double));
    MPI_Datatype row_type = MPI_DATATYPE_NULL;
    MPI_Op op = MPI_OP_NULL;
    if (!local && !v)
        local = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %lld rows", (long long)n);
    if (!local && (MPI_Type_contiguous(ROW_VALUES, MPI_DOUBLE, &row_type) != MPI_SUCCESS ||
                   MPI_Type_commit(&row_type) != MPI_SUCCESS ||
                   MPI_Op_create(combine, 0, &op) != MPI_SUCCESS)) /* 0: in rank order */
        local = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "MPI: cannot make the row type and operator");

    /* every rank's shard size, status and prior sum, so that all agree */
    double mine[3] = {(double)k_local, (double)local, prior_sum};
    lsr_status status = LSR_OK;
    if (MPI_Allgather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, comm) != MPI_SUCCESS)
        status = lsr__fail(LSR_ERROR_OPTION, "MPI_Allgather failed on comm");
    int64_t k0 = 0, k_total = 0;
    double prior_total = 0.0;
    int failed_rank = -1;
    for (int r = 0; !status && r < size; r++) {
        if (r < rank) k0 += (int64_t)all[3 * r];
        k_total += (int64_t)all[3 * r];
        prior_total += all[3 * r + 2];
        if (failed_rank < 0 && all[3 * r + 1] != 0.0) failed_rank = r;
    }
    if (!status && local)
        status = local;
    else if (!status && failed_rank >= 0)
        status =
            lsr__fail((lsr_status)all[3 * failed_rank + 1], "rank %d refused its arguments (%s)",
                      failed_rank, lsr_status_name((lsr_status)all[3 * failed_rank + 1]));
    if (!status) /* the same on every rank (the same labels and options) */
        status = check_global(&o, labels, n, k_total, prior_total);

    const int others = o.convention == LSR_SMOOTHING_OTHERS && !o.prior;
    const double u_const =
        others ? (k_total > 1 ? 1.0 / (double)(k_total - 1) : 0.0) : 1.0 / (double)k_total;
    const int threads = o.threads > 0 ? o.threads : max_threads();
    (void)threads; /* without OpenMP */
    if (!status) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t i = 0; i < n; i++)
            if (labels[i] != o.ignore_index)
                row_values(v + (size_t)i * ROW_VALUES, logits + (size_t)i * (size_t)stride, k_local,
                           k0, labels[i], &o, u_const);
        if (n > 0 && MPI_Allreduce(MPI_IN_PLACE, v, (int)n, row_type, op, comm) != MPI_SUCCESS)
            status = lsr__fail(LSR_ERROR_OPTION, "the MPI reduction of the rows failed on comm");
    }
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
    if (row_type != MPI_DATATYPE_NULL) MPI_Type_free(&row_type);
    if (all != few) free(all);
    if (status) {
        free(v);
        return status;
    }

    /* the reduction's divisors, from the labels and the gathered weights */
    double weight_sum = 0.0;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != o.ignore_index) {
            valid++;
            weight_sum += v[(size_t)i * ROW_VALUES + W_Y];
        }
    double ce_scale = 1.0, z_scale = 1.0;
    if (o.reduction == LSR_REDUCTION_MEAN) {
        ce_scale = weight_sum > 0.0 ? 1.0 / weight_sum : 0.0;
        z_scale = valid > 0 ? 1.0 / (double)valid : 0.0;
    }
    const double eps = o.smoothing, keep = 1.0 - eps, lambda = o.z_loss;
    const double kd = (double)k_total;
    double total = 0.0, label_ce = 0.0, prior_ce = 0.0, max_prob = 0.0, lse_sum = 0.0;
    int64_t hits = 0, first_bad = -1, computed = 0;
    for (int64_t i = 0; i < n; i++) {
        float *g = grad ? grad + (size_t)i * (size_t)stride : NULL;
        const int64_t y = labels[i];
        if (y == o.ignore_index) {
            if (g) memset(g, 0, (size_t)k_local * sizeof(float));
            if (loss && o.reduction == LSR_REDUCTION_NONE) loss[i] = 0.0f;
            continue;
        }
        const double *r = v + (size_t)i * ROW_VALUES;
        /* as the single-process loss: logits that are not finite, or two that
         * differ by more than float holds (their difference, in float, overflows) */
        const float spread = (float)r[M_MIN] - (float)r[M_MAX];
        if (r[NONFINITE] > 0.0 ||
            !isfinite(spread)) { /* as the single-process loss: counted in the divisors only */
            if (first_bad < 0) first_bad = i;
            if (loss && o.reduction == LSR_REDUCTION_NONE) loss[i] = NAN;
            continue;
        }
        const double M = r[M_MAX], L = log(r[S_EXP]), lse = M + L;
        const double nll = (M - r[Z_Y]) + L;
        double smooth = r[S_A] * L - r[D_A], a_sum = r[S_A], a_y = r[A_Y];
        if (others) { /* u_y = 0 */
            smooth -= a_y * nll;
            a_sum -= a_y;
            if (smooth < 0.0) smooth = 0.0; /* a rounding below the true sum, >= 0 */
        }
        const double ce = keep * r[W_Y] * nll + eps * smooth;
        const double zl = lambda * lse * lse;
        total += ce * ce_scale + zl * z_scale;
        if (loss && o.reduction == LSR_REDUCTION_NONE) loss[i] = (float)(ce + zl);
        label_ce += nll;
        if (o.prior)
            prior_ce += r[S_P] * L - r[D_P];
        else if (!others)
            prior_ce += L - r[D_P] / kd;
        else
            prior_ce += k_total > 1 ? (kd * L - r[D_P] - nll) / (kd - 1.0) : 0.0;
        max_prob += 1.0 / r[S_EXP];
        lse_sum += lse;
        computed++;
        hits += r[Z_Y] == M;
        if (!g) continue;
        /* d/dz_k: ce_scale (coef_sum p_k - c_k) + z_scale 2 lambda lse p_k */
        const double coef_sum = keep * r[W_Y] + eps * a_sum;
        const double scale_p = ce_scale * coef_sum + z_scale * 2.0 * lambda * lse;
        const float *z = logits + (size_t)i * (size_t)stride;
        for (int64_t j = 0; j < k_local; j++) {
            const double p = exp(((double)z[j] - M) - L);
            const double w = o.class_weights ? o.class_weights[j] : 1.0;
            double c = eps * w * (o.prior ? o.prior[j] : u_const);
            if (k0 + j == y) c = keep * r[W_Y] + (others ? 0.0 : c);
            g[j] = (float)(p * scale_p - ce_scale * c);
        }
    }
    free(v);
    if (loss && o.reduction != LSR_REDUCTION_NONE) loss[0] = first_bad >= 0 ? NAN : (float)total;
    if (stats) {
        const double d = computed > 0 ? (double)computed : 1.0;
        stats->valid_rows = computed;
        stats->top1_hits = hits;
        stats->label_ce = label_ce / d;
        stats->prior_ce = prior_ce / d;
        stats->mean_max_prob = max_prob / d;
        stats->mean_lse = lse_sum / d;
    }
    if (first_bad >= 0)
        return lsr__fail(LSR_ERROR_NONFINITE, "logits row %lld has a NaN or infinite value",
                         (long long)first_bad);
    return LSR_OK;
}
