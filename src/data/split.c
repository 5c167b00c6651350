/* Subsets of a dataset: the seeded training/validation split, and the
 * geometric class imbalance used to compare smoothing priors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

lsr_status lsr_dataset_subset(lsr_dataset *dst, const lsr_dataset *src, const int64_t *idx,
                              int64_t n) {
    if (!dst || !src || (n > 0 && !idx))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_subset: an argument is NULL");
    if (n < 0) return lsr__fail(LSR_ERROR_SIZE, "subset: n = %lld", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= src->n)
            return lsr__fail(LSR_ERROR_SIZE, "subset: index[%lld] = %lld is outside [0, %lld)",
                             (long long)i, (long long)idx[i], (long long)src->n);
    *dst = *src;
    dst->n = n;
    const size_t per = (size_t)src->h * (size_t)src->w * (size_t)src->c;
    dst->x = malloc((n ? (size_t)n : 1) * per * sizeof(float));
    dst->y = malloc((n ? (size_t)n : 1) * sizeof(int64_t));
    if (!dst->x || !dst->y) {
        free(dst->x);
        free(dst->y);
        memset(dst, 0, sizeof *dst);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for a subset of %lld samples",
                         (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst->x + (size_t)i * per, src->x + (size_t)idx[i] * per, per * sizeof(float));
        dst->y[i] = src->y[idx[i]];
    }
    return LSR_OK;
}

lsr_status lsr_dataset_split(lsr_dataset *train, lsr_dataset *val, const lsr_dataset *all,
                             int64_t limit, int64_t val_count, uint64_t seed) {
    if (!train || !val || !all)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_split: an argument is NULL");
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    const int64_t n = limit > 0 && limit < all->n ? limit : all->n;
    if (limit < 0 || val_count < 0)
        return lsr__fail(LSR_ERROR_SIZE, "split: limit = %lld, val_count = %lld: must be >= 0",
                         (long long)limit, (long long)val_count);
    if (val_count >= n)
        return lsr__fail(LSR_ERROR_SIZE, "holding out %lld samples leaves none of %lld to train on",
                         (long long)val_count, (long long)n);
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    if (val_count) {
        lsr_rng r;
        lsr_rng_seed(&r, seed ^ 0x7a11da7eull);
        lsr_rng_shuffle(&r, idx, n);
    }
    lsr_status st = lsr_dataset_subset(train, all, idx, n - val_count);
    if (st == LSR_OK) st = lsr_dataset_subset(val, all, idx + (n - val_count), val_count);
    free(idx);
    if (st != LSR_OK) {
        lsr_dataset_free(train);
        lsr_dataset_free(val);
    }
    return st;
}

lsr_status lsr_dataset_imbalance(lsr_dataset *d, double ratio, uint64_t seed) {
    if (!d) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_imbalance: d is NULL");
    if (!(ratio >= 1.0 && ratio <= 1e12))
        return lsr__fail(LSR_ERROR_OPTION, "imbalance ratio %g: must be in [1, 1e12]", ratio);
    for (int64_t i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= d->classes)
            return lsr__fail(LSR_ERROR_LABEL,
                             "imbalance: label %lld of sample %lld is outside "
                             "[0, %d)",
                             (long long)d->y[i], (long long)i, d->classes);
    const int k = d->classes;
    const size_t slots = d->n > 0 ? (size_t)d->n : 1;
    int64_t *order = malloc(slots * sizeof *order);
    int64_t *count = calloc((size_t)k, sizeof *count), *kept = calloc((size_t)k, sizeof *kept);
    if (!order || !count || !kept) {
        free(order);
        free(count);
        free(kept);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < d->n; i++) {
        order[i] = i;
        count[d->y[i]]++;
    }
    lsr_rng r;
    lsr_rng_seed(&r, seed ^ 0x1ba1a9ceull);
    lsr_rng_shuffle(&r, order, d->n);
    /* class c keeps ratio^(-c/(k-1)) of its examples: class 0 all, the last 1/ratio */
    int64_t m = 0;
    for (int64_t i = 0; i < d->n; i++) {
        const int64_t c = d->y[order[i]];
        const double frac = k > 1 ? pow(ratio, -(double)c / (double)(k - 1)) : 1.0;
        if (kept[c] < (int64_t)ceil(frac * (double)count[c])) {
            kept[c]++;
            order[m++] = order[i];
        }
    }
    /* keep the original order of the survivors */
    char *keep = calloc(slots, 1);
    if (!keep) {
        free(order);
        free(count);
        free(kept);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < m; i++)
        keep[order[i]] = 1;
    int64_t j = 0;
    for (int64_t i = 0; i < d->n; i++)
        if (keep[i]) order[j++] = i;
    lsr_dataset sub;
    const lsr_status st = lsr_dataset_subset(&sub, d, order, m);
    free(order);
    free(count);
    free(kept);
    free(keep);
    if (st != LSR_OK) return st;
    lsr_dataset_free(d);
    *d = sub;
    return LSR_OK;
}
