/* Training on real data (Debian's Fashion-MNIST, which `make test` installs):
 * a short run must clearly learn, in fp32 and in bf16; the same seed must
 * give the same loss sequence, and 1, 2 and 3 threads the same losses and
 * weights in fp32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/dataset.h"
#include "metrics/metrics.h"
#include "net/net.h"
#include "threads.h"
#include "train/train.h"

static char err[LSR_ERR_LEN];

/* Fashion-MNIST, and its first 4096 training and 2000 test images. */
static lsr_dataset train, test, small, small_test;

static lsr_train_settings settings(int epochs, int batch, float eps) {
    lsr_train_settings s;
    memset(&s, 0, sizeof s);
    s.epochs = epochs;
    s.batch = batch;
    s.seed = 1;
    s.init = LSR_INIT_CLEVERHANS;
    s.optimizer = lsr_optimizer_defaults();
    s.loss = lsr_loss_options_default();
    s.loss.smoothing = eps;
    return s;
}

/* Test accuracy of m on d (whose labels are in [0, 10)). */
static double test_accuracy(lsr_model *m, const lsr_dataset *d) {
    float *logits = malloc((size_t)d->n * 10 * sizeof(float));
    CHECK(lsr_predict(m, d, logits, 256, err) == 0, "%s", err);
    lsr_metrics mt;
    lsr_metrics_compute(&mt, logits, d->y, d->n, 10, 1.0);
    free(logits);
    return mt.accuracy;
}

static int subset(lsr_dataset *out, const lsr_dataset *in, int64_t n) {
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    int r = lsr_dataset_subset(out, in, idx, n, err);
    free(idx);
    return r;
}

/* The data set read is Fashion-MNIST's: 60000 + 10000 images of 28x28, 10 classes (exact). */
static void test_fashion_mnist_shape(void) {
    CHECK(train.n == 60000 && test.n == 10000 && train.h == 28 && train.classes == 10,
          "Fashion-MNIST shape: %lld/%lld %dx%d, %d classes", (long long)train.n, (long long)test.n,
          train.h, train.w, train.classes);
}

/* The CNN learns (accuracy > 0.70, chance 0.1) in fp32 and bf16, within 0.03 (bf16 noise). */
static void test_cnn_learns_in_fp32_and_bf16(void) {
    /* Learning: 256 steps of the tutorial CNN with eps = 0.1 on 4096 images,
     * in fp32, then with bf16 convolutions (where the CPU has AVX512_BF16):
     * as well as fp32, and the same seed twice gives the same losses. */
    set_threads(2);
    double acc[2] = {0, 0};
    float *trace[3] = {NULL, NULL, NULL};
    const int steps = 2 * 4096 / 32;
    for (int run = 0; run < 3; run++) {
        const lsr_precision precision = run ? LSR_PRECISION_BF16 : LSR_PRECISION_FP32;
        lsr_model m;
        lsr_train_settings s = settings(2, 32, 0.1f);
        trace[run] = calloc((size_t)steps, sizeof(float));
        CHECK(lsr_model_init(&m, "cleverhans-cnn", (lsr_shape){28, 28, 1}, 10, err) == 0, "%s",
              err);
        if (lsr_model_set_precision(&m, precision, err)) {
            printf("bf16 training not checked: %s\n", err);
            lsr_model_free(&m);
            break;
        }
        CHECK(lsr_train(&m, &small, &s, NULL, NULL, trace[run], err) == 0, "train: %s", err);
        CHECK(lsr_model_set_precision(&m, LSR_PRECISION_FP32, err) == 0, "%s", err);
        if (run < 2) {
            acc[run] = test_accuracy(&m, &small_test);
            printf(
                "cleverhans-cnn, %s, 256 steps on 4096 images: test accuracy %.4f (chance 0.1)\n",
                run ? "bf16" : "fp32", acc[run]);
            CHECK(acc[run] > 0.70, "after 256 steps the test accuracy is only %.4f", acc[run]);
        }
        lsr_model_free(&m);
    }
    set_threads(2);
    if (acc[1] > 0) {
        CHECK(fabs(acc[1] - acc[0]) < 0.03, "bf16 %.4f and fp32 %.4f differ", acc[1], acc[0]);
        CHECK(memcmp(trace[1], trace[2], (size_t)steps * sizeof(float)) == 0,
              "bf16: the same seed gave different loss sequences");
        CHECK(memcmp(trace[0], trace[1], (size_t)steps * sizeof(float)) != 0,
              "bf16 training gave exactly the fp32 losses: it did not run in bf16");
        /* 1 vs 2 threads is not checked in bf16: oneDNN chooses its
         * kernels and their blocking by the thread count, and does not
         * promise the same sums (the README says so) */
    }
    for (int run = 0; run < 3; run++)
        free(trace[run]);
}

/* Same seed, or 1 or 3 threads instead of 2: the same losses and weights, to the bit (fp32). */
static void test_training_is_reproducible(void) {
    lsr_dataset tiny;
    subset(&tiny, &train, 640);
    const int steps = 2 * 640 / 64, threads[4] = {2, 2, 1, 3};
    float *trace[4], *weights[4];
    size_t n_params = 0;
    for (int run = 0; run < 4; run++) {
        set_threads(threads[run]);
        lsr_model m;
        lsr_train_settings s = settings(2, 64, 0.1f);
        lsr_model_init(&m, "cleverhans-cnn", (lsr_shape){28, 28, 1}, 10, err);
        trace[run] = calloc((size_t)steps, sizeof(float));
        CHECK(lsr_train(&m, &tiny, &s, NULL, NULL, trace[run], err) == 0, "%s", err);
        n_params = m.n_params;
        weights[run] = malloc(n_params * sizeof(float));
        memcpy(weights[run], m.params, n_params * sizeof(float));
        lsr_model_free(&m);
    }
    set_threads(2);
    for (int run = 1; run < 4; run++) {
        int losses = 0;
        size_t params = 0;
        for (int i = 0; i < steps; i++)
            losses += memcmp(&trace[run][i], &trace[0][i], sizeof(float)) != 0;
        for (size_t i = 0; i < n_params; i++)
            params += memcmp(&weights[run][i], &weights[0][i], sizeof(float)) != 0;
        printf("%d vs 2 threads: %d of %d step losses and %zu of %zu weights differ\n",
               threads[run], losses, steps, params, n_params);
        CHECK(losses == 0 && params == 0, "%s: %d step losses and %zu weights differ",
              run == 1 ? "the same seed twice" : "another thread count", losses, params);
    }
    CHECK(trace[0][steps - 1] < trace[0][0], "the loss did not go down: %g -> %g",
          (double)trace[0][0], (double)trace[0][steps - 1]);
    for (int run = 0; run < 4; run++) {
        free(trace[run]);
        free(weights[run]);
    }
    lsr_dataset_free(&tiny);
}

/* The MLP preset with the data prior learns too (accuracy > 0.65 after 64 steps, chance 0.1). */
static void test_mlp_with_data_prior_learns(void) {
    set_threads(2);
    lsr_model m;
    lsr_train_settings s = settings(1, 64, 0.2f);
    float prior[10] = {0};
    for (int64_t i = 0; i < small.n; i++)
        prior[small.y[i]] += 1.0f / (float)small.n;
    s.loss.prior = prior;
    s.init = LSR_INIT_HE;
    lsr_model_init(&m, "mlp", (lsr_shape){28, 28, 1}, 10, err);
    CHECK(lsr_train(&m, &small, &s, NULL, NULL, NULL, err) == 0, "%s", err);
    const double acc = test_accuracy(&m, &small_test);
    printf("mlp, 64 steps, data prior: test accuracy %.4f\n", acc);
    CHECK(acc > 0.65, "mlp test accuracy %.4f", acc);
    lsr_model_free(&m);
}

int main(void) {
    if (lsr_data_load_dir(&train, &test, LSR_FASHION_MNIST_DIR, err)) {
        fprintf(stderr, "%s (make test installs dataset-fashion-mnist)\n", err);
        CHECK(0, "Fashion-MNIST is needed: %s", err);
        return check_summary();
    }
    subset(&small, &train, 4096);
    subset(&small_test, &test, 2000);
    test_fashion_mnist_shape();
    test_cnn_learns_in_fp32_and_bf16();
    test_training_is_reproducible();
    test_mlp_with_data_prior_learns();
    lsr_dataset_free(&small);
    lsr_dataset_free(&small_test);
    lsr_dataset_free(&train);
    lsr_dataset_free(&test);
    return check_summary();
}
