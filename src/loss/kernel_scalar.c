/* Portable row kernels: plain C, for CPUs without AVX2 and as a third path
 * that the tests hold against the reference. */
#include <float.h>
#include <math.h>

#include "loss_internal.h"

static void pass_max(chunk_sums *out, const float *z, int64_t len, const float *a,
                     const float *b, float shift) {
    chunk_sums r = {-FLT_MAX, 0, 0.0, 0.0, 0.0, 0.0};
    for (int64_t j = 0; j < len; j++) {
        const float zs = z[j] - shift;
        if (!isfinite(z[j])) r.nonfinite = 1;
        if (z[j] > r.max) r.max = z[j];
        r.sum_z += zs;
        if (a) r.dot_a += (double)a[j] * zs;
        if (b) r.dot_b += (double)b[j] * zs;
    }
    *out = r;
}

static double pass_exp(float *e, const float *z, int64_t len, float max, const float *next) {
    (void)next;
    double sum = 0.0;
    for (int64_t j = 0; j < len; j++) {
        const float p = expf(z[j] - max);
        if (e) e[j] = p;
        sum += p;
    }
    return sum;
}

static void pass_scale(float *g, const float *e, int64_t len, float scale_p, const float *a,
                       float a_scale, float a_const, int stream) {
    (void)stream;
    for (int64_t j = 0; j < len; j++) g[j] = e[j] * scale_p - (a ? a[j] * a_scale : a_const);
}

const row_kernels lsr__kernels_scalar = {pass_max, pass_exp, pass_scale};
