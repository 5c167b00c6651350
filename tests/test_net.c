#define _DEFAULT_SOURCE
/* The trainer's parts: layer and model gradients against finite differences,
 * the IDX and CSV readers on tiny generated files, model files, optimizers
 * and metrics. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#include "data/dataset.h"
#include "metrics/metrics.h"
#include "modelfile/modelfile.h"
#include "net/net.h"
#include "optim/optim.h"
#include "train/train.h"

static char tmpdir[] = "/tmp/lsr-test-XXXXXX";
static char err[LSR_ERR_LEN];

/* ---- matrix products ---- */

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* lsr_gemm against its double-precision reference on ragged shapes (tile
 * edges inside and at the border, every transpose, beta 0 and 1, padded
 * leading dimensions), and bit-identical for 1, 2 and 3 threads. */
static void test_gemm(void) {
    static const int shapes[][3] = {{1, 1, 1},     {3, 5, 7},      {129, 257, 33}, {300, 70, 513},
                                    {128, 256, 64}, {17, 600, 200}, {520, 9, 1000}, {64, 2304, 300}, {5, 7, 0},
                                    {64, 64, 5000}};
    lsr_rng rng;
    lsr_rng_seed(&rng, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int variant = 0; variant < 8; variant++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            const int ta = variant & 1, tb = (variant >> 1) & 1;
            const float beta = (variant >> 2) & 1 ? 1.0f : 0.0f, alpha = 0.75f;
            const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
            const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb,
                         nc = (size_t)M * ldc;
            float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
            float *c0 = malloc(nc * sizeof(float)), *want = malloc(nc * sizeof(float));
            float *got[3];
            for (size_t i = 0; i < na; i++) a[i] = (float)lsr_rng_normal(&rng);
            for (size_t i = 0; i < nb; i++) b[i] = (float)lsr_rng_normal(&rng);
            for (size_t i = 0; i < nc; i++) c0[i] = (float)lsr_rng_normal(&rng);
            memcpy(want, c0, nc * sizeof(float));
            lsr_gemm_reference(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, want, ldc);
            for (int t = 0; t < 3; t++) {
                got[t] = malloc(nc * sizeof(float));
                memcpy(got[t], c0, nc * sizeof(float));
                set_threads(t + 1);
                lsr_gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, got[t], ldc);
            }
            set_threads(2);
            int bad = 0, differ = 0, padding = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < ldc; j++) {
                    const size_t at = (size_t)i * ldc + j;
                    if (j >= N) { /* the padding is left alone */
                        for (int th = 0; th < 3; th++)
                            padding += memcmp(&got[th][at], &c0[at], sizeof(float)) != 0;
                        continue;
                    }
                    /* the fp32 sum's worst case (Higham's gamma): K + 2
                     * roundings of u = 2^-24, each at most the magnitude of
                     * the terms, sum |alpha a b| + |beta c| */
                    double mag = fabs((double)beta * c0[at]);
                    for (int k = 0; k < K; k++)
                        mag += fabs(alpha * (double)(ta ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k]) *
                                    (tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j]));
                    bad += fabs((double)got[0][at] - want[at]) > (K + 2) * 0x1p-24 * mag;
                    differ += memcmp(&got[0][at], &got[1][at], sizeof(float)) != 0 ||
                              memcmp(&got[0][at], &got[2][at], sizeof(float)) != 0;
                }
            CHECK(bad == 0, "gemm %dx%dx%d ta %d tb %d beta %g: %d entries off the reference", M, N,
                  K, ta, tb, (double)beta, bad);
            CHECK(differ == 0, "gemm %dx%dx%d ta %d tb %d: %d entries differ between 1, 2, 3 threads",
                  M, N, K, ta, tb, differ);
            CHECK(padding == 0, "gemm %dx%dx%d: wrote %d values outside C", M, N, K, padding);
            free(a);
            free(b);
            free(c0);
            free(want);
            for (int t = 0; t < 3; t++) free(got[t]);
        }
}

/* ---- gradients ---- */

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
                    for (size_t i = 0; i < in_size; i++) s += w[(size_t)o * in_size + i] * in[i];
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
                                    const int iy = oy * S - l->pad_top + ky, ix = ox * S - l->pad_left + kx;
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
                                    const size_t i = ((size_t)(oy * S + ky) * W + (ox * S + kx)) * C + c;
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

/* The objective sum_i r_i logits_i (so dL/dlogits = r), in double. */
static double objective(uint64_t *pieces, const lsr_model *m, const double *P, const double *x,
                        int batch, const float *r) {
    double *z = malloc((size_t)batch * m->classes * sizeof(double)), s = 0;
    forward_double(z, pieces, m, P, x, batch);
    for (int i = 0; i < batch * m->classes; i++) s += z[i] * r[i];
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
    for (size_t i = 0; i < n; i++) v[i] += h * dir[i];
    const double up = objective(&up_pieces, m, P, x, batch, r);
    for (size_t i = 0; i < n; i++) v[i] -= 2 * h * dir[i];
    const double down = objective(&down_pieces, m, P, x, batch, r);
    for (size_t i = 0; i < n; i++) v[i] += h * dir[i];
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
    CHECK(lsr_model_init(&m, spec, input, classes, err) == 0, "%s: %s", spec, err);
    if (m.n_params == 0) return;
    lsr_rng rng;
    lsr_rng_seed(&rng, 42);
    lsr_model_init_params(&m, LSR_INIT_HE, &rng);
    lsr_model_reserve(&m, batch, err);
    const size_t in_size = lsr_shape_size(input) * (size_t)batch, n_out = (size_t)batch * classes;
    float *x = malloc(in_size * sizeof(float)), *r = malloc(n_out * sizeof(float));
    for (size_t i = 0; i < in_size; i++) x[i] = (float)lsr_rng_normal(&rng);
    for (size_t i = 0; i < n_out; i++) r[i] = (float)lsr_rng_normal(&rng);
    double *xd = malloc(in_size * sizeof(double)), *P = malloc(m.n_params * sizeof(double));
    for (size_t i = 0; i < in_size; i++) xd[i] = x[i];
    for (size_t i = 0; i < m.n_params; i++) P[i] = m.params[i];

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
    lsr_model_free(&m);
}

/* The kink detection itself: a step of 1 along a random input direction
 * moves many ReLUs and argmaxes of a small network across their kinks, and
 * a step of 1e-4 none of them. */
static void test_kink_detection(void) {
    lsr_model m;
    CHECK(lsr_model_init(&m, "conv:4:3:1:valid,relu,maxpool:2:2,flatten,dense:3", (lsr_shape){9, 9, 2},
                         3, err) == 0, "%s", err);
    lsr_rng rng;
    lsr_rng_seed(&rng, 5);
    lsr_model_init_params(&m, LSR_INIT_HE, &rng);
    const size_t n = 9 * 9 * 2 * 2;
    double *x = malloc(n * sizeof(double)), *dir = malloc(n * sizeof(double)), numeric;
    double *P = malloc(m.n_params * sizeof(double)), z[6];
    float r[6];
    for (size_t i = 0; i < m.n_params; i++) P[i] = m.params[i];
    for (size_t i = 0; i < n; i++) x[i] = lsr_rng_normal(&rng), dir[i] = lsr_rng_normal(&rng) / sqrt((double)n);
    for (int i = 0; i < 6; i++) r[i] = (float)lsr_rng_normal(&rng);
    uint64_t centre;
    forward_double(z, &centre, &m, P, x, 2);
    CHECK(central_difference(&numeric, &m, P, x, 2, r, x, dir, n, 1.0, centre) == -1,
          "a step of 1 crossed no kink");
    CHECK(central_difference(&numeric, &m, P, x, 2, r, x, dir, n, 1e-4, centre) == 0,
          "a step of 1e-4 crossed a kink");
    free(x);
    free(dir);
    free(P);
    lsr_model_free(&m);
}

static void test_gradients(void) {
    test_kink_detection();
    const lsr_shape img = {9, 9, 2}, mnist_like = {12, 12, 1};
    check_model_gradients("flatten,dense:5", img, 5, 3);
    check_model_gradients("conv:4:3:1:same,flatten,dense:3", img, 3, 2);
    check_model_gradients("conv:4:3:2:same,flatten,dense:3", img, 3, 2);
    check_model_gradients("conv:3:4:2:valid,relu,conv:5:3:1:valid,flatten,dense:4", img, 4, 2);
    check_model_gradients("conv:4:3:1:valid,relu,maxpool:2:2,flatten,dense:3", img, 3, 2);
    check_model_gradients("flatten,dense:16,relu,dropout:0.3,dense:4", img, 4, 3);
    /* the tutorial's architecture, scaled down */
    check_model_gradients("conv:6:4:2:same,relu,conv:8:3:2:valid,relu,conv:8:2:1:valid,relu,"
                          "flatten,dense:10", mnist_like, 10, 2);
    check_model_gradients("lenet5", (lsr_shape){28, 28, 1}, 10, 1);
}

/* ---- bf16 convolutions ---- */

static void test_bf16_rounding(void) {
    CHECK(lsr_bf16_from_float(1.0f) == 0x3f80, "1.0");
    CHECK(lsr_bf16_from_float(-2.0f) == 0xc000, "-2.0");
    CHECK(lsr_bf16_from_float(1.0f + 0x1p-8f) == 0x3f80, "a tie rounds to even (down)");
    CHECK(lsr_bf16_from_float(1.0f + 3 * 0x1p-8f) == 0x3f82, "a tie rounds to even (up)");
    CHECK(lsr_bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above the tie rounds up");
    CHECK(lsr_bf16_from_float(INFINITY) == 0x7f80 && lsr_bf16_from_float(-INFINITY) == 0xff80, "inf");
    CHECK(lsr_bf16_from_float(3.4028235e38f) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(isnan(lsr_bf16_to_float(lsr_bf16_from_float(NAN))), "NaN stays NaN");
    CHECK(lsr_bf16_to_float(lsr_bf16_from_float(0.15625f)) == 0.15625f, "exact values are kept");
}

static void fill_normal(float *v, size_t n, lsr_rng *rng, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * (float)lsr_rng_normal(rng);
}

static void round_copy(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lsr_bf16_to_float(lsr_bf16_from_float(src[i]));
}

static int max_rel_error(const float *got, const float *want, size_t n, double tol, size_t *where) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1.0 + fabs((double)want[i])))) {
            *where = i;
            return 1;
        }
    return 0;
}

/* The oneDNN bf16 convolution against the fp32 im2col reference run on the
 * same values rounded to bf16: the two then differ only in the order of
 * their fp32 sums.  Several batch sizes in turn (the kernels are rebuilt). */
static void check_conv_bf16(const char *spec, lsr_shape input) {
    lsr_model m;
    CHECK(lsr_model_init(&m, spec, input, 2, err) == 0, "%s: %s", spec, err);
    const lsr_layer *l = &m.layers[0];
    lsr_conv_fast *c;
    if (lsr_conv_fast_create(&c, LSR_PRECISION_BF16, err)) {
        printf("skipped the bf16 convolution checks: %s\n", err);
        lsr_model_free(&m);
        return;
    }
    lsr_rng rng;
    lsr_rng_seed(&rng, 7);
    const int batches[] = {2, 3, 2};
    const size_t patch = (size_t)l->kernel * l->kernel * l->in.c;
    for (int t = 0; t < 3; t++) {
        const int batch = batches[t];
        const size_t nin = (size_t)batch * lsr_shape_size(l->in), nout = (size_t)batch * lsr_shape_size(l->out);
        const size_t nw = l->weight_count, F = (size_t)l->units, rows = nout / F;
        float *x = malloc(nin * sizeof(float)), *xr = malloc(nin * sizeof(float));
        float *w = malloc(nw * sizeof(float)), *wr = malloc(nw * sizeof(float)), *b = malloc(F * sizeof(float));
        float *dout = malloc(nout * sizeof(float)), *doutr = malloc(nout * sizeof(float));
        float *out = malloc(nout * sizeof(float)), *out_ref = malloc(nout * sizeof(float));
        float *din = malloc(nin * sizeof(float)), *din_ref = malloc(nin * sizeof(float));
        float *dw = malloc(nw * sizeof(float)), *dw_ref = calloc(nw, sizeof(float));
        float *db = malloc(F * sizeof(float)), *db_ref = calloc(F, sizeof(float)), *db_unused = calloc(F, sizeof(float));
        float *col = malloc(rows * patch * sizeof(float)), *dcol = malloc(rows * patch * sizeof(float));
        fill_normal(x, nin, &rng, 1.0f);
        fill_normal(w, nw, &rng, 0.3f);
        fill_normal(b, F, &rng, 1.0f);
        fill_normal(dout, nout, &rng, 1.0f);
        round_copy(xr, x, nin);
        round_copy(wr, w, nw);
        round_copy(doutr, dout, nout);
        for (size_t i = 0; i < nw; i++) dw[i] = 1.0f; /* the gradients are added to */
        for (size_t i = 0; i < F; i++) db[i] = 1.0f;

        int ok = lsr_conv_fast_forward(c, out, x, w, b, l, batch) == 0;
        ok = ok && lsr_conv_fast_backward(c, din, dw, db, dout, w, l, batch) == 0;
        CHECK(ok, "%s batch %d: the bf16 convolution failed", spec, batch);
        lsr_conv2d_forward(out_ref, xr, wr, b, col, l, batch);
        lsr_conv2d_backward(din_ref, dw_ref, db_unused, doutr, col, wr, dcol, l, batch);
        lsr_bias_grad(db_ref, dout, (int)rows, (int)F); /* the bias gradient stays fp32 */
        for (size_t i = 0; i < nw; i++) dw[i] -= 1.0f;
        for (size_t i = 0; i < F; i++) db[i] -= 1.0f;
        size_t at = 0;
        CHECK(!max_rel_error(out, out_ref, nout, 1e-4, &at), "%s batch %d: output %zu: %g, reference %g",
              spec, batch, at, (double)out[at], (double)out_ref[at]);
        CHECK(!max_rel_error(din, din_ref, nin, 1e-4, &at), "%s batch %d: input gradient %zu: %g, reference %g",
              spec, batch, at, (double)din[at], (double)din_ref[at]);
        CHECK(!max_rel_error(dw, dw_ref, nw, 1e-4, &at), "%s batch %d: weight gradient %zu: %g, reference %g",
              spec, batch, at, (double)dw[at], (double)dw_ref[at]);
        CHECK(!max_rel_error(db, db_ref, F, 1e-4, &at), "%s batch %d: bias gradient %zu: %g, reference %g",
              spec, batch, at, (double)db[at], (double)db_ref[at]);
        /* and the rounding matters: against unrounded data the error is bf16-sized */
        lsr_conv2d_forward(out_ref, x, w, b, col, l, batch);
        double diff = 0, norm = 0;
        for (size_t i = 0; i < nout; i++) {
            diff += ((double)out[i] - out_ref[i]) * ((double)out[i] - out_ref[i]);
            norm += (double)out_ref[i] * out_ref[i];
        }
        CHECK(sqrt(diff / norm) < 1e-2 && sqrt(diff / norm) > 1e-5,
              "%s batch %d: relative error %g against fp32 data is not bf16-sized", spec, batch,
              sqrt(diff / norm));
        float *bufs[] = {x, xr, w, wr, b, dout, doutr, out, out_ref, din, din_ref, dw, dw_ref, db,
                         db_ref, db_unused, col, dcol};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    }
    lsr_conv_fast_free(c);
    lsr_model_free(&m);
}

static void test_conv_bf16(void) {
    test_bf16_rounding();
    check_conv_bf16("conv:4:3:1:same,flatten,dense:2", (lsr_shape){9, 9, 2});
    check_conv_bf16("conv:4:3:2:same,flatten,dense:2", (lsr_shape){9, 9, 2});
    check_conv_bf16("conv:5:4:2:valid,flatten,dense:2", (lsr_shape){9, 9, 3});
    check_conv_bf16("conv:33:3:1:same,flatten,dense:2", (lsr_shape){7, 7, 17});
    /* the tutorial's first two layers */
    check_conv_bf16("conv:64:8:2:same,flatten,dense:2", (lsr_shape){28, 28, 1});
    check_conv_bf16("conv:128:6:2:valid,flatten,dense:2", (lsr_shape){14, 14, 64});

    /* a model in bf16: set, used, and back to fp32 */
    lsr_model m;
    lsr_model_init(&m, "conv:4:3:2:same,relu,conv:6:3:1:valid,relu,flatten,dense:3", (lsr_shape){9, 9, 2}, 3, err);
    if (lsr_model_set_precision(&m, LSR_PRECISION_BF16, err) == 0) {
        CHECK(m.conv_fast[0] && m.conv_fast[2], "the convolutions go through oneDNN");
        CHECK(lsr_model_set_precision(&m, LSR_PRECISION_FP32, err) == 0 && !m.conv_fast[0],
              "back to fp32");
    } else {
        CHECK(strstr(err, "bf16") != NULL, "the refusal names bf16: %s", err);
    }
    lsr_model_free(&m);
}

/* The linear piece the fp32 model's parameters put input x on (by the
 * double forward). */
static uint64_t active_pieces(const lsr_model *m, const float *x, int batch) {
    const size_t in_size = lsr_shape_size(m->input) * (size_t)batch;
    double *xd = malloc(in_size * sizeof(double)), *P = malloc(m->n_params * sizeof(double));
    double *z = malloc((size_t)batch * m->classes * sizeof(double));
    for (size_t i = 0; i < in_size; i++) xd[i] = x[i];
    for (size_t i = 0; i < m->n_params; i++) P[i] = m->params[i];
    uint64_t pieces;
    forward_double(z, &pieces, m, P, xd, batch);
    free(xd);
    free(P);
    free(z);
    return pieces;
}

/* Same shapes as the loss sees them: the whole model with the smoothed loss
 * on top, parameters checked against central differences of the loss. */
static void test_model_with_loss(void) {
    lsr_model m;
    lsr_shape in = {8, 8, 1};
    CHECK(lsr_model_init(&m, "conv:4:3:2:same,relu,flatten,dense:5", in, 5, err) == 0, "%s", err);
    lsr_rng rng;
    lsr_rng_seed(&rng, 7);
    lsr_model_init_params(&m, LSR_INIT_CLEVERHANS, &rng);
    lsr_model_reserve(&m, 4, err);
    float x[4 * 64], dlogits[20], loss;
    int64_t y[4] = {0, 3, 4, 1};
    for (int i = 0; i < 256; i++) x[i] = (float)lsr_rng_uniform(&rng);
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
        lsr_cross_entropy_reference(&up, NULL, NULL, lsr_model_forward(&m, x, 4, 0, NULL), y, 4, 5, 5, &o);
        int same = active_pieces(&m, x, 4) == centre;
        m.params[p] = saved - h;
        lsr_cross_entropy_reference(&down, NULL, NULL, lsr_model_forward(&m, x, 4, 0, NULL), y, 4, 5, 5, &o);
        same = same && active_pieces(&m, x, 4) == centre;
        m.params[p] = saved;
        tried++;
        if (!same) continue; /* the step crosses a ReLU's kink */
        valid++;
        const double numeric = ((double)up - down) / (2.0 * h);
        if (fabs(numeric - m.grads[p]) > 5e-3 + 2e-2 * fabs(numeric)) {
            bad++;
            CHECK(0, "model+loss parameter %zu: analytic %.6f numeric %.6f", p, (double)m.grads[p], numeric);
        }
    }
    CHECK(bad == 0, "model with loss: %d mismatches", bad);
    CHECK(valid >= tried * 3 / 4, "model with loss: only %d of %d steps cross no kink", valid, tried);
    lsr_model_free(&m);
}

/* ---- data ---- */

static void write_bytes(const char *path, const unsigned char *b, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, b, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* An IDX images file of n images of h x w, and a labels file. */
static void write_idx_pair(const char *dir, const char *images, const char *labels, int n, int h,
                           int w, int gz, int label_base) {
    unsigned char buf[4096];
    size_t k = 0;
    buf[k++] = 0; buf[k++] = 0; buf[k++] = 8; buf[k++] = 3;
    const int dims[3] = {n, h, w};
    for (int d = 0; d < 3; d++) {
        buf[k++] = (unsigned char)(dims[d] >> 24); buf[k++] = (unsigned char)(dims[d] >> 16);
        buf[k++] = (unsigned char)(dims[d] >> 8); buf[k++] = (unsigned char)dims[d];
    }
    for (int i = 0; i < n * h * w; i++) buf[k++] = (unsigned char)(i * 37);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, images);
    write_bytes(path, buf, k, gz);
    k = 0;
    buf[k++] = 0; buf[k++] = 0; buf[k++] = 8; buf[k++] = 1;
    buf[k++] = 0; buf[k++] = 0; buf[k++] = 0; buf[k++] = (unsigned char)n;
    for (int i = 0; i < n; i++) buf[k++] = (unsigned char)(label_base + i % 3);
    snprintf(path, sizeof path, "%s/%s", dir, labels);
    write_bytes(path, buf, k, gz);
}

static void expect_idx_error(const char *images, const char *labels, const char *needle) {
    lsr_dataset d;
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/%s", tmpdir, images);
    snprintf(lp, sizeof lp, "%s/%s", tmpdir, labels);
    int r = lsr_idx_load(&d, ip, lp, err);
    CHECK(r != 0 && strstr(err, needle), "IDX %s/%s: want an error with '%s', got %d '%s'", images,
          labels, needle, r, r ? err : "");
    if (r == 0) lsr_dataset_free(&d);
}

static void patch_byte(const char *name, long offset, unsigned char value) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "r+b");
    fseek(f, offset, SEEK_SET);
    fputc(value, f);
    fclose(f);
}

static void truncate_file(const char *name, long size) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    CHECK(truncate(p, size) == 0, "truncate %s", p);
}

static void test_idx(void) {
    lsr_dataset d;
    char ip[512], lp[512];
    for (int gz = 0; gz <= 1; gz++) {
        write_idx_pair(tmpdir, gz ? "i.gz" : "i", gz ? "l.gz" : "l", 5, 4, 3, gz, 0);
        snprintf(ip, sizeof ip, "%s/%s", tmpdir, gz ? "i.gz" : "i");
        snprintf(lp, sizeof lp, "%s/%s", tmpdir, gz ? "l.gz" : "l");
        int r = lsr_idx_load(&d, ip, lp, err);
        CHECK(r == 0, "IDX load gz=%d: %s", gz, err);
        if (r) continue;
        CHECK(d.n == 5 && d.h == 4 && d.w == 3 && d.c == 1 && d.classes == 3, "IDX shape");
        CHECK(fabsf(d.x[1] - 37.0f / 255.0f) < 1e-7f && d.y[4] == 1, "IDX values");
        float mx = 0;
        for (int i = 0; i < 60; i++) mx = fmaxf(mx, d.x[i]);
        CHECK(mx <= 1.0f, "pixels scaled to [0, 1]");
        lsr_dataset_free(&d);
    }
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 0, 0x12);
    expect_idx_error("i", "l", "bad magic");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 2, 0x0d);
    expect_idx_error("i", "l", "not unsigned byte");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 3, 2);
    expect_idx_error("i", "l", "dimensions");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("i", 16 + 59);
    expect_idx_error("i", "l", "truncated");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("l", 10);
    expect_idx_error("i", "l", "truncated");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("i", 16 + 61); /* one byte too many */
    expect_idx_error("i", "l", "trailing data");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("l", 7, 4);
    expect_idx_error("i", "l", "has 5 images but");
    expect_idx_error("missing", "l", "No such file");

    /* labels beyond the model's class count */
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 8);
    snprintf(ip, sizeof ip, "%s/i", tmpdir);
    snprintf(lp, sizeof lp, "%s/l", tmpdir);
    CHECK(lsr_idx_load(&d, ip, lp, err) == 0, "%s", err);
    lsr_model m;
    lsr_model_init(&m, "flatten,dense:10", (lsr_shape){4, 3, 1}, 10, err);
    CHECK(lsr_check_model_data(&m, &d, "data", err) != 0 && strstr(err, "label 10"),
          "labels beyond the class count: '%s'", err);
    lsr_model_free(&m);
    lsr_model_init(&m, "flatten,dense:11", (lsr_shape){5, 3, 1}, 11, err);
    CHECK(lsr_check_model_data(&m, &d, "data", err) != 0 && strstr(err, "the model takes 5x3x1"),
          "shape mismatch: '%s'", err);
    lsr_model_free(&m);
    lsr_dataset_free(&d);
}

static void test_csv(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/t.csv", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "label,a,b\n1,0.5,2\n0,1e-3,-4\n2, 3 ,4\n");
    fclose(f);
    lsr_dataset d;
    CHECK(lsr_csv_load(&d, p, err) == 0 && d.n == 3 && d.w == 2 && d.classes == 3 &&
              d.x[5] == 4.0f && d.y[2] == 2,
          "CSV: %s", err);
    lsr_dataset_free(&d);
    f = fopen(p, "w");
    fprintf(f, "1,0.5,2\n0,1e-3\n");
    fclose(f);
    CHECK(lsr_csv_load(&d, p, err) != 0 && strstr(err, ":2: 2 columns"), "CSV ragged: '%s'", err);
    f = fopen(p, "w");
    fprintf(f, "1,0.5,x\n");
    fclose(f);
    CHECK(lsr_csv_load(&d, p, err) != 0 && strstr(err, "column 3"), "CSV bad number: '%s'", err);
    f = fopen(p, "w");
    fprintf(f, "1.5,0.5\n");
    fclose(f);
    CHECK(lsr_csv_load(&d, p, err) != 0 && strstr(err, "not an integer"), "CSV bad label: '%s'", err);
}

/* ---- model files ---- */

static void test_model_files(void) {
    const char *specs[] = {"cleverhans-cnn", "lenet5", "conv:3:3:1:same,relu,flatten,dense:10"};
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    for (int s = 0; s < 3; s++) {
        lsr_model m, back;
        lsr_rng rng;
        lsr_rng_seed(&rng, (uint64_t)s);
        CHECK(lsr_model_init(&m, specs[s], (lsr_shape){28, 28, 1}, 10, err) == 0, "%s", err);
        lsr_model_init_params(&m, LSR_INIT_HE, &rng);
        for (size_t i = 0; i < m.n_params; i++) m.params[i] += 0.01f * (float)(i % 13); /* biases too */
        lsr_metadata md = {0};
        lsr_metadata_set(&md, "smoothing", "0.1");
        CHECK(lsr_model_save(&m, &md, path, err) == 0, "save: %s", err);
        lsr_metadata md2;
        int r = lsr_model_load(&back, &md2, path, err);
        CHECK(r == 0, "load %s: %s", specs[s], err);
        if (r) continue;
        CHECK(back.n_params == m.n_params &&
                  memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0,
              "%s: parameters differ after a round trip", specs[s]);
        CHECK(strcmp(lsr_metadata_get(&md2, "smoothing"), "0.1") == 0, "metadata round trip");
        float x[2 * 784];
        for (int i = 0; i < 2 * 784; i++) x[i] = (float)lsr_rng_uniform(&rng);
        lsr_model_reserve(&m, 2, err);
        lsr_model_reserve(&back, 2, err);
        float a[20];
        memcpy(a, lsr_model_forward(&m, x, 2, 0, NULL), sizeof a);
        CHECK(memcmp(a, lsr_model_forward(&back, x, 2, 0, NULL), sizeof a) == 0,
              "%s: logits differ after save and load", specs[s]);
        lsr_model_free(&back);
        lsr_model_free(&m);
    }
    /* corrupt files are refused */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    struct { long cut; long patch_at; unsigned char value; const char *needle; } cases[] = {
        {size - 4, -1, 0, "truncated"},
        {size, 7, 0xff, "header length"},
        {size, 9, '[', "not a JSON object"},
        {size + 4, -1, 0, "the data section has"},
        {5, -1, 0, "truncated"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        FILE *in = fopen(path, "rb"), *out = fopen(bad, "wb");
        for (long i = 0; i < cases[c].cut; i++) {
            int ch = i < size ? fgetc(in) : 0;
            if (i == cases[c].patch_at) ch = cases[c].value;
            fputc(ch, out);
        }
        fclose(in);
        fclose(out);
        lsr_model m;
        int r = lsr_model_load(&m, NULL, bad, err);
        CHECK(r != 0 && strstr(err, cases[c].needle), "corrupt case %zu: want '%s', got '%s'", c,
              cases[c].needle, r ? err : "(loaded)");
        if (!r) lsr_model_free(&m);
    }
}

/* ---- optimizers ---- */

static void test_optimizers(void) {
    lsr_optimizer_settings s = lsr_optimizer_defaults();
    lsr_optimizer o;
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -4.0f};
    /* Adam's first step moves each parameter by lr against its gradient's sign */
    lsr_optimizer_init(&o, &s, 2, err);
    lsr_optimizer_step(&o, p, g);
    CHECK(fabsf(p[0] - (1.0f - 1e-3f)) < 1e-6f && fabsf(p[1] - (-2.0f + 1e-3f)) < 1e-6f,
          "adam first step: %g %g", (double)p[0], (double)p[1]);
    lsr_optimizer_free(&o);
    /* SGD with momentum 0.9: v1 = g, v2 = 0.9 g + g; Nesterov uses g + mu v */
    s.kind = LSR_OPTIMIZER_SGD;
    s.lr = 0.1f;
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        s.nesterov = nesterov;
        float q = 1.0f, gq = 1.0f;
        lsr_optimizer_init(&o, &s, 1, err);
        lsr_optimizer_step(&o, &q, &gq);
        lsr_optimizer_step(&o, &q, &gq);
        const double want = nesterov ? 1.0 - 0.1 * (1 + 0.9) - 0.1 * (1 + 0.9 * 1.9) : 1.0 - 0.1 - 0.1 * 1.9;
        CHECK(fabs(q - want) < 1e-6, "sgd nesterov=%d: %g, want %g", nesterov, (double)q, want);
        lsr_optimizer_free(&o);
    }
    /* AdamW decays the weight itself */
    s = lsr_optimizer_defaults();
    s.kind = LSR_OPTIMIZER_ADAMW;
    s.weight_decay = 0.1f;
    float w = 2.0f, zero = 0.0f;
    lsr_optimizer_init(&o, &s, 1, err);
    lsr_optimizer_step(&o, &w, &zero);
    CHECK(fabsf(w - 2.0f * (1.0f - 1e-4f)) < 1e-7f, "adamw decay: %g", (double)w);
    lsr_optimizer_free(&o);
    /* schedules */
    s = lsr_optimizer_defaults();
    s.schedule = LSR_SCHEDULE_COSINE;
    s.total_steps = 100;
    s.warmup = 10;
    lsr_optimizer_init(&o, &s, 1, err);
    CHECK(fabs(lsr_optimizer_lr(&o) - 1e-4) < 1e-9, "warm-up starts at lr/warmup");
    o.t = 50;
    CHECK(fabs(lsr_optimizer_lr(&o) - 0.5e-3) < 1e-9, "cosine halfway");
    lsr_optimizer_free(&o);
}

/* ---- metrics ---- */

static void test_metrics(void) {
    /* three samples: confidences 0.9 (right), 0.6 (wrong), 0.6 (right) */
    const double l9 = log(0.9 / 0.1), l6 = log(0.6 / 0.4);
    float logits[6] = {(float)l9, 0, 0, (float)l6, (float)l6, 0};
    int64_t y[3] = {0, 0, 0};
    lsr_metrics mt;
    lsr_metrics_compute(&mt, logits, y, 3, 2, 1.0);
    CHECK(fabs(mt.accuracy - 2.0 / 3) < 1e-9, "accuracy %g", mt.accuracy);
    /* bins: 0.9 alone (gap 0.1), 0.6 twice (accuracy 0.5, gap 0.1) */
    CHECK(fabs(mt.ece - 0.1) < 1e-6, "ECE %g, want 0.1", mt.ece);
    CHECK(fabs(mt.mce - 0.1) < 1e-6, "MCE %g", mt.mce);
    const double brier = (2 * 0.01 + 2 * 0.36 + 2 * 0.16) / 3;
    CHECK(fabs(mt.brier - brier) < 1e-6, "Brier %g want %g", mt.brier, brier);
    const double nll = (-log(0.9) - log(0.4) - log(0.6)) / 3;
    CHECK(fabs(mt.nll - nll) < 1e-6, "NLL %g want %g", mt.nll, nll);
    CHECK(fabs(mt.overconfidence - (0.7 - 2.0 / 3)) < 1e-6, "confidence - accuracy");

    /* temperature scaling recovers T from over-confident logits */
    lsr_rng rng;
    lsr_rng_seed(&rng, 3);
    const int n = 20000, k = 5;
    float *z = malloc((size_t)n * k * sizeof(float));
    int64_t *labels = malloc((size_t)n * sizeof(int64_t));
    for (int i = 0; i < n; i++) {
        double p[5], s = 0;
        for (int j = 0; j < k; j++) {
            const double base = 1.5 * lsr_rng_normal(&rng);
            z[i * k + j] = (float)(2.5 * base); /* true logits times T = 2.5 */
            p[j] = exp(base);
            s += p[j];
        }
        double u = lsr_rng_uniform(&rng) * s;
        int c = 0;
        while (c < k - 1 && (u -= p[c]) > 0) c++;
        labels[i] = c;
    }
    const double t = lsr_fit_temperature(z, labels, n, k);
    CHECK(fabs(t - 2.5) < 0.1, "fitted temperature %g, want 2.5", t);
    free(z);
    free(labels);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    test_gemm();
    test_gradients();
    test_model_with_loss();
    test_conv_bf16();
    test_idx();
    test_csv();
    test_model_files();
    test_optimizers();
    test_metrics();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
