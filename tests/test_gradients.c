/* The model's gradients: the fp32 forward and backward of every layer kind
 * and of the tutorial's architectures against the double-precision reference
 * forward (forward_double.h) and its central differences, and the whole
 * model with the smoothed loss on top. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward_double.h"
#include "net/net.h"
#include "train/train.h"

/* The objective sum_i r_i logits_i (so dL/dlogits = r), in double. */
static double objective(uint64_t *pieces, const lsr_model *m, const double *P, const double *x,
                        int batch, const float *r) {
    double *z = malloc((size_t)batch * m->classes * sizeof(double)), s = 0;
    forward_double(z, pieces, m, P, x, batch);
    for (int i = 0; i < batch * m->classes; i++)
        s += z[i] * r[i];
    free(z);
    return s;
}

/* A central difference of the objective along dir (n values of v, which is
 * the input or the parameters): 0 and *numeric set when both ends lie on the
 * centre's linear piece, -1 when the step crosses a kink. */
static int central_difference(double *numeric, const lsr_model *m, const double *P, const double *x,
                              int batch, const float *r, double *v, const double *dir, size_t n,
                              double h, uint64_t centre) {
    uint64_t up_pieces, down_pieces;
    for (size_t i = 0; i < n; i++)
        v[i] += h * dir[i];
    const double up = objective(&up_pieces, m, P, x, batch, r);
    for (size_t i = 0; i < n; i++)
        v[i] -= 2 * h * dir[i];
    const double down = objective(&down_pieces, m, P, x, batch, r);
    for (size_t i = 0; i < n; i++)
        v[i] += h * dir[i];
    *numeric = (up - down) / (2.0 * h);
    return up_pieces == centre && down_pieces == centre ? 0 : -1;
}

/* Checks the fp32 forward and the fp32 parameter and input gradients of a
 * model against the double-precision forward and its central differences,
 * along random directions and on single coordinates, skipping steps that
 * cross a kink.  Off the kinks the objective is a polynomial in the step
 * whose odd part the central difference keeps: with h = 1e-4 its error is
 * ~1e-8 relative, and double rounding adds ~1e-16 * |objective| / h: both
 * far below the fp32 gradient's own error, which the tolerances bound.
 * That error is the fp32 rounding of the backward's sums: a few units of
 * u = 6e-8 relative to the magnitudes summed (measured here: at most
 * 2e-8 of sum |dir_i g_i| along a direction, 2e-5 of the value where that
 * value is a small difference of large terms).  Allowed: 1e-4 relative plus
 * 1e-6 (about 16 u) of sum |dir_i g_i|; single coordinates 1e-4 relative
 * plus 1e-6. */
enum { GRAD_DIRECTIONS = 3, GRAD_MAX_DRAWS = 40 };

static void check_model_gradients(const char *spec, lsr_shape input, int classes, int batch) {
    lsr_model m;
    CHECK(lsr_model_init(&m, spec, input, classes) == 0, "%s: %s", spec, lsr_last_error());
    if (m.n_params == 0) return;
    lsr_rng rng;
    lsr_rng_seed(&rng, 42);
    lsr_model_init_params(&m, LSR_INIT_HE, &rng);
    lsr_model_reserve(&m, batch);
    const size_t in_size = lsr_shape_size(input) * (size_t)batch, n_out = (size_t)batch * classes;
    float *x = malloc(in_size * sizeof(float)), *r = malloc(n_out * sizeof(float));
    for (size_t i = 0; i < in_size; i++)
        x[i] = (float)lsr_rng_normal(&rng);
    for (size_t i = 0; i < n_out; i++)
        r[i] = (float)lsr_rng_normal(&rng);
    double *xd = malloc(in_size * sizeof(double)), *P = malloc(m.n_params * sizeof(double));
    for (size_t i = 0; i < in_size; i++)
        xd[i] = x[i];
    for (size_t i = 0; i < m.n_params; i++)
        P[i] = m.params[i];

    /* the fp32 forward against the double one */
    const float *z = lsr_model_forward(&m, x, batch, 0, NULL);
    double *zd = malloc(n_out * sizeof(double)), zmax = 0, zerr = 0;
    uint64_t centre;
    forward_double(zd, &centre, &m, P, xd, batch);
    for (size_t i = 0; i < n_out; i++) {
        zmax = fmax(zmax, fabs(zd[i]));
        zerr = fmax(zerr, fabs(z[i] - zd[i]));
    }
    CHECK(zerr <= 1e-4 * zmax, "%s: fp32 logits off the double forward by %g (largest %g)", spec,
          zerr, zmax);

    lsr_model_zero_grads(&m);
    lsr_model_backward(&m, r, batch, LSR_GRAD_PARAMS | LSR_GRAD_INPUT);
    const float *grads = m.grads, *dx = m.dacts[0];

    const double h = 1e-4;
    int bad = 0;
    /* directional derivatives over all parameters, then over the input:
     * GRAD_DIRECTIONS kink-free ones of each */
    for (int on_input = 0; on_input < 2; on_input++) {
        const size_t n = on_input ? in_size : m.n_params;
        double *v = on_input ? xd : P;
        const float *g = on_input ? dx : grads;
        double *dir = malloc(n * sizeof(double));
        int valid = 0, draws = 0;
        for (; valid < GRAD_DIRECTIONS && draws < GRAD_MAX_DRAWS; draws++) {
            double analytic = 0, norm = 0, scale = 0, numeric;
            for (size_t i = 0; i < n; i++) {
                dir[i] = lsr_rng_normal(&rng);
                norm += dir[i] * dir[i];
            }
            for (size_t i = 0; i < n; i++) { /* a unit direction */
                dir[i] /= sqrt(norm);
                analytic += dir[i] * g[i];
                scale += fabs(dir[i] * g[i]);
            }
            if (central_difference(&numeric, &m, P, xd, batch, r, v, dir, n, h, centre)) continue;
            valid++;
            if (fabs(numeric - analytic) > 1e-4 * fabs(analytic) + 1e-6 * scale) {
                bad++;
                CHECK(0, "%s: %s direction %d: analytic %.7f numeric %.7f", spec,
                      on_input ? "input" : "parameter", draws, analytic, numeric);
            }
        }
        CHECK(valid == GRAD_DIRECTIONS, "%s: %s: only %d of %d random directions cross no kink",
              spec, on_input ? "input" : "parameter", valid, draws);
        free(dir);
    }
    /* single parameters of every layer: the first kink-free weight and bias */
    for (int li = 0; li < m.n_layers; li++) {
        const lsr_layer *l = &m.layers[li];
        if (!l->weight_count) continue;
        for (int k = 0; k < 2; k++) {
            const size_t first = k ? l->bias_offset : l->weight_offset;
            const size_t count = k ? l->bias_count : l->weight_count;
            /* of the first coordinates, the kink-free one with the largest
             * gradient (a zero one would pass vacuously) */
            const double one = 1.0;
            size_t p = first + count;
            double numeric = 0;
            for (size_t q = first; q < first + count && q < first + GRAD_MAX_DRAWS; q++) {
                double d;
                if (central_difference(&d, &m, P, xd, batch, r, P + q, &one, 1, h, centre) == 0 &&
                    (p == first + count || fabs(grads[q]) > fabs(grads[p]))) {
                    p = q;
                    numeric = d;
                }
            }
            const int found = p < first + count;
            CHECK(found, "%s: layer %d %s: every coordinate tried crosses a kink", spec, li,
                  k ? "bias" : "weight");
            if (!found) continue;
            if (fabs(numeric - grads[p]) > 1e-4 * fabs(numeric) + 1e-6) {
                bad++;
                CHECK(0, "%s: layer %d %s %zu: analytic %.7f numeric %.7f", spec, li,
                      k ? "bias" : "weight", p - first, (double)grads[p], numeric);
            }
        }
    }
    CHECK(bad == 0, "%s: %d gradient mismatches", spec, bad);
    free(x);
    free(r);
    free(xd);
    free(P);
    free(zd);
    lsr_model_clear(&m);
}

/* The kink hash sees a step of 1 cross kinks and a step of 1e-4 (the checks' h) cross none. */
static void test_kink_detection(void) {
    /* a step of 1 along a random input direction moves many ReLUs and
     * argmaxes of a small network across their kinks, and a step of 1e-4
     * none of them */
    lsr_model m;
    CHECK(lsr_model_init(&m, "conv:4:3:1:valid,relu,maxpool:2:2,flatten,dense:3",
                         (lsr_shape){9, 9, 2}, 3) == 0,
          "%s", lsr_last_error());
    lsr_rng rng;
    lsr_rng_seed(&rng, 5);
    lsr_model_init_params(&m, LSR_INIT_HE, &rng);
    const size_t n = 9 * 9 * 2 * 2;
    double *x = malloc(n * sizeof(double)), *dir = malloc(n * sizeof(double)), numeric;
    double *P = malloc(m.n_params * sizeof(double)), z[6];
    float r[6];
    for (size_t i = 0; i < m.n_params; i++)
        P[i] = m.params[i];
    for (size_t i = 0; i < n; i++)
        x[i] = lsr_rng_normal(&rng), dir[i] = lsr_rng_normal(&rng) / sqrt((double)n);
    for (int i = 0; i < 6; i++)
        r[i] = (float)lsr_rng_normal(&rng);
    uint64_t centre;
    forward_double(z, &centre, &m, P, x, 2);
    CHECK(central_difference(&numeric, &m, P, x, 2, r, x, dir, n, 1.0, centre) == -1,
          "a step of 1 crossed no kink");
    CHECK(central_difference(&numeric, &m, P, x, 2, r, x, dir, n, 1e-4, centre) == 0,
          "a step of 1e-4 crossed a kink");
    free(x);
    free(dir);
    free(P);
    lsr_model_clear(&m);
}

static const lsr_shape img = {9, 9, 2}, mnist_like = {12, 12, 1};

/* One dense layer: gradients within 1e-4 rel + ~16 u of the double difference (fp32 sums). */
static void test_dense_gradients(void) { check_model_gradients("flatten,dense:5", img, 5, 3); }

/* A same-padded convolution: the same fp32-rounding tolerances (check_model_gradients). */
static void test_conv_same_gradients(void) {
    check_model_gradients("conv:4:3:1:same,flatten,dense:3", img, 3, 2);
}

/* A strided same-padded convolution: the same fp32-rounding tolerances. */
static void test_strided_conv_gradients(void) {
    check_model_gradients("conv:4:3:2:same,flatten,dense:3", img, 3, 2);
}

/* Two valid convolutions with a ReLU between: the same tolerances, kinks skipped. */
static void test_stacked_conv_relu_gradients(void) {
    check_model_gradients("conv:3:4:2:valid,relu,conv:5:3:1:valid,flatten,dense:4", img, 4, 2);
}

/* Max-pooling after a ReLU'd convolution: the same tolerances, argmax changes skipped. */
static void test_maxpool_gradients(void) {
    check_model_gradients("conv:4:3:1:valid,relu,maxpool:2:2,flatten,dense:3", img, 3, 2);
}

/* Dropout in eval mode (the identity) between dense layers: the same tolerances. */
static void test_dropout_gradients(void) {
    check_model_gradients("flatten,dense:16,relu,dropout:0.3,dense:4", img, 4, 3);
}

/* The tutorial's architecture, scaled down: the same fp32-rounding tolerances. */
static void test_tutorial_cnn_gradients(void) {
    check_model_gradients("conv:6:4:2:same,relu,conv:8:3:2:valid,relu,conv:8:2:1:valid,relu,"
                          "flatten,dense:10",
                          mnist_like, 10, 2);
}

/* LeNet-5 on 28x28 inputs: the same fp32-rounding tolerances on a full-size model. */
static void test_lenet5_gradients(void) {
    check_model_gradients("lenet5", (lsr_shape){28, 28, 1}, 10, 1);
}

/* Model + smoothed loss vs the float loss's differences at h = 1e-2: 5e-3 + 2% (their noise). */
static void test_model_with_loss(void) {
    /* Same shapes as the loss sees them: the whole model with the smoothed
     * loss on top, parameters checked against central differences of the
     * loss (the reference loss, in float: rounding / h and h^2 curvature
     * are what the tolerance absorbs), steps across a ReLU's kink skipped. */
    lsr_model m;
    lsr_shape in = {8, 8, 1};
    CHECK(lsr_model_init(&m, "conv:4:3:2:same,relu,flatten,dense:5", in, 5) == 0, "%s",
          lsr_last_error());
    lsr_rng rng;
    lsr_rng_seed(&rng, 7);
    lsr_model_init_params(&m, LSR_INIT_CLEVERHANS, &rng);
    lsr_model_reserve(&m, 4);
    float x[4 * 64], dlogits[20], loss;
    int64_t y[4] = {0, 3, 4, 1};
    for (int i = 0; i < 256; i++)
        x[i] = (float)lsr_rng_uniform(&rng);
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = 0.1f;
    const float *z = lsr_model_forward(&m, x, 4, 0, NULL);
    lsr_cross_entropy(&loss, dlogits, NULL, z, y, 4, 5, 5, &o);
    lsr_model_zero_grads(&m);
    lsr_model_backward(&m, dlogits, 4, LSR_GRAD_PARAMS);
    const uint64_t centre = active_pieces(&m, x, 4);
    int bad = 0, valid = 0, tried = 0;
    for (size_t p = 0; p < m.n_params; p += 7) {
        const float saved = m.params[p], h = 1e-2f;
        float up, down;
        m.params[p] = saved + h;
        lsr_cross_entropy_reference(&up, NULL, NULL, lsr_model_forward(&m, x, 4, 0, NULL), y, 4, 5,
                                    5, &o);
        int same = active_pieces(&m, x, 4) == centre;
        m.params[p] = saved - h;
        lsr_cross_entropy_reference(&down, NULL, NULL, lsr_model_forward(&m, x, 4, 0, NULL), y, 4,
                                    5, 5, &o);
        same = same && active_pieces(&m, x, 4) == centre;
        m.params[p] = saved;
        tried++;
        if (!same) continue; /* the step crosses a ReLU's kink */
        valid++;
        const double numeric = ((double)up - down) / (2.0 * h);
        if (fabs(numeric - m.grads[p]) > 5e-3 + 2e-2 * fabs(numeric)) {
            bad++;
            CHECK(0, "model+loss parameter %zu: analytic %.6f numeric %.6f", p, (double)m.grads[p],
                  numeric);
        }
    }
    CHECK(bad == 0, "model with loss: %d mismatches", bad);
    CHECK(valid >= tried * 3 / 4, "model with loss: only %d of %d steps cross no kink", valid,
          tried);
    lsr_model_clear(&m);
}

int main(void) {
    test_kink_detection();
    test_dense_gradients();
    test_conv_same_gradients();
    test_strided_conv_gradients();
    test_stacked_conv_relu_gradients();
    test_maxpool_gradients();
    test_dropout_gradients();
    test_tutorial_cnn_gradients();
    test_lenet5_gradients();
    test_model_with_loss();
    return check_summary();
}
