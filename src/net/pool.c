/* Max pooling, VALID, channels last; the forward remembers where each
 * maximum came from and the backward sends the gradient there. */
#include <float.h>
#include <string.h>

#include "net.h"

// out (B, OH, OW, C), index (B, OH, OW, C) flat input offsets, in (B, H, W, C)
void lsr_maxpool_forward(float *out, int32_t *index, const float *in, const lsr_layer *l,
                         int batch) {
    const int H = l->in.h, W = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
    const int K = l->kernel, S = l->stride;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    float best = -FLT_MAX;
                    int32_t at = 0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            const int32_t i = ((oy * S + ky) * W + (ox * S + kx)) * C + c;
                            const float v = in[(size_t)b * H * W * C + i];
                            if (v > best) {
                                best = v;
                                at = i;
                            }
                        }
                    const size_t o = (((size_t)b * OH + oy) * OW + ox) * C + c;
                    out[o] = best;
                    index[o] = at;
                }
}

// din (B, H, W, C) from dout (B, OH, OW, C)
void lsr_maxpool_backward(float *din, const float *dout, const int32_t *index, const lsr_layer *l,
                          int batch) {
    const size_t in_size = lsr_shape_size(l->in), out_size = lsr_shape_size(l->out);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        float *d = din + (size_t)b * in_size;
        memset(d, 0, in_size * sizeof(float));
        for (size_t o = 0; o < out_size; o++)
            d[index[(size_t)b * out_size + o]] += dout[(size_t)b * out_size + o];
    }
}
