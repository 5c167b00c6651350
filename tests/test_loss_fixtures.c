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
        for (int j = 0; j < k; j++)
            w_max = fmax(w_max, weights[j]);
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

/* One fixture case: the call's arguments and PyTorch's loss and gradient. */
typedef struct fixture {
    int n, k, red, weighted, soft, conv;
    long long ignore_index;
    float eps;
    float *logits, *targets, *weights, *want_loss, *want_grad;
    int64_t *labels;
} fixture;

static fixture *fixtures;
static int cases;

static void fixture_free(fixture *c) {
    free(c->logits);
    free(c->targets);
    free(c->labels);
    free(c->weights);
    free(c->want_loss);
    free(c->want_grad);
}

/* Reads the fixture file's cases into fixtures (up to the first that does
 * not parse, which fails a check); -1 when it cannot be opened. */
static int load_fixtures(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f)) { /* header comment */
        fclose(f);
        return -1;
    }
    int capacity = 0;
    char word[32];
    while (fscanf(f, "%31s", word) == 1) {
        int n, k, red, weighted, soft, conv;
        long long ignore_index;
        float eps;
        if (strcmp(word, "case") != 0 || fscanf(f, "%d %d %d %f %d %lld %d %d", &n, &k, &red, &eps,
                                                &weighted, &ignore_index, &soft, &conv) != 8) {
            CHECK(0, "malformed fixture after %d cases", cases);
            break;
        }
        const int nloss = red == LSR_REDUCTION_NONE ? n : 1;
        fixture c = {n,   k,    red,  weighted, soft, conv, ignore_index,
                     eps, NULL, NULL, NULL,     NULL, NULL, NULL};
        c.logits = malloc(sizeof(float) * (size_t)(n * k));
        c.targets = malloc(sizeof(float) * (size_t)(n * k));
        c.labels = malloc(sizeof(int64_t) * (size_t)n);
        c.weights = malloc(sizeof(float) * (size_t)k);
        c.want_loss = malloc(sizeof(float) * (size_t)nloss);
        c.want_grad = malloc(sizeof(float) * (size_t)(n * k));
        int ok = read_floats(f, "logits", c.logits, n * k);
        ok = ok && fscanf(f, "%31s", word) == 1 && strcmp(word, "target") == 0;
        for (int i = 0; ok && i < (soft ? n * k : n); i++)
            ok = soft ? fscanf(f, "%f", &c.targets[i]) == 1
                      : fscanf(f, "%lld", (long long *)&c.labels[i]) == 1;
        if (ok && weighted)
            ok = read_floats(f, "weight", c.weights, k);
        else if (ok)
            ok = fscanf(f, "%31s %31s", word, line) == 2;
        ok = ok && read_floats(f, "loss", c.want_loss, nloss) &&
             read_floats(f, "grad", c.want_grad, n * k);
        CHECK(ok, "fixture %d does not parse", cases);
        if (!ok) {
            fixture_free(&c);
            break;
        }
        if (cases == capacity) {
            capacity = capacity ? 2 * capacity : 1024;
            fixtures = realloc(fixtures, (size_t)capacity * sizeof *fixtures);
        }
        fixtures[cases++] = c;
    }
    fclose(f);
    return 0;
}

/* Every case through the fast (impl 0) or the reference (impl 1) loss:
 * the loss within loss_tolerance of PyTorch's, the gradient to 1e-5. */
static void check_against_torch(int impl) {
    for (int ci = 0; ci < cases; ci++) {
        const fixture *c = &fixtures[ci];
        const int n = c->n, k = c->k, red = c->red, weighted = c->weighted, soft = c->soft;
        const int conv = c->conv, nloss = red == LSR_REDUCTION_NONE ? n : 1;
        const long long ignore_index = c->ignore_index;
        const float eps = c->eps;
        const float *want_loss = c->want_loss, *want_grad = c->want_grad;
        const int64_t *labels = c->labels;
        float *loss = malloc(sizeof(float) * (size_t)nloss);
        float *grad = malloc(sizeof(float) * (size_t)(n * k));
        lsr_loss_options o = lsr_loss_options_default();
        o.smoothing = eps;
        o.reduction = (lsr_reduction)red;
        o.ignore_index = ignore_index;
        o.class_weights = weighted ? c->weights : NULL;
        o.convention = conv ? LSR_SMOOTHING_OTHERS : LSR_SMOOTHING_ALL;
        lsr_status s;
        if (soft)
            s = impl ? lsr_cross_entropy_soft_reference(loss, grad, NULL, c->logits, c->targets, n,
                                                        k, k, &o)
                     : lsr_cross_entropy_soft(loss, grad, NULL, c->logits, c->targets, n, k, k, &o);
        else
            s = impl ? lsr_cross_entropy_reference(loss, grad, NULL, c->logits, labels, n, k, k, &o)
                     : lsr_cross_entropy(loss, grad, NULL, c->logits, labels, n, k, k, &o);
        CHECK(s == LSR_OK, "case %d: %s", ci, lsr_last_error());
        for (int i = 0; i < nloss; i++) {
            const double tol = loss_tolerance(
                want_loss[i], red == LSR_REDUCTION_NONE ? 1 : n, k, red, o.class_weights,
                red == LSR_REDUCTION_NONE ? labels + i : labels, ignore_index, soft);
            CHECK(fabs((double)loss[i] - (double)want_loss[i]) <= tol,
                  "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d conv=%d) %s "
                  "loss[%d] %.8g, torch %.8g, tolerance %.3g",
                  ci, n, k, red, (double)eps, weighted, ignore_index, soft, conv,
                  impl ? "reference" : "fast", i, (double)loss[i], (double)want_loss[i], tol);
        }
        int grad_ok = 1;
        for (int i = 0; i < n * k; i++)
            grad_ok &= agree(grad[i], want_grad[i]);
        CHECK(grad_ok,
              "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d conv=%d) %s gradient "
              "differs",
              ci, n, k, red, (double)eps, weighted, ignore_index, soft, conv,
              impl ? "reference" : "fast");
        free(loss);
        free(grad);
    }
}

/* The fixture file holds at least 1000 cases, all of which parse (a count: exact). */
static void test_fixtures_read(void) {
    CHECK(cases >= 1000, "only %d fixture cases read", cases);
    printf("%d PyTorch cases\n", cases);
}

/* The fast loss agrees with PyTorch: loss within loss_tolerance (both roundings), grad to 1e-5. */
static void test_fast_matches_torch(void) { check_against_torch(0); }

/* The reference loss agrees with PyTorch: the same tolerances as the fast one. */
static void test_reference_matches_torch(void) { check_against_torch(1); }

int main(int argc, char **argv) {
    if (load_fixtures(argc > 1 ? argv[1] : "fixtures/loss_torch.txt")) return 1;
    test_fixtures_read();
    test_fast_matches_torch();
    test_reference_matches_torch();
    for (int ci = 0; ci < cases; ci++)
        fixture_free(&fixtures[ci]);
    free(fixtures);
    return check_summary();
}
