/* lsr against PyTorch's F.cross_entropy: fixtures/loss_torch.txt holds
 * PyTorch's loss and gradient for label smoothing x class weights x
 * ignore_index x reduction x probability targets, and for logit gaps up to
 * 1e4 in both conventions ("others" as PyTorch with the equivalent dense
 * target) (tests/make_loss_fixtures.py).  Both the fast and the reference
 * implementation must agree with it: the loss within loss_tolerance, the
 * gradient to 1e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lsr/loss.h"

static int read_floats(FILE *f, const char *tag, float *out, int count) {
    char word[32];
    if (fscanf(f, "%31s", word) != 1 || strcmp(word, tag) != 0) return 0;
    for (int i = 0; i < count; i++)
        if (fscanf(f, "%f", &out[i]) != 1) return 0;
    return 1;
}

static int agree(float got, float want) { return fabsf(got - want) <= 1e-5f * fabsf(want) + 1e-6f; }

/* How far lsr's loss and PyTorch's may lie apart, from the float rounding
 * of each (u = 2^-24; every term -log p_k >= 0 and every coefficient >= 0,
 * so relative bounds hold for the sums):
 *   lsr: n = ceil(K/8) + 4 float additions in the longest chain of a row's
 *        sum, |L^ - L| <= (n + 5) u = E_L for L = log sum exp(z - max),
 *        relatively 3 (n + 2) u + u, absolutely 3 w_max E_L a row (the
 *        derivation is test_loss.c's gap_tolerance);
 *   PyTorch: float log_softmax ((z - max) and the log: 2u), its row sum of
 *        K terms and the reduction over N rows (K + N), the float products
 *        and the mean's division (3u), + 3u to spare: (K + N + 8) u
 *        relatively; its log-sum-exp absolutely (K + 4) u a unit of
 *        coefficient, at most w_max a row.
 * A reduced loss sums the rows' absolute parts, times the mean's divisor. */
static double loss_tolerance(float want, int n, int k, int red, const float *weights,
                             const int64_t *labels, long long ignore_index, int soft) {
    const double u = ldexp(1.0, -24);
    const int kc = k < 4096 ? k : 4096;
    const double n_chain = (double)((kc + 7) / 8) + 4.0, e_l = (n_chain + 5.0) * u;
    double w_max = 1.0, valid = 0.0, weight_sum = 0.0;
    if (weights)
        for (int j = 0; j < k; j++) w_max = fmax(w_max, weights[j]);
    for (int i = 0; i < n; i++) {
        if (!soft && labels[i] == ignore_index) continue;
        valid += 1.0;
        weight_sum += weights && !soft ? weights[labels[i]] : 1.0;
    }
    const double rel = 3.0 * (n_chain + 2.0) * u + u + (double)(k + n + 8) * u;
    const double row_abs = 3.0 * w_max * e_l + w_max * (double)(k + 4) * u;
    double abs_tol = row_abs;
    if (red == LSR_REDUCTION_SUM) abs_tol = valid * row_abs;
    if (red == LSR_REDUCTION_MEAN) abs_tol = weight_sum > 0.0 ? valid * row_abs / weight_sum : 0.0;
    return rel * fabs((double)want) + abs_tol;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "fixtures/loss_torch.txt";
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f)) return 1; /* header comment */
    int cases = 0;
    char word[32];
    while (fscanf(f, "%31s", word) == 1) {
        int n, k, red, weighted, soft, conv;
        long long ignore_index;
        float eps;
        if (strcmp(word, "case") != 0 ||
            fscanf(f, "%d %d %d %f %d %lld %d %d", &n, &k, &red, &eps, &weighted, &ignore_index,
                   &soft, &conv) != 8) {
            CHECK(0, "malformed fixture after %d cases", cases);
            break;
        }
        const int nloss = red == LSR_REDUCTION_NONE ? n : 1;
        float *logits = malloc(sizeof(float) * (size_t)(n * k));
        float *targets = malloc(sizeof(float) * (size_t)(n * k));
        int64_t *labels = malloc(sizeof(int64_t) * (size_t)n);
        float *weights = malloc(sizeof(float) * (size_t)k);
        float *want_loss = malloc(sizeof(float) * (size_t)nloss);
        float *want_grad = malloc(sizeof(float) * (size_t)(n * k));
        float *loss = malloc(sizeof(float) * (size_t)nloss);
        float *grad = malloc(sizeof(float) * (size_t)(n * k));
        int ok = read_floats(f, "logits", logits, n * k);
        ok = ok && fscanf(f, "%31s", word) == 1 && strcmp(word, "target") == 0;
        for (int i = 0; ok && i < (soft ? n * k : n); i++)
            ok = soft ? fscanf(f, "%f", &targets[i]) == 1 : fscanf(f, "%lld", (long long *)&labels[i]) == 1;
        if (ok && weighted) ok = read_floats(f, "weight", weights, k);
        else if (ok) ok = fscanf(f, "%31s %31s", word, line) == 2;
        ok = ok && read_floats(f, "loss", want_loss, nloss) && read_floats(f, "grad", want_grad, n * k);
        CHECK(ok, "fixture %d does not parse", cases);
        if (!ok) break;

        lsr_loss_options o = lsr_loss_options_default();
        o.smoothing = eps;
        o.reduction = (lsr_reduction)red;
        o.ignore_index = ignore_index;
        o.class_weights = weighted ? weights : NULL;
        o.convention = conv ? LSR_SMOOTHING_OTHERS : LSR_SMOOTHING_ALL;
        for (int impl = 0; impl < 2; impl++) {
            lsr_status s;
            if (soft)
                s = impl ? lsr_cross_entropy_soft_reference(loss, grad, NULL, logits, targets, n, k, k, &o)
                         : lsr_cross_entropy_soft(loss, grad, NULL, logits, targets, n, k, k, &o);
            else
                s = impl ? lsr_cross_entropy_reference(loss, grad, NULL, logits, labels, n, k, k, &o)
                         : lsr_cross_entropy(loss, grad, NULL, logits, labels, n, k, k, &o);
            CHECK(s == LSR_OK, "case %d: %s", cases, lsr_last_error());
            for (int i = 0; i < nloss; i++) {
                const double tol = loss_tolerance(want_loss[i], red == LSR_REDUCTION_NONE ? 1 : n,
                                                  k, red, o.class_weights,
                                                  red == LSR_REDUCTION_NONE ? labels + i : labels,
                                                  ignore_index, soft);
                CHECK(fabs((double)loss[i] - (double)want_loss[i]) <= tol,
                      "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d conv=%d) %s "
                      "loss[%d] %.8g, torch %.8g, tolerance %.3g",
                      cases, n, k, red, (double)eps, weighted, ignore_index, soft, conv,
                      impl ? "reference" : "fast", i, (double)loss[i], (double)want_loss[i], tol);
            }
            int grad_ok = 1;
            for (int i = 0; i < n * k; i++) grad_ok &= agree(grad[i], want_grad[i]);
            CHECK(grad_ok, "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d conv=%d) %s gradient differs",
                  cases, n, k, red, (double)eps, weighted, ignore_index, soft, conv,
                  impl ? "reference" : "fast");
        }
        free(logits);
        free(targets);
        free(labels);
        free(weights);
        free(want_loss);
        free(want_grad);
        free(loss);
        free(grad);
        cases++;
    }
    fclose(f);
    CHECK(cases >= 1000, "only %d fixture cases read", cases);
    printf("%d PyTorch cases\n", cases);
    return check_summary();
}
