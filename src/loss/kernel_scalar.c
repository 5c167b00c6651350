/* Portable row kernels: plain C, for CPUs without AVX2 and as a third path
 * that the tests hold against the reference.  bf16 selects the dtype of z
 * (passes 1 and 2) or g (pass 3); each pass is instantiated for both. */
#include <float.h>
#include <math.h>

#include "loss_internal.h"

static inline lsr_dtype dtype(int bf16) { return bf16 ? LSR_DTYPE_BFLOAT16 : LSR_DTYPE_FLOAT32; }

static inline float pass_max_any(const void *z, int64_t len, int bf16) {
    float max = -FLT_MAX;
    for (int64_t j = 0; j < len; j++) {
        const float v = lsr__logit(z, j, dtype(bf16));
        if (v > max) max = v;
    }
    return max;
}

static inline void pass_exp_any(chunk_sums *out, float *e, const void *z, int64_t len, float max,
                                const float *a, const float *b, int bf16) {
    chunk_sums r = {max, !isfinite(max), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0f};
    for (int64_t j = 0; j < len; j++) {
        const float d = lsr__logit(z, j, dtype(bf16)) - max, p = expf(d);
        if (!isfinite(d)) r.nonfinite = 1; /* a logit is not finite, or too far from the max */
        if (e) e[j] = p;
        r.sum_exp += p;
        r.sum_z += d;
        if (a) r.dot_a += (double)a[j] * d;
        if (b) r.dot_b += (double)b[j] * d;
    }
    *out = r;
}

static inline void pass_scale_any(void *g, const float *e, int64_t len, float scale_p,
                                  const float *a, float a_scale, float a_const, int bf16) {
    for (int64_t j = 0; j < len; j++)
        lsr__grad_store(g, j, e[j] * scale_p - (a ? a[j] * a_scale : a_const), dtype(bf16));
}

static float pass_max_f32(const void *z, int64_t len) { return pass_max_any(z, len, 0); }
static float pass_max_bf16(const void *z, int64_t len) { return pass_max_any(z, len, 1); }
static void pass_exp_f32(chunk_sums *out, float *e, const void *z, int64_t len, float max,
                         const float *a, const float *b, const void *next) {
    (void)next;
    pass_exp_any(out, e, z, len, max, a, b, 0);
}
static void pass_exp_bf16(chunk_sums *out, float *e, const void *z, int64_t len, float max,
                          const float *a, const float *b, const void *next) {
    (void)next;
    pass_exp_any(out, e, z, len, max, a, b, 1);
}
static void pass_scale_f32(void *g, const float *e, int64_t len, float scale_p, const float *a,
                           float a_scale, float a_const, int stream) {
    (void)stream;
    pass_scale_any(g, e, len, scale_p, a, a_scale, a_const, 0);
}
static void pass_scale_bf16(void *g, const float *e, int64_t len, float scale_p, const float *a,
                            float a_scale, float a_const, int stream) {
    (void)stream;
    pass_scale_any(g, e, len, scale_p, a, a_scale, a_const, 1);
}

#define PASS_EXP_SCALE(name, z_bf16, g_bf16)                                                       \
    static void name(chunk_sums *out, float *e, const void *z, int64_t len, float max,             \
                     const void *next, void *g, const float *e_prev, float scale_p, float a_const, \
                     int stream) {                                                                 \
        (void)next;                                                                                \
        (void)stream;                                                                              \
        pass_exp_any(out, e, z, len, max, NULL, NULL, z_bf16);                                     \
        pass_scale_any(g, e_prev, len, scale_p, NULL, 0.0f, a_const, g_bf16);                      \
    }
PASS_EXP_SCALE(pass_exp_scale_f32_f32, 0, 0)
PASS_EXP_SCALE(pass_exp_scale_f32_bf16, 0, 1)
PASS_EXP_SCALE(pass_exp_scale_bf16_f32, 1, 0)
PASS_EXP_SCALE(pass_exp_scale_bf16_bf16, 1, 1)

static void stream_fence(void) {}

const row_kernels lsr__kernels_scalar = {{pass_max_f32, pass_max_bf16},
                                         {pass_exp_f32, pass_exp_bf16},
                                         {pass_scale_f32, pass_scale_bf16},
                                         {{pass_exp_scale_f32_f32, pass_exp_scale_f32_bf16},
                                          {pass_exp_scale_bf16_f32, pass_exp_scale_bf16_bf16}},
                                         stream_fence};
