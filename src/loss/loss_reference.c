/* The specification: the loss written out term by term in double precision,
 * one row at a time, with no shortcut.  The fast implementation is tested
 * against this file. */
#include <math.h>
#include <stdlib.h>

#include "loss_internal.h"

/* The smoothing distribution u[j] for a row: prior, 1/K, or the "others"
 * convention, where it depends on the row's target (onehot at y for labels,
 * t for soft targets). */
static double smoothing_u(const lsr_loss_options *opt, int64_t k, int64_t j, double target_j) {
    if (opt->prior) return opt->prior[j];
    if (opt->convention == LSR_SMOOTHING_ALL) return 1.0 / (double)k;
    return k > 1 ? (1.0 - target_j) / (double)(k - 1) : 0.0;
}

static lsr_status reference(const loss_call *c) {
    const int64_t n = c->n, k = c->k;
    const lsr_loss_options *opt = &c->opt;
    const double eps = opt->smoothing, lambda = opt->z_loss;
    const int soft = c->labels == NULL;

    /* Divisors of the mean, known before any row is computed. */
    double weight_sum = 0.0;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++) {
        if (soft) {
            valid++;
            weight_sum += 1.0;
        } else if (c->labels[i] != opt->ignore_index) {
            valid++;
            weight_sum += opt->class_weights ? opt->class_weights[c->labels[i]] : 1.0;
        }
    }
    double ce_scale = 1.0, z_scale = 1.0;
    if (opt->reduction == LSR_REDUCTION_MEAN) {
        ce_scale = weight_sum > 0.0 ? 1.0 / weight_sum : 0.0;
        z_scale = valid > 0 ? 1.0 / (double)valid : 0.0;
    }

    double *coef = malloc((size_t)k * sizeof *coef); /* (K) c_j of the row */
    double *prob = malloc((size_t)k * sizeof *prob); /* (K) p_j of the row */
    float *z = malloc((size_t)k * sizeof *z);        /* (K) the row's logits */
    if (!coef || !prob || !z) {
        free(coef);
        free(prob);
        free(z);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %lld classes", (long long)k);
    }

    double total = 0.0, label_ce = 0.0, prior_ce = 0.0, max_prob = 0.0, lse_sum = 0.0;
    int64_t hits = 0, first_bad_row = -1;
    for (int64_t i = 0; i < n; i++) {
        /* the row's logits, read once (an in-place gradient overwrites them) */
        const void *z_in = (const char *)c->logits +
                           (size_t)i * (size_t)c->stride * lsr__dtype_size(opt->logits_dtype);
        for (int64_t j = 0; j < k; j++)
            z[j] = lsr__logit(z_in, j, opt->logits_dtype);
        const float *t = soft ? c->targets + i * c->stride : NULL;
        void *g = c->grad ? (char *)c->grad +
                                (size_t)i * (size_t)c->stride * lsr__dtype_size(opt->grad_dtype)
                          : NULL;
        const int64_t y = soft ? -1 : c->labels[i];

        if (!soft && y == opt->ignore_index) {
            if (g)
                for (int64_t j = 0; j < k; j++)
                    lsr__grad_store(g, j, 0.0f, opt->grad_dtype);
            if (c->loss && opt->reduction == LSR_REDUCTION_NONE) c->loss[i] = 0.0f;
            continue;
        }

        int finite = 1;
        double zmax = -INFINITY;
        for (int64_t j = 0; j < k; j++) {
            if (!isfinite(z[j])) finite = 0;
            if (z[j] > zmax) zmax = z[j];
        }
        /* logits further apart than float can express are refused as well */
        for (int64_t j = 0; j < k && finite; j++)
            if (!isfinite(z[j] - (float)zmax)) finite = 0;
        if (!finite) {
            if (first_bad_row < 0) first_bad_row = i;
            if (c->loss && opt->reduction == LSR_REDUCTION_NONE) c->loss[i] = NAN;
            continue;
        }
        double sum_exp = 0.0;
        for (int64_t j = 0; j < k; j++)
            sum_exp += exp((double)z[j] - zmax);
        const double log_sum = log(sum_exp), lse = zmax + log_sum;

        double coef_sum = 0.0, ce = 0.0, row_label_ce = 0.0, row_prior_ce = 0.0;
        int64_t target_class = y;
        for (int64_t j = 0; j < k; j++) {
            const double target_j = soft ? (double)t[j] : (j == y ? 1.0 : 0.0);
            const double u = smoothing_u(opt, k, j, target_j);
            const double w = opt->class_weights ? opt->class_weights[j] : 1.0;
            /* -log p_j = lse - z_j, taken as (zmax - z_j) + log_sum so that the
             * small log_sum is not lost against large logits */
            const double neg_log_p = (zmax - (double)z[j]) + log_sum;
            coef[j] = w * ((1.0 - eps) * target_j + eps * u);
            coef_sum += coef[j];
            ce += coef[j] * neg_log_p;
            row_label_ce += target_j * neg_log_p;
            row_prior_ce += u * neg_log_p;
            prob[j] = exp(-neg_log_p);
            if (soft && (target_class < 0 || t[j] > t[target_class])) target_class = j;
        }
        const double zl = lambda * lse * lse;
        if ((double)z[target_class] == zmax) hits++;

        total += ce * ce_scale + zl * z_scale;
        if (c->loss && opt->reduction == LSR_REDUCTION_NONE) c->loss[i] = (float)(ce + zl);
        if (g)
            for (int64_t j = 0; j < k; j++)
                lsr__grad_store(g, j,
                                (float)(ce_scale * (prob[j] * coef_sum - coef[j]) +
                                        z_scale * 2.0 * lambda * lse * prob[j]),
                                opt->grad_dtype);

        label_ce += row_label_ce;
        prior_ce += row_prior_ce;
        max_prob += exp(-log_sum);
        lse_sum += lse;
    }
    free(coef);
    free(prob);
    free(z);

    if (c->loss && opt->reduction != LSR_REDUCTION_NONE)
        c->loss[0] = first_bad_row >= 0 ? NAN : (float)total;
    if (c->stats) {
        const double d = valid > 0 ? (double)valid : 1.0;
        c->stats->valid_rows = valid;
        c->stats->top1_hits = hits;
        c->stats->label_ce = label_ce / d;
        c->stats->prior_ce = prior_ce / d;
        c->stats->mean_max_prob = max_prob / d;
        c->stats->mean_lse = lse_sum / d;
    }
    if (first_bad_row >= 0)
        return lsr__fail(LSR_ERROR_NONFINITE,
                         "logits row %lld has a NaN or infinite value, or values too far apart "
                         "for float",
                         (long long)first_bad_row);
    return LSR_OK;
}

lsr_status lsr_cross_entropy_reference(float *loss, void *grad, lsr_loss_stats *stats,
                                       const void *logits, const int64_t *labels, int64_t n,
                                       int64_t k, int64_t stride, const lsr_loss_options *options) {
    loss_call call;
    lsr_status s =
        lsr__validate(&call, 0, loss, grad, stats, logits, labels, NULL, n, k, stride, options);
    return s ? s : reference(&call);
}

lsr_status lsr_cross_entropy_soft_reference(float *loss, void *grad, lsr_loss_stats *stats,
                                            const void *logits, const float *targets, int64_t n,
                                            int64_t k, int64_t stride,
                                            const lsr_loss_options *options) {
    loss_call call;
    lsr_status s =
        lsr__validate(&call, 1, loss, grad, stats, logits, NULL, targets, n, k, stride, options);
    return s ? s : reference(&call);
}
