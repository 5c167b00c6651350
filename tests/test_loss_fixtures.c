/* lsr against PyTorch's F.cross_entropy: fixtures/loss_torch.txt holds
 * PyTorch's loss and gradient for label smoothing x class weights x
 * ignore_index x reduction x probability targets (tests/make_loss_fixtures.py).
 * Both the fast and the reference implementation must agree to 1e-5. */
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
        int n, k, red, weighted, soft;
        long long ignore_index;
        float eps;
        if (strcmp(word, "case") != 0 ||
            fscanf(f, "%d %d %d %f %d %lld %d", &n, &k, &red, &eps, &weighted, &ignore_index,
                   &soft) != 7) {
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
        for (int impl = 0; impl < 2; impl++) {
            lsr_status s;
            if (soft)
                s = impl ? lsr_cross_entropy_soft_reference(loss, grad, NULL, logits, targets, n, k, k, &o)
                         : lsr_cross_entropy_soft(loss, grad, NULL, logits, targets, n, k, k, &o);
            else
                s = impl ? lsr_cross_entropy_reference(loss, grad, NULL, logits, labels, n, k, k, &o)
                         : lsr_cross_entropy(loss, grad, NULL, logits, labels, n, k, k, &o);
            CHECK(s == LSR_OK, "case %d: %s", cases, lsr_last_error());
            for (int i = 0; i < nloss; i++)
                CHECK(agree(loss[i], want_loss[i]),
                      "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d) %s loss[%d] %.8g, torch %.8g",
                      cases, n, k, red, (double)eps, weighted, ignore_index, soft,
                      impl ? "reference" : "fast", i, (double)loss[i], (double)want_loss[i]);
            int grad_ok = 1;
            for (int i = 0; i < n * k; i++) grad_ok &= agree(grad[i], want_grad[i]);
            CHECK(grad_ok, "case %d (n=%d k=%d red=%d eps=%g w=%d ignore=%lld soft=%d) %s gradient differs",
                  cases, n, k, red, (double)eps, weighted, ignore_index, soft,
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
    CHECK(cases >= 400, "only %d fixture cases read", cases);
    printf("%d PyTorch cases\n", cases);
    return check_summary();
}
