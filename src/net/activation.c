/* Element-wise layers: ReLU and (inverted) dropout.  Each may run in place
 * (out == in, din == dout), as the model runs them. */
#include "net.h"

/* The loops are written branch-free, element i reading only index i, and
 * marked simd: in place (out == in) has no dependence between iterations,
 * and the vector code must not fall back to scalar on the alias check. */
void lsr_relu_forward(float *out, const float *in, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        const float v = in[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

// the mask is taken from the forward output: out > 0
void lsr_relu_backward(float *din, const float *dout, const float *out, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i];
        din[i] = out[i] > 0.0f ? g : 0.0f;
    }
}

/* Training: keep each value with probability 1 - rate and scale it by
 * 1 / (1 - rate); evaluation: identity. */
void lsr_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float rate,
                         int training, lsr_rng *rng) {
    if (!training || rate <= 0.0f) {
        for (size_t i = 0; i < n; i++) {
            out[i] = in[i];
            mask[i] = 1;
        }
        return;
    }
    const float scale = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < n; i++) {
        mask[i] = lsr_rng_uniform(rng) >= rate;
        out[i] = mask[i] ? in[i] * scale : 0.0f;
    }
}

void lsr_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n,
                          float rate) {
    const float scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;
    for (size_t i = 0; i < n; i++)
        din[i] = mask[i] ? dout[i] * scale : 0.0f;
}
