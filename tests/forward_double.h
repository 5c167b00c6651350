/* The double-precision reference forward of a model, and the hash of the
 * linear piece it runs on (the kink hash), for the finite-difference checks. */
#ifndef LSR_TEST_FORWARD_DOUBLE_H
#define LSR_TEST_FORWARD_DOUBLE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

/* The specification of the forward: every layer in double, by its
 * definition (no im2col, no GEMM), in eval mode.  Also hashes (FNV-1a) which
 * linear piece it ran on: every ReLU's sign and every max-pool's argmax.  The
 * network is piecewise linear in its input and multilinear in its
 * parameters; a central difference whose two ends lie on different pieces
 * measures a kink, not the derivative, so such a step is discarded. */
static void forward_double(double *logits, uint64_t *pieces, const lsr_model *m, const double *P,
                           const double *x, int batch) {
    uint64_t hash = 1469598103934665603ull;
    size_t size = lsr_shape_size(m->input) * (size_t)batch;
    double *cur = malloc(size * sizeof(double));
    memcpy(cur, x, size * sizeof(double));
    for (int li = 0; li < m->n_layers; li++) {
        const lsr_layer *l = &m->layers[li];
        const double *w = P + l->weight_offset, *bias = P + l->bias_offset;
        const int H = l->in.h, W = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
        const int K = l->kernel, S = l->stride, F = l->units;
        const size_t in_size = lsr_shape_size(l->in), out_size = lsr_shape_size(l->out);
        double *next = malloc(out_size * batch * sizeof(double));
        for (int b = 0; b < batch; b++) {
            const double *in = cur + (size_t)b * in_size;
            double *out = next + (size_t)b * out_size;
            switch (l->kind) {
            case LSR_LAYER_DENSE:
                for (int o = 0; o < F; o++) {
                    double s = bias[o];
                    for (size_t i = 0; i < in_size; i++)
                        s += w[(size_t)o * in_size + i] * in[i];
                    out[o] = s;
                }
                break;
            case LSR_LAYER_CONV2D:
                for (int oy = 0; oy < OH; oy++)
                    for (int ox = 0; ox < OW; ox++)
                        for (int f = 0; f < F; f++) {
                            double s = bias[f];
                            for (int ky = 0; ky < K; ky++)
                                for (int kx = 0; kx < K; kx++) {
                                    const int iy = oy * S - l->pad_top + ky,
                                              ix = ox * S - l->pad_left + kx;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                    for (int c = 0; c < C; c++)
                                        s += w[(((size_t)f * K + ky) * K + kx) * C + c] *
                                             in[((size_t)iy * W + ix) * C + c];
                                }
                            out[((size_t)oy * OW + ox) * F + f] = s;
                        }
                break;
            case LSR_LAYER_MAXPOOL:
                for (int oy = 0; oy < OH; oy++)
                    for (int ox = 0; ox < OW; ox++)
                        for (int c = 0; c < C; c++) {
                            double best = -INFINITY;
                            size_t at = 0;
                            for (int ky = 0; ky < K; ky++)
                                for (int kx = 0; kx < K; kx++) {
                                    const size_t i =
                                        ((size_t)(oy * S + ky) * W + (ox * S + kx)) * C + c;
                                    if (in[i] > best) best = in[i], at = i;
                                }
                            out[((size_t)oy * OW + ox) * C + c] = best;
                            hash = (hash ^ at) * 1099511628211ull;
                        }
                break;
            case LSR_LAYER_RELU:
                for (size_t i = 0; i < out_size; i++) {
                    out[i] = in[i] > 0 ? in[i] : 0;
                    hash = (hash ^ (in[i] > 0)) * 1099511628211ull;
                }
                break;
            case LSR_LAYER_DROPOUT: /* eval mode: the identity */
            case LSR_LAYER_FLATTEN:
                memcpy(out, in, out_size * sizeof(double));
                break;
            }
        }
        free(cur);
        cur = next;
        size = out_size * batch;
    }
    memcpy(logits, cur, size * sizeof(double));
    free(cur);
    *pieces = hash;
}

/* The linear piece the fp32 model's parameters put input x on (by the
 * double forward). */
static uint64_t active_pieces(const lsr_model *m, const float *x, int batch) {
    const size_t in_size = lsr_shape_size(m->input) * (size_t)batch;
    double *xd = malloc(in_size * sizeof(double)), *P = malloc(m->n_params * sizeof(double));
    double *z = malloc((size_t)batch * m->classes * sizeof(double));
    for (size_t i = 0; i < in_size; i++)
        xd[i] = x[i];
    for (size_t i = 0; i < m->n_params; i++)
        P[i] = m->params[i];
    uint64_t pieces;
    forward_double(z, &pieces, m, P, xd, batch);
    free(xd);
    free(P);
    free(z);
    return pieces;
}

#endif
