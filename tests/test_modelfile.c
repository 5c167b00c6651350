#define _DEFAULT_SOURCE
/* Model files (safetensors): a saved model loads back with the same
 * parameters, training settings and logits, to the bit, and corrupt files are
 * refused with a message naming the fault. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/net.h"
#include "scratch.h"
#include "train/train.h"

/* Settings unlike the defaults in every field, as lsr_train records them. */
static lsr_train_settings unusual_settings(void) {
    lsr_train_settings s = lsr_train_settings_default();
    s.epochs = 7;
    s.batch = 33;
    s.seed = 18446744073709551557ull; /* needs all 64 bits */
    s.init = LSR_INIT_GLOROT;
    s.precision = LSR_PRECISION_BF16;
    s.optimizer.kind = LSR_OPTIMIZER_SGD;
    s.optimizer.lr = 0.1f; /* not exact in binary: the float must come back to the bit */
    s.optimizer.momentum = 0.95f;
    s.optimizer.nesterov = 1;
    s.optimizer.weight_decay = 5e-4f;
    s.optimizer.beta1 = 0.8f;
    s.optimizer.beta2 = 0.99f;
    s.optimizer.eps = 1e-7f;
    s.optimizer.schedule = LSR_SCHEDULE_STEP;
    s.optimizer.step_size = 100;
    s.optimizer.gamma = 0.5f;
    s.optimizer.warmup = 10;
    s.optimizer.total_steps = 1000;
    s.loss.smoothing = 0.1f;
    s.loss.convention = LSR_SMOOTHING_OTHERS;
    s.loss.z_loss = 1e-4f;
    s.prior_source = LSR_PRIOR_FILE;
    snprintf(s.prior_file, sizeof s.prior_file, "/some where/prior, with comma.txt");
    s.adv_eps = 0.3f;
    s.adv_weight = 0.25f;
    s.skip_nonfinite = 1;
    snprintf(s.data, sizeof s.data, "data \"quoted\" dir");
    s.train_limit = 1000;
    s.val_samples = 100;
    s.imbalance = 1.0 / 3.0 + 10.0; /* every digit of a double */
    return s;
}

/* Saves a model of spec on 28x28x1 inputs with He parameters drawn from
 * seed into rng (then shifted, the biases too), with unusual settings and a
 * temperature recorded. */
static lsr_model *save_model_file(lsr_rng *rng, const char *spec, uint64_t seed, const char *path) {
    lsr_rng_seed(rng, seed);
    lsr_model *m = NULL;
    CHECK(lsr_model_create(&m, spec, 28, 28, 1, 10) == LSR_OK, "%s", lsr_last_error());
    lsr_model_init_params(m, LSR_INIT_HE, rng);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.01f * (float)(i % 13); /* biases too */
    m->settings = unusual_settings();
    m->has_settings = 1;
    CHECK(lsr_model_set_temperature(m, 1.2345678) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_save(m, path) == LSR_OK, "save: %s", lsr_last_error());
    return m;
}

/* Save and load: the same parameters, settings and logits, bit for bit. */
static void check_round_trip(const char *spec, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    lsr_model *back = NULL;
    lsr_rng rng;
    lsr_model *m = save_model_file(&rng, spec, seed, path);
    lsr_status r = lsr_model_load(&back, path);
    CHECK(r == LSR_OK, "load %s: %s", spec, lsr_last_error());
    if (r) return;
    CHECK(back->n_params == m->n_params &&
              memcmp(back->params, m->params, m->n_params * sizeof(float)) == 0,
          "%s: parameters differ after a round trip", spec);
    const lsr_train_settings *s = lsr_model_settings(back);
    const lsr_train_settings want = unusual_settings();
    char why[512] = "no settings";
    CHECK(s && !lsr_settings_differ(s, &want, why, sizeof why),
          "%s: settings differ after a round trip: %s", spec, why);
    CHECK(s && s->seed == want.seed && s->optimizer.lr == want.optimizer.lr &&
              s->imbalance == want.imbalance && !strcmp(s->data, want.data) &&
              !strcmp(s->prior_file, want.prior_file),
          "%s: settings not exact after a round trip", spec);
    CHECK(fabs(lsr_model_temperature(back) - 1.2345678) < 1e-6, "temperature round trip: %g",
          lsr_model_temperature(back)); /* written with 6 decimals */
    float x[2 * 784];
    for (int i = 0; i < 2 * 784; i++)
        x[i] = (float)lsr_rng_uniform(&rng);
    float a[20], b[20];
    CHECK(lsr_model_predict(a, m, x, 2) == LSR_OK && lsr_model_predict(b, back, x, 2) == LSR_OK,
          "%s", lsr_last_error());
    CHECK(memcmp(a, b, sizeof a) == 0, "%s: logits differ after save and load", spec);
    lsr_model_free(back);
    lsr_model_free(m);
}

/* A model with no settings recorded (never trained) saves and loads without any. */
static void test_untrained_model_has_no_settings(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/u.safetensors", tmpdir);
    lsr_model *m = NULL, *back = NULL;
    CHECK(lsr_model_create(&m, "mlp", 28, 28, 1, 10) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_save(m, path) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_load(&back, path) == LSR_OK, "%s", lsr_last_error());
    CHECK(back && !lsr_model_settings(back) && lsr_model_temperature(back) == 0.0,
          "an untrained model's file has settings or a temperature");
    lsr_model_free(m);
    lsr_model_free(back);
}

/* The cleverhans CNN survives a save and load exactly (a file holds the float bits). */
static void test_cleverhans_cnn_round_trip(void) { check_round_trip("cleverhans-cnn", 0); }

/* LeNet-5 survives a save and load exactly (a file holds the float bits). */
static void test_lenet5_round_trip(void) { check_round_trip("lenet5", 1); }

/* A one-convolution spec survives a save and load exactly (a file holds the float bits). */
static void test_small_conv_round_trip(void) {
    check_round_trip("conv:3:3:1:same,relu,flatten,dense:10", 2);
}

/* Truncated, padded or patched files are refused with a message naming the fault. */
static void test_corrupt_files_refused(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    {
        lsr_rng rng;
        lsr_model_free(save_model_file(&rng, "conv:3:3:1:same,relu,flatten,dense:10", 2, path));
    }
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    struct {
        long cut;
        long patch_at;
        unsigned char value;
        const char *needle;
    } cases[] = {
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
        lsr_model *m = NULL;
        lsr_status r = lsr_model_load(&m, bad);
        CHECK(r == LSR_ERROR_FORMAT && strstr(lsr_last_error(), cases[c].needle),
              "corrupt case %zu: want '%s', got %s '%s'", c, cases[c].needle, lsr_status_name(r),
              r ? lsr_last_error() : "(loaded)");
        CHECK(r == LSR_OK || !m, "a failed load left a model");
        lsr_model_free(m);
    }
}

int main(void) {
    if (scratch_make()) return 1;
    test_cleverhans_cnn_round_trip();
    test_lenet5_round_trip();
    test_small_conv_round_trip();
    test_corrupt_files_refused();
    test_untrained_model_has_no_settings();
    scratch_remove();
    return check_summary();
}
