/* Portable row kernels: plain C, for CPUs without AVX2 and as a third path
 * that the tests hold against the reference. */
#include <float.h>
#include <math.h>

#include "loss_internal.h"

static float pass_max(const float *z, int64_t len) {
    float max = -FLT_MAX;
    for (int64_t j = 0; j < len; j++)
        if (z[j] > max) max = z[j];
    return max;
}

static void pass_exp(chunk_sums *out, float *e, const float *z, int64_t len, float max,
                     const float *a, const float *b, const float *next) {
    (void)next;
    chunk_sums r = {max, !isfinite(max), 0.0, 0.0, 0.0, 0.0};
    for (int64_t j = 0; j < len; j++) {
        const float d = z[j] - max, p = expf(d);
        if (!isfinite(d)) r.nonfinite = 1; /* a logit is not finite, or too far from the max */
        if (e) e[j] = p;
        r.sum_exp += p;
        r.sum_z += d;
        if (a) r.dot_a += (double)a[j] * d;
        if (b) r.dot_b += (double)b[j] * d;
    }
    *out = r;
}

static void pass_scale(float *g, const float *e, int64_t len, float scale_p, const float *a,
                       float a_scale, float a_const, int stream) {
    (void)stream;
    for (int64_t j = 0; j < len; j++)
        g[j] = e[j] * scale_p - (a ? a[j] * a_scale : a_const);
}

static void stream_fence(void) {}

const row_kernels lsr__kernels_scalar = {pass_max, pass_exp, pass_scale, stream_fence};
