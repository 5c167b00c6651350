/* The evaluation metrics on three samples whose values are known in closed
 * form (accuracy, ECE, MCE, Brier, NLL, over-confidence), and temperature
 * scaling recovering a known temperature. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/common.h"
#include "metrics/metrics.h"
#include "metrics/projection.h"

/* Three samples: confidences 0.9 (right), 0.6 (wrong), 0.6 (right), all of class 0. */
static lsr_metrics three_samples(void) {
    const double l9 = log(0.9 / 0.1), l6 = log(0.6 / 0.4);
    float logits[6] = {(float)l9, 0, 0, (float)l6, (float)l6, 0};
    int64_t y[3] = {0, 0, 0};
    lsr_metrics mt;
    CHECK(lsr_metrics_compute(&mt, logits, y, 3, 2, 1.0) == LSR_OK, "%s", lsr_last_error());
    return mt;
}

/* Accuracy is 2/3, to 1e-9 (a count over 3, in double). */
static void test_accuracy(void) {
    const lsr_metrics mt = three_samples();
    CHECK(fabs(mt.accuracy - 2.0 / 3) < 1e-9, "accuracy %g", mt.accuracy);
}

/* ECE and MCE are 0.1, to 1e-6 (the confidences come from float logits). */
static void test_calibration_errors(void) {
    const lsr_metrics mt = three_samples();
    /* bins: 0.9 alone (gap 0.1), 0.6 twice (accuracy 0.5, gap 0.1) */
    CHECK(fabs(mt.ece - 0.1) < 1e-6, "ECE %g, want 0.1", mt.ece);
    CHECK(fabs(mt.mce - 0.1) < 1e-6, "MCE %g", mt.mce);
}

/* Brier score and NLL as by hand, to 1e-6 (float logits). */
static void test_brier_and_nll(void) {
    const lsr_metrics mt = three_samples();
    const double brier = (2 * 0.01 + 2 * 0.36 + 2 * 0.16) / 3;
    CHECK(fabs(mt.brier - brier) < 1e-6, "Brier %g want %g", mt.brier, brier);
    const double nll = (-log(0.9) - log(0.4) - log(0.6)) / 3;
    CHECK(fabs(mt.nll - nll) < 1e-6, "NLL %g want %g", mt.nll, nll);
}

/* Over-confidence is mean confidence 0.7 minus accuracy 2/3, to 1e-6 (float logits). */
static void test_overconfidence(void) {
    const lsr_metrics mt = three_samples();
    CHECK(fabs(mt.overconfidence - (0.7 - 2.0 / 3)) < 1e-6, "confidence - accuracy");
}

/* Temperature scaling recovers T = 2.5 within 0.1 (20000 sampled labels: the fit's noise). */
static void test_temperature_scaling(void) {
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
        while (c < k - 1 && (u -= p[c]) > 0)
            c++;
        labels[i] = c;
    }
    double t = 0;
    CHECK(lsr_temperature_fit(&t, z, labels, n, k) == LSR_OK, "%s", lsr_last_error());
    CHECK(fabs(t - 2.5) < 0.1, "fitted temperature %g, want 2.5", t);
    free(z);
    free(labels);
}

/* Bad arguments are refused by status, naming what is wrong. */
static void test_bad_arguments_refused(void) {
    float z[4] = {0, 1, 2, 3};
    int64_t y[2] = {0, 2};
    lsr_metrics mt;
    double t;
    CHECK(lsr_metrics_compute(&mt, z, y, 2, 2, 1.0) == LSR_ERROR_LABEL &&
              strstr(lsr_last_error(), "label 2"),
          "a label past k: %s", lsr_last_error());
    y[1] = 1;
    CHECK(lsr_metrics_compute(&mt, z, y, 2, 2, 0.0) == LSR_ERROR_OPTION, "temperature 0");
    CHECK(lsr_metrics_compute(&mt, z, y, 2, 2, NAN) == LSR_ERROR_OPTION, "temperature NaN");
    CHECK(lsr_temperature_fit(&t, z, y, -1, 2) == LSR_ERROR_SIZE, "n < 0");
    CHECK(lsr_temperature_fit(&t, NULL, y, 2, 2) == LSR_ERROR_NULL_ARGUMENT, "no logits");
}

/* The plane through three templates: the templates land where their
 * distances put them, an offset orthogonal to the plane changes nothing,
 * and the residual of any point is orthogonal to both axes; three points on
 * a line are refused.  Tightness of a configuration known in closed form. */
static void test_projection(void) {
    enum { D = 6 };
    float t[3][D] = {{1, 2, 0, 0, 5, -1}, {4, 2, 0, 0, 5, -1}, {1, 6, 0, 0, 5, -1}};
    double origin[D], e1[D], e2[D];
    CHECK(lsr_template_plane(origin, e1, e2, t[0], t[1], t[2], D) == LSR_OK, "%s",
          lsr_last_error());
    float acts[5][D], xy[10];
    memcpy(acts, t, sizeof t);
    memcpy(acts[3], t[1], sizeof t[1]);
    acts[3][2] += 7.0f, acts[3][3] -= 2.0f; /* out of the plane */
    const float p[D] = {0.5f, -3.0f, 2.0f, 1.0f, 0.0f, 9.0f};
    memcpy(acts[4], p, sizeof p);
    lsr_project_plane(xy, &acts[0][0], 5, D, origin, e1, e2);
    CHECK(fabs(xy[0]) < 1e-6 && fabs(xy[1]) < 1e-6, "t0 at (%g, %g)", xy[0], xy[1]);
    CHECK(fabs(xy[2] - 3) < 1e-6 && fabs(xy[3]) < 1e-6, "t1 at (%g, %g)", xy[2], xy[3]);
    CHECK(fabs(xy[4]) < 1e-6 && fabs(xy[5] - 4) < 1e-6, "t2 at (%g, %g)", xy[4], xy[5]);
    CHECK(xy[6] == xy[2] && xy[7] == xy[3], "an orthogonal offset moved t1 to (%g, %g)", xy[6],
          xy[7]);
    double r1 = 0, r2 = 0;
    for (int i = 0; i < D; i++) {
        const double res = p[i] - origin[i] - xy[8] * e1[i] - xy[9] * e2[i];
        r1 += res * e1[i], r2 += res * e2[i];
    }
    CHECK(fabs(r1) < 1e-5 && fabs(r2) < 1e-5, "the residual is not orthogonal: %g %g", r1, r2);
    float line[D] = {7, 2, 0, 0, 5, -1}; /* on the line through t0 and t1 */
    CHECK(lsr_template_plane(origin, e1, e2, t[0], t[1], line, D) == LSR_ERROR_OPTION,
          "three templates on a line took");
    /* centroids (0,0), (10,0), (0,10), each group's points at +-(1, 0): within
     * 1, between (200 + 500 + 500) / 27 */
    const float pts[12] = {-1, 0, 1, 0, 9, 0, 11, 0, -1, 10, 1, 10};
    const int group[6] = {0, 0, 1, 1, 2, 2};
    const double tight = lsr_cluster_tightness(pts, group, 6, 3);
    CHECK(fabs(tight - 27.0 / 1200.0) < 1e-12, "tightness %.15g, expected %.15g", tight,
          27.0 / 1200.0);
    CHECK(isnan(lsr_cluster_tightness(pts, group, 4, 3)), "an empty group gave a number");
}

int main(void) {
    test_bad_arguments_refused();
    test_projection();
    test_accuracy();
    test_calibration_errors();
    test_brier_and_nll();
    test_overconfidence();
    test_temperature_scaling();
    return check_summary();
}
