/* Portable row kernels: plain C, for CPUs without AVX2 and as a third path
 * that the tests hold against the reference. */
#include <float.h>
#include <math.h>

#include "loss_internal.h"

static void pass1(chunk_sums *out, const float *z, int64_t len, const float *a,
                  const float *b, float shift) {
    float max = -FLT_MAX;
    int nonfinite = 0;
    for (int64_t j = 0; j < len; j++) {
        if (!isfinite(z[j])) nonfinite = 1;
        if (z[j] > max) max = z[j];
    }
    double sum_exp = 0.0, sum_z = 0.0, dot_a = 0.0, dot_b = 0.0;
    for (int64_t j = 0; j < len; j++) {
        sum_exp += (double)expf(z[j] - max);
        const float zs = z[j] - shift;
        sum_z += zs;
        if (a) dot_a += (double)a[j] * zs;
        if (b) dot_b += (double)b[j] * zs;
    }
    chunk_sums r = {max, nonfinite, sum_exp, sum_z, dot_a, dot_b};
    *out = r;
}

static void pass2(float *g, const float *z, int64_t len, float max, float log_sum,
                  float scale_p, const float *a, float a_scale, float a_const) {
    for (int64_t j = 0; j < len; j++) {
        const float p = expf((z[j] - max) - log_sum);
        g[j] = p * scale_p - (a ? a[j] * a_scale : a_const);
    }
}

const row_kernels lsr__kernels_scalar = {pass1, pass2};
