/* bf16: the float-to-bf16 rounding, the oneDNN bf16 convolutions against
 * the fp32 im2col reference run on the same values rounded to bf16, and a
 * model switched to bf16 and back.  Where the CPU or the build has no bf16
 * convolutions the convolution checks say so and are skipped. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/net.h"

/* Round to nearest, ties to even, as a bit pattern: exact, so compared exactly. */
static void test_bf16_rounds_to_nearest_even(void) {
    CHECK(lsr_bf16_from_float(1.0f) == 0x3f80, "1.0");
    CHECK(lsr_bf16_from_float(-2.0f) == 0xc000, "-2.0");
    CHECK(lsr_bf16_from_float(1.0f + 0x1p-8f) == 0x3f80, "a tie rounds to even (down)");
    CHECK(lsr_bf16_from_float(1.0f + 3 * 0x1p-8f) == 0x3f82, "a tie rounds to even (up)");
    CHECK(lsr_bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above the tie rounds up");
}

/* Infinities stay, FLT_MAX overflows to inf, NaN stays NaN, exact values are kept: exactly. */
static void test_bf16_special_values(void) {
    CHECK(lsr_bf16_from_float(INFINITY) == 0x7f80 && lsr_bf16_from_float(-INFINITY) == 0xff80,
          "inf");
    CHECK(lsr_bf16_from_float(3.4028235e38f) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(isnan(lsr_bf16_to_float(lsr_bf16_from_float(NAN))), "NaN stays NaN");
    CHECK(lsr_bf16_to_float(lsr_bf16_from_float(0.15625f)) == 0.15625f, "exact values are kept");
}

static void fill_normal(float *v, size_t n, lsr_rng *rng, float scale) {
    for (size_t i = 0; i < n; i++)
        v[i] = scale * (float)lsr_rng_normal(rng);
}

static void round_copy(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = lsr_bf16_to_float(lsr_bf16_from_float(src[i]));
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
    CHECK(lsr_model_init(&m, spec, input, 2) == 0, "%s: %s", spec, lsr_last_error());
    const lsr_layer *l = &m.layers[0];
    lsr_conv_fast *c;
    if (lsr_conv_fast_create(&c, LSR_PRECISION_BF16)) {
        printf("skipped the bf16 convolution checks: %s\n", lsr_last_error());
        lsr_model_clear(&m);
        return;
    }
    lsr_rng rng;
    lsr_rng_seed(&rng, 7);
    const int batches[] = {2, 3, 2};
    const size_t patch = (size_t)l->kernel * l->kernel * l->in.c;
    for (int t = 0; t < 3; t++) {
        const int batch = batches[t];
        const size_t nin = (size_t)batch * lsr_shape_size(l->in),
                     nout = (size_t)batch * lsr_shape_size(l->out);
        const size_t nw = l->weight_count, F = (size_t)l->units, rows = nout / F;
        float *x = malloc(nin * sizeof(float)), *xr = malloc(nin * sizeof(float));
        float *w = malloc(nw * sizeof(float)), *wr = malloc(nw * sizeof(float)),
              *b = malloc(F * sizeof(float));
        float *dout = malloc(nout * sizeof(float)), *doutr = malloc(nout * sizeof(float));
        float *out = malloc(nout * sizeof(float)), *out_ref = malloc(nout * sizeof(float));
        float *din = malloc(nin * sizeof(float)), *din_ref = malloc(nin * sizeof(float));
        float *dw = malloc(nw * sizeof(float)), *dw_ref = calloc(nw, sizeof(float));
        float *db = malloc(F * sizeof(float)), *db_ref = calloc(F, sizeof(float)),
              *db_unused = calloc(F, sizeof(float));
        float *col = malloc(rows * patch * sizeof(float)),
              *dcol = malloc(rows * patch * sizeof(float));
        fill_normal(x, nin, &rng, 1.0f);
        fill_normal(w, nw, &rng, 0.3f);
        fill_normal(b, F, &rng, 1.0f);
        fill_normal(dout, nout, &rng, 1.0f);
        round_copy(xr, x, nin);
        round_copy(wr, w, nw);
        round_copy(doutr, dout, nout);
        for (size_t i = 0; i < nw; i++)
            dw[i] = 1.0f; /* the gradients are added to */
        for (size_t i = 0; i < F; i++)
            db[i] = 1.0f;

        int ok = lsr_conv_fast_forward(c, out, x, w, b, l, batch) == 0;
        ok = ok && lsr_conv_fast_backward(c, din, dw, db, dout, w, l, batch) == 0;
        CHECK(ok, "%s batch %d: the bf16 convolution failed", spec, batch);
        lsr_conv2d_forward(out_ref, xr, wr, b, col, l, batch);
        lsr_conv2d_backward(din_ref, dw_ref, db_unused, doutr, col, wr, dcol, l, batch);
        lsr_bias_grad(db_ref, dout, (int)rows, (int)F); /* the bias gradient stays fp32 */
        for (size_t i = 0; i < nw; i++)
            dw[i] -= 1.0f;
        for (size_t i = 0; i < F; i++)
            db[i] -= 1.0f;
        size_t at = 0;
        CHECK(!max_rel_error(out, out_ref, nout, 1e-4, &at),
              "%s batch %d: output %zu: %g, reference %g", spec, batch, at, (double)out[at],
              (double)out_ref[at]);
        CHECK(!max_rel_error(din, din_ref, nin, 1e-4, &at),
              "%s batch %d: input gradient %zu: %g, reference %g", spec, batch, at, (double)din[at],
              (double)din_ref[at]);
        CHECK(!max_rel_error(dw, dw_ref, nw, 1e-4, &at),
              "%s batch %d: weight gradient %zu: %g, reference %g", spec, batch, at, (double)dw[at],
              (double)dw_ref[at]);
        CHECK(!max_rel_error(db, db_ref, F, 1e-4, &at),
              "%s batch %d: bias gradient %zu: %g, reference %g", spec, batch, at, (double)db[at],
              (double)db_ref[at]);
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
        float *bufs[] = {x,   xr,      w,  wr,     b,  dout,   doutr,     out, out_ref,
                         din, din_ref, dw, dw_ref, db, db_ref, db_unused, col, dcol};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            free(bufs[i]);
    }
    lsr_conv_fast_free(c);
    lsr_model_clear(&m);
}

/* 3x3 same, stride 1: within 1e-4 of the rounded-data reference (only the sums' order differs). */
static void test_bf16_conv_same(void) {
    check_conv_bf16("conv:4:3:1:same,flatten,dense:2", (lsr_shape){9, 9, 2});
}

/* 3x3 same, stride 2: within 1e-4 of the reference on bf16-rounded data (fp32 sum order). */
static void test_bf16_conv_strided(void) {
    check_conv_bf16("conv:4:3:2:same,flatten,dense:2", (lsr_shape){9, 9, 2});
}

/* 4x4 valid, stride 2, 3 channels: within 1e-4 of the reference on bf16-rounded data. */
static void test_bf16_conv_valid(void) {
    check_conv_bf16("conv:5:4:2:valid,flatten,dense:2", (lsr_shape){9, 9, 3});
}

/* 33 filters of 17 channels (past the kernels' blocks): within 1e-4 of the rounded reference. */
static void test_bf16_conv_wide(void) {
    check_conv_bf16("conv:33:3:1:same,flatten,dense:2", (lsr_shape){7, 7, 17});
}

/* The tutorial's first layer, 64 8x8 filters: within 1e-4 of the rounded-data reference. */
static void test_bf16_conv_tutorial_first_layer(void) {
    check_conv_bf16("conv:64:8:2:same,flatten,dense:2", (lsr_shape){28, 28, 1});
}

/* The tutorial's second layer, 128 6x6 filters: within 1e-4 of the rounded-data reference. */
static void test_bf16_conv_tutorial_second_layer(void) {
    check_conv_bf16("conv:128:6:2:valid,flatten,dense:2", (lsr_shape){14, 14, 64});
}

/* A model set to bf16 runs its convolutions through oneDNN and goes back to fp32 (or refuses). */
static void test_bf16_model_precision(void) {
    lsr_model m;
    lsr_model_init(&m, "conv:4:3:2:same,relu,conv:6:3:1:valid,relu,flatten,dense:3",
                   (lsr_shape){9, 9, 2}, 3);
    if (lsr_model_set_precision(&m, LSR_PRECISION_BF16) == 0) {
        CHECK(m.conv_fast[0] && m.conv_fast[2], "the convolutions go through oneDNN");
        CHECK(lsr_model_set_precision(&m, LSR_PRECISION_FP32) == 0 && !m.conv_fast[0],
              "back to fp32");
    } else {
        CHECK(strstr(lsr_last_error(), "bf16") != NULL, "the refusal names bf16: %s",
              lsr_last_error());
    }
    lsr_model_clear(&m);
}

int main(void) {
    test_bf16_rounds_to_nearest_even();
    test_bf16_special_values();
    test_bf16_conv_same();
    test_bf16_conv_strided();
    test_bf16_conv_valid();
    test_bf16_conv_wide();
    test_bf16_conv_tutorial_first_layer();
    test_bf16_conv_tutorial_second_layer();
    test_bf16_model_precision();
    return check_summary();
}
