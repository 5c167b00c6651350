/* A smoothing prior from a file: K non-negative numbers separated by
 * white space, commas or semicolons, normalised to sum to 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dataset.h"

lsr_status lsr_prior_from_labels(float *prior, const int64_t *labels, int64_t n, int k) {
    if (!prior || (n > 0 && !labels))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_prior_from_labels: prior or labels is NULL");
    if (k < 1 || n < 1)
        return lsr__fail(LSR_ERROR_SIZE, "prior: %lld labels of %d classes: need >= 1 of each",
                         (long long)n, k);
    /* counted in integers: summing 1/n in float drifts past the loss's 1e-4
     * tolerance on the sum from about 30,000 examples */
    int64_t *count = calloc((size_t)k, sizeof *count);
    if (!count) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "prior: out of memory for %d classes", k);
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) {
            free(count);
            return lsr__fail(LSR_ERROR_LABEL, "prior: label %lld of sample %lld is outside [0, %d)",
                             (long long)labels[i], (long long)i, k);
        }
        count[labels[i]]++;
    }
    for (int c = 0; c < k; c++)
        prior[c] = (float)((double)count[c] / (double)(n ? n : 1));
    free(count);
    return LSR_OK;
}

lsr_status lsr_prior_read(float *prior, const char *path, int k) {
    if (!prior || !path)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_prior_read: prior or path is NULL");
    if (k < 1) return lsr__fail(LSR_ERROR_SIZE, "%s: k = %d classes, must be >= 1", path, k);
    FILE *f = fopen(path, "r");
    if (!f) return lsr__fail(LSR_ERROR_IO, "%s: cannot open", path);
    int n = 0;
    double v;
    char sep[2];
    while (n < k + 1) {
        int r = fscanf(f, "%lf", &v);
        if (r != 1) break;
        if (n < k) prior[n] = (float)v;
        n++;
        if (fscanf(f, "%1[,;]", sep) < 0) break;
    }
    int trailing = !feof(f) && fscanf(f, " %1s", sep) == 1;
    fclose(f);
    if (n != k || trailing)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: expected exactly %d numbers (one per class)", path,
                         k);
    double sum = 0;
    for (int i = 0; i < k; i++) {
        if (!(prior[i] >= 0.0f) || !isfinite(prior[i]))
            return lsr__fail(LSR_ERROR_FORMAT, "%s: value %d is %g, must be >= 0", path, i + 1,
                             prior[i]);
        sum += prior[i];
    }
    if (!(sum > 0)) return lsr__fail(LSR_ERROR_FORMAT, "%s: the values sum to 0", path);
    for (int i = 0; i < k; i++)
        prior[i] = (float)(prior[i] / sum); /* normalise */
    return 0;
}
