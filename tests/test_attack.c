/* FGSM and adversarial training: the closed form on a linear model,
 * clipping, one adversarial-training step against a hand computation, and
 * the cleverhans tutorial's gate on a Fashion-MNIST subset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/fgsm.h"
#include "check.h"
#include "data/dataset.h"
#include "metrics/metrics.h"
#include "net/net.h"
#include "train/train.h"

/* A linear model on 1x4x1 inputs with 3 classes and known weights. */
static void linear_model(lsr_model *m) {
    lsr_model_init(m, "flatten,dense:3", (lsr_shape){1, 4, 1}, 3);
    const float w[12] = {0.5f,  -1.0f, 0.25f, 2.0f, -0.5f, 1.0f,
                         0.75f, -2.0f, 1.0f,  0.5f, -1.5f, 0.1f};
    const float b[3] = {0.1f, -0.2f, 0.3f};
    memcpy(m->params + m->layers[1].weight_offset, w, sizeof w);
    memcpy(m->params + m->layers[1].bias_offset, b, sizeof b);
}

/* The expected FGSM image: the CE gradient w.r.t. x is W^T (p - onehot_y). */
static void fgsm_by_hand(const lsr_model *m, const float *x, int64_t y, float eps, float *out) {
    const float *w = m->params + m->layers[1].weight_offset,
                *b = m->params + m->layers[1].bias_offset;
    double z[3], p[3], s = 0, mx = -INFINITY;
    for (int k = 0; k < 3; k++) {
        z[k] = b[k];
        for (int j = 0; j < 4; j++)
            z[k] += (double)w[k * 4 + j] * x[j];
        mx = fmax(mx, z[k]);
    }
    for (int k = 0; k < 3; k++)
        s += p[k] = exp(z[k] - mx);
    for (int j = 0; j < 4; j++) {
        double g = 0;
        for (int k = 0; k < 3; k++)
            g += (double)w[k * 4 + j] * (p[k] / s - (k == y));
        double v = x[j] + (g > 0 ? eps : g < 0 ? -eps : 0);
        out[j] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
}

/* Two examples (one to be clipped) and their labels, for the linear model. */
static const float two_x[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.95f, 0.05f, 0.2f, 0.8f};
static const int64_t two_y[2] = {2, 0};

/* FGSM with eps 0.3 on the two examples. */
static void fgsm_two(lsr_model *m, float *adv) {
    CHECK(lsr_fgsm(m, adv, two_x, two_y, 2, 0.3f, 2) == 0, "%s", lsr_last_error());
}

/* FGSM on a linear model is x + eps sign(W^T (p - y)), clipped: to 1e-6 of the hand value. */
static void test_fgsm_closed_form(void) {
    lsr_model m;
    linear_model(&m);
    const float *x = two_x;
    const int64_t *y = two_y;
    float adv[8], want[8];
    fgsm_two(&m, adv);
    fgsm_by_hand(&m, x, y[0], 0.3f, want);
    fgsm_by_hand(&m, x + 4, y[1], 0.3f, want + 4);
    for (int i = 0; i < 8; i++)
        CHECK(fabsf(adv[i] - want[i]) < 1e-6f, "fgsm[%d] = %g, by hand %g", i, (double)adv[i],
              (double)want[i]);
    lsr_model_clear(&m);
}

/* FGSM images stay in [0, 1], and the examples do reach its edges (exact comparisons). */
static void test_fgsm_clips_to_unit_range(void) {
    lsr_model m;
    linear_model(&m);
    float adv[8];
    fgsm_two(&m, adv);
    int clipped = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(adv[i] >= 0.0f && adv[i] <= 1.0f, "fgsm[%d] = %g outside [0, 1]", i, (double)adv[i]);
        clipped += adv[i] == 0.0f || adv[i] == 1.0f;
    }
    CHECK(clipped >= 1, "the test should exercise clipping");
    lsr_model_clear(&m);
}

/* Without labels FGSM attacks the model's own prediction: as by hand, to 1e-6. */
static void test_fgsm_uses_predicted_labels(void) {
    lsr_model m;
    linear_model(&m);
    const float *x = two_x;
    float adv[8], want[8];
    lsr_model_reserve(&m, 2); /* the forward's buffers, as lsr_fgsm leaves them */
    const float *z = lsr_model_forward(&m, x, 1, 0, NULL);
    int64_t pred = 0;
    for (int k = 1; k < 3; k++)
        if (z[k] > z[pred]) pred = k;
    CHECK(lsr_fgsm(&m, adv, x, NULL, 1, 0.1f, 1) == 0, "%s", lsr_last_error());
    fgsm_by_hand(&m, x, pred, 0.1f, want);
    CHECK(memcmp(adv, want, 4 * sizeof(float)) == 0 || fabsf(adv[0] - want[0]) < 1e-6f,
          "fgsm with predicted labels");
    lsr_model_clear(&m);
}

/* An eps above 1 is refused, with a message naming eps. */
static void test_fgsm_refuses_eps_above_1(void) {
    lsr_model m;
    linear_model(&m);
    float adv[8];
    CHECK(lsr_fgsm(&m, adv, two_x, NULL, 1, 1.5f, 1) != 0 && strstr(lsr_last_error(), "eps"),
          "eps > 1 refused");
    lsr_model_clear(&m);
}

/* One adversarial-training step is the hand-mixed SGD step, to 1e-6 (float parameters ~1). */
static void test_adversarial_step(void) {
    /* One step of adversarial training with plain SGD equals
     * -lr ((1 - w) dL(x)/dθ + w dL(FGSM(x))/dθ), FGSM made by the model
     * before the step. */
    lsr_model m, ref;
    linear_model(&m);
    linear_model(&ref);
    lsr_dataset d = {2, 1, 4, 1, 3, NULL, NULL};
    float x[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.95f, 0.05f, 0.2f, 0.8f};
    int64_t y[2] = {2, 0};
    d.x = x;
    d.y = y;
    lsr_train_settings s = lsr_train_settings_default();
    s.epochs = 1;
    s.batch = 2;
    s.optimizer.kind = LSR_OPTIMIZER_SGD;
    s.optimizer.momentum = 0;
    s.optimizer.lr = 0.5f;
    s.loss.smoothing = 0.1f;
    s.adv_eps = 0.2f;
    s.adv_weight = 0.25f;
    /* lsr_train initialises the parameters from the seed: give ref the same start */
    lsr_rng rng;
    lsr_rng_seed(&rng, s.seed);
    lsr_model_init_params(&ref, s.init, &rng);
    float *start = malloc(ref.n_params * sizeof(float));
    memcpy(start, ref.params, ref.n_params * sizeof(float));
    CHECK(lsr_train(&m, &d, &s, NULL, NULL) == LSR_OK, "%s", lsr_last_error());

    float adv[8], dl[6], loss;
    lsr_model_reserve(&ref, 2);
    lsr_fgsm(&ref, adv, x, NULL, 2, 0.2f, 2);
    /* the order of the batch does not matter for the mean loss */
    lsr_model_zero_grads(&ref);
    const float *inputs[2] = {x, adv};
    const float weights[2] = {0.75f, 0.25f};
    for (int pass = 0; pass < 2; pass++) {
        const float *z = lsr_model_forward(&ref, inputs[pass], 2, 1, NULL);
        lsr_cross_entropy(&loss, dl, NULL, z, y, 2, 3, 3, &s.loss);
        for (int i = 0; i < 6; i++)
            dl[i] *= weights[pass];
        lsr_model_backward(&ref, dl, 2, LSR_GRAD_PARAMS);
    }
    double worst = 0;
    for (size_t i = 0; i < ref.n_params; i++)
        worst = fmax(worst, fabs((double)m.params[i] - (start[i] - 0.5 * ref.grads[i])));
    CHECK(worst < 1e-6, "adversarial step differs from the hand computation by %g", worst);
    free(start);
    lsr_model_clear(&m);
    lsr_model_clear(&ref);
}

static double accuracy(lsr_model *m, const float *x, const int64_t *y, int64_t n) {
    lsr_dataset d = {n, 28, 28, 1, 10, (float *)x, (int64_t *)y};
    lsr_metrics mt = {0};
    CHECK(lsr_model_evaluate(&mt, m, &d, 1.0) == LSR_OK, "%s", lsr_last_error());
    return mt.accuracy;
}

/* Records each step's loss at its global index, and counts the steps. */
typedef struct trace {
    float *loss;
    int64_t steps;
} trace;

static lsr_status record_step(void *ctx, const lsr_train_progress *p) {
    trace *t = ctx;
    t->loss[(p->epoch - 1) * p->steps_per_epoch + p->step - 1] = (float)p->step_loss;
    t->steps++;
    return LSR_OK;
}

/* The tutorial's gate: FGSM breaks clean training, adversarial training resists (accuracies). */
static void test_cleverhans_gate(void) {
    /* On Fashion-MNIST: 5000 training examples, 2 epochs; clean accuracy >
     * 0.75 and FGSM (eps 0.3) < 0.25 after clean training, clean > 0.65 and
     * FGSM 0.25 above the clean model's after adversarial training, and two
     * seeded adversarial runs the same to the bit.  Through lsr/train.h. */
    lsr_dataset all, test, train, none;
    if (lsr_dataset_load_dir(&all, &test, LSR_FASHION_MNIST_DIR)) {
        CHECK(0, "Fashion-MNIST is needed (make test installs it): %s", lsr_last_error());
        return;
    }
    CHECK(lsr_dataset_split(&train, &none, &all, 5000, 0, 0) == LSR_OK, "%s", lsr_last_error());
    const int64_t n_test = 2000;
    float *adv = malloc((size_t)n_test * 784 * sizeof(float));
    double clean_acc[2], fgsm_acc[2];
    float *loss[3];
    const int steps = 2 * ((5000 + 127) / 128); /* 2 epochs of ceil(5000 / 128) batches */
    for (int run = 0; run < 3; run++) {
        const int adversarial = run >= 1;
        lsr_model *m = NULL;
        CHECK(lsr_model_create(&m, "cleverhans-cnn", 28, 28, 1, 10) == LSR_OK, "%s",
              lsr_last_error());
        lsr_train_settings s = lsr_train_settings_default();
        s.epochs = 2;
        s.batch = 128;
        s.seed = 5;
        s.init = LSR_INIT_CLEVERHANS;
        s.loss.smoothing = 0.1f;
        if (adversarial) {
            s.adv_eps = 0.3f;
            s.adv_weight = 0.5f;
        }
        loss[run] = calloc((size_t)steps, sizeof(float));
        trace t = {loss[run], 0};
        lsr_train_callbacks cb = {&t, record_step, NULL, NULL, NULL, 0, NULL};
        CHECK(lsr_train(m, &train, &s, &cb, NULL) == LSR_OK, "%s", lsr_last_error());
        CHECK(t.steps == steps && loss[run][steps - 1] > 0, "%lld steps taken, not the run's %d",
              (long long)t.steps, steps);
        if (run < 2) {
            clean_acc[run] = accuracy(m, test.x, test.y, n_test);
            CHECK(lsr_fgsm_generate(adv, m, test.x, NULL, n_test, 0.3f) == LSR_OK, "%s",
                  lsr_last_error());
            fgsm_acc[run] = accuracy(m, adv, test.y, n_test);
            printf("%s training: clean test accuracy %.4f, FGSM (eps 0.3) accuracy %.4f\n",
                   adversarial ? "adversarial" : "clean", clean_acc[run], fgsm_acc[run]);
        }
        lsr_model_free(m);
    }
    CHECK(clean_acc[0] > 0.75, "clean-trained model: clean accuracy %.4f", clean_acc[0]);
    CHECK(fgsm_acc[0] < 0.25, "clean-trained model: FGSM accuracy %.4f is not far below clean",
          fgsm_acc[0]);
    CHECK(clean_acc[1] > 0.65, "adversarially trained model: clean accuracy %.4f", clean_acc[1]);
    CHECK(fgsm_acc[1] > fgsm_acc[0] + 0.25,
          "adversarial training: FGSM accuracy %.4f, not far above the clean model's %.4f",
          fgsm_acc[1], fgsm_acc[0]);
    CHECK(memcmp(loss[1], loss[2], (size_t)steps * sizeof(float)) == 0,
          "two seeded adversarial-training runs differ");
    for (int run = 0; run < 3; run++)
        free(loss[run]);
    free(adv);
    lsr_dataset_free(&all);
    lsr_dataset_free(&test);
    lsr_dataset_free(&train);
    lsr_dataset_free(&none);
}

int main(void) {
    test_fgsm_closed_form();
    test_fgsm_clips_to_unit_range();
    test_fgsm_uses_predicted_labels();
    test_fgsm_refuses_eps_above_1();
    test_adversarial_step();
    test_cleverhans_gate();
    return check_summary();
}
