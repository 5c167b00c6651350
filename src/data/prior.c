/* A smoothing prior from a file: K non-negative numbers separated by
 * white space, commas or semicolons, normalised to sum to 1. */
#include <math.h>
#include <stdio.h>

#include "dataset.h"

/* --smoothing-prior FILE: K non-negative numbers. */
int lsr_prior_read(const char *path, int k, float *prior, char *err) {
    FILE *f = fopen(path, "r");
    if (!f) return lsr_fail(err, "--smoothing-prior %s: cannot open", path);
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
        return lsr_fail(err, "--smoothing-prior %s: expected exactly %d numbers (one per class)", path, k);
    double sum = 0;
    for (int i = 0; i < k; i++) {
        if (!(prior[i] >= 0.0f) || !isfinite(prior[i]))
            return lsr_fail(err, "--smoothing-prior %s: value %d is %g, must be >= 0", path, i + 1, prior[i]);
        sum += prior[i];
    }
    if (!(sum > 0)) return lsr_fail(err, "--smoothing-prior %s: the values sum to 0", path);
    for (int i = 0; i < k; i++) prior[i] = (float)(prior[i] / sum); /* normalise */
    return 0;
}
