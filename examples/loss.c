/*
 * examples/loss.c - the loss library in one page: the label-smoothed
 * cross-entropy (eps = 0.1) of a toy batch and its gradient, checked
 * against the reference implementation.
 *
 *     cc loss.c $(pkg-config --cflags --libs lsr) -lm -o loss && ./loss
 *
 * Exits 0 when the fast and the reference implementation agree, 1 otherwise.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <lsr/loss.h>

#define N 4 /* rows (samples) */
#define K 5 /* classes */

int main(void) {
    /* logits (N, K), row-major; row 2 is padding: its label is the ignore
     * index, so it counts neither in the loss nor in the mean */
    const float logits[N * K] = {
        2.0f,  1.0f,  0.1f, -1.0f, 0.5f,  /* label 0: confident and right */
        0.3f,  -0.2f, 1.5f, 0.0f,  -2.0f, /* label 3: wrong */
        9.0f,  9.0f,  9.0f, 9.0f,  9.0f,  /* ignored */
        -1.0f, 0.0f,  0.5f, 0.2f,  3.0f,  /* label 4: right */
    };
    const int64_t labels[N] = {0, 3, LSR_IGNORE_INDEX_DEFAULT, 4};

    lsr_loss_options opt = lsr_loss_options_default(); /* mean over the rows kept */
    opt.smoothing = 0.1f; /* target 1 - 0.1 + 0.1/K, every other class 0.1/K */

    float loss, grad[N * K], ref_loss, ref_grad[N * K];
    lsr_loss_stats stats;
    lsr_status st = lsr_cross_entropy(&loss, grad, &stats, logits, labels, N, K, K, &opt);
    if (st == LSR_OK)
        st = lsr_cross_entropy_reference(&ref_loss, ref_grad, NULL, logits, labels, N, K, K, &opt);
    if (st != LSR_OK) {
        fprintf(stderr, "loss: %s: %s\n", lsr_status_name(st), lsr_last_error());
        return 1;
    }

    printf("loss %.6f over %lld rows (H(q, p) %.6f, H(u, p) %.6f), reference %.6f\n", (double)loss,
           (long long)stats.valid_rows, stats.label_ce, stats.prior_ce, (double)ref_loss);
    printf("gradient d loss / d logits:\n");
    for (int i = 0; i < N; i++) {
        printf("  row %d (label %3lld):", i, (long long)labels[i]);
        for (int j = 0; j < K; j++)
            printf(" %+.6f", (double)grad[i * K + j]);
        printf("\n");
    }

    /*
     * How close is close.  The fast implementation works in float, the
     * reference in double and rounds once at the end.  A float operation is
     * exact to u = FLT_EPSILON / 2 of its result (exp and log to a few u); a
     * row's loss and gradient pass through about 2K + 10 of them (the max, K
     * subtractions and exps, their sum, a log, K products and sums with the
     * smoothed target), each handling values up to max |z| + log K.  Allowing
     * 4u per operation: |fast - reference| <= (2K + 10) 4u (1 + max |z| + log K),
     * about 6e-5 here, while a real mistake (a wrong eps / K, a row not
     * ignored) moves the result by 1e-3 or more.
     */
    double zmax = 0.0;
    for (int i = 0; i < N * K; i++)
        zmax = fmax(zmax, fabs((double)logits[i]));
    const double tol = (2.0 * K + 10.0) * 4.0 * (FLT_EPSILON / 2) * (1.0 + zmax + log((double)K));
    double worst = fabs((double)loss - (double)ref_loss);
    for (int i = 0; i < N * K; i++)
        worst = fmax(worst, fabs((double)grad[i] - ref_grad[i]));
    printf("largest difference from the reference %.2e (tolerance %.2e)\n", worst, tol);
    if (!(worst <= tol)) {
        fprintf(stderr, "loss: the fast and the reference implementation disagree\n");
        return 1;
    }
    return 0;
}
