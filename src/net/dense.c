/* Fully connected layer: out = in W^T + b, W (out_size, in_size) as in PyTorch. */

#include "net.h"

// out (B, O), in (B, I), weight (O, I), bias (O)
void lsr_dense_forward(float *out, const float *in, const float *weight, const float *bias,
                       int batch, int in_size, int out_size) {
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < out_size; o++)
            out[(size_t)b * out_size + o] = bias[o];
    lsr_gemm(0, 1, batch, out_size, in_size, 1.0f, in, in_size, weight, in_size, 1.0f, out,
             out_size);
}

// din (B, I) or NULL, dweight (O, I) and dbias (O) accumulated, dout (B, O)
void lsr_dense_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, int batch, int in_size,
                        int out_size) {
    if (dweight) {
        lsr_gemm(1, 0, out_size, in_size, batch, 1.0f, dout, out_size, in, in_size, 1.0f, dweight,
                 in_size);
        lsr_bias_grad(dbias, dout, batch, out_size);
    }
    if (din)
        lsr_gemm(0, 0, batch, in_size, out_size, 1.0f, dout, out_size, weight, in_size, 0.0f, din,
                 in_size);
}
