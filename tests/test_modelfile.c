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

/* Every field of a and b, compared one by one (not through the record that
 * is under test): the number of fields that differ. */
static int settings_fields_differ(const lsr_train_settings *a, const lsr_train_settings *b) {
    const lsr_optimizer_settings *p = &a->optimizer, *q = &b->optimizer;
    return (a->epochs != b->epochs) + (a->batch != b->batch) + (a->seed != b->seed) +
           (a->init != b->init) + (a->precision != b->precision) + (p->kind != q->kind) +
           (p->lr != q->lr) + (p->momentum != q->momentum) + (p->nesterov != q->nesterov) +
           (p->weight_decay != q->weight_decay) + (p->beta1 != q->beta1) + (p->beta2 != q->beta2) +
           (p->eps != q->eps) + (p->schedule != q->schedule) + (p->step_size != q->step_size) +
           (p->gamma != q->gamma) + (p->warmup != q->warmup) + (p->total_steps != q->total_steps) +
           (a->loss.smoothing != b->loss.smoothing) + (a->loss.convention != b->loss.convention) +
           (a->loss.z_loss != b->loss.z_loss) + (a->prior_source != b->prior_source) +
           (strcmp(a->prior_file, b->prior_file) != 0) + (a->adv_eps != b->adv_eps) +
           (a->adv_weight != b->adv_weight) + (a->skip_nonfinite != b->skip_nonfinite) +
           (strcmp(a->data, b->data) != 0) + (a->train_limit != b->train_limit) +
           (a->val_samples != b->val_samples) + (a->imbalance != b->imbalance);
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
    const int fields = s ? settings_fields_differ(s, &want) : -1;
    CHECK(fields == 0, "%s: %d settings fields differ after a round trip", spec, fields);
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

/* Writes a file of a 10-class MLP's parameters with md's other entries. */
static void write_with_metadata(const char *path, lsr_metadata *md) {
    lsr_model *m = NULL;
    CHECK(lsr_model_create(&m, "flatten,dense:10", 28, 28, 1, 10) == LSR_OK, "%s",
          lsr_last_error());
    CHECK(lsr_model_write(m, md, path) == LSR_OK, "%s", lsr_last_error());
    lsr_model_free(m);
}

/* A model file of an earlier lsr (no settings_version, the prior file's path
 * in smoothing_prior) loads with its settings and the defaults for the rest,
 * and saved again (calibrated) keeps its entries as they were. */
static void test_old_model_file(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/old.safetensors", tmpdir);
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "epochs", "3");
    lsr_metadata_set(&md, "lr", "0.01");
    lsr_metadata_set(&md, "smoothing_prior", "/data/prior.txt");
    lsr_metadata_set(&md, "an_old_key", "kept");
    write_with_metadata(path, &md);
    lsr_model *m = NULL;
    CHECK(lsr_model_load(&m, path) == LSR_OK, "%s", lsr_last_error());
    if (!m) return;
    const lsr_train_settings *s = lsr_model_settings(m);
    lsr_train_settings want = lsr_train_settings_default();
    want.epochs = 3;
    want.optimizer.lr = 0.01f;
    want.prior_source = LSR_PRIOR_FILE;
    snprintf(want.prior_file, sizeof want.prior_file, "/data/prior.txt");
    const int fields = s ? settings_fields_differ(s, &want) : -1;
    CHECK(fields == 0, "an old file's settings: %d fields differ", fields);
    CHECK(lsr_model_set_temperature(m, 1.5) == LSR_OK && lsr_model_save(m, path) == LSR_OK, "%s",
          lsr_last_error());
    lsr_model_free(m);
    lsr_model back;
    lsr_metadata again;
    CHECK(lsr_model_read(&back, &again, path) == LSR_OK, "%s", lsr_last_error());
    lsr_model_clear(&back);
    const char *old = lsr_metadata_get(&again, "smoothing_prior");
    const char *kept = lsr_metadata_get(&again, "an_old_key");
    const char *t = lsr_metadata_get(&again, "temperature");
    CHECK(old && !strcmp(old, "/data/prior.txt") && kept && !strcmp(kept, "kept") && t &&
              !strcmp(t, "1.500000") && !lsr_metadata_get(&again, "settings_version") &&
              !lsr_metadata_get(&again, "momentum"),
          "calibrating an old file changed its entries");
}

/* Class names: kept through save, load and a calibration's save; removed
 * with NULL; bad names refused (empty, too long, a control character,
 * twice the same, too many bytes for the file) with the model unchanged;
 * a file whose class_names is malformed is refused naming the key. */
static void test_class_names(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/names.safetensors", tmpdir);
    lsr_model *m = NULL, *back = NULL;
    CHECK(lsr_model_create(&m, "flatten,dense:3", 2, 2, 1, 3) == LSR_OK, "%s", lsr_last_error());
    if (!m) return;
    CHECK(!lsr_model_class_name(m, 0), "a new model has class names");
    const char *names[3] = {"T-shirt/top", "caf\xc3\xa9 \"quoted\"", "Ankle boot"};
    CHECK(lsr_model_set_class_names(m, names) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_save(m, path) == LSR_OK && lsr_model_load(&back, path) == LSR_OK, "%s",
          lsr_last_error());
    for (int k = 0; back && k < 3; k++)
        CHECK(lsr_model_class_name(back, k) && !strcmp(lsr_model_class_name(back, k), names[k]),
              "class %d's name after a round trip: %s", k, lsr_model_class_name(back, k));
    CHECK(!lsr_model_class_name(back, 3) && !lsr_model_class_name(back, -1),
          "a class out of range has a name");
    /* saved again as loaded (a calibration): the names stay */
    CHECK(back && lsr_model_set_temperature(back, 2.0) == LSR_OK &&
              lsr_model_save(back, path) == LSR_OK,
          "%s", lsr_last_error());
    lsr_model_free(back);
    back = NULL;
    CHECK(lsr_model_load(&back, path) == LSR_OK && lsr_model_class_name(back, 2) &&
              !strcmp(lsr_model_class_name(back, 2), "Ankle boot"),
          "a calibrated file lost its class names");
    /* removed: the file has none */
    CHECK(back && lsr_model_set_class_names(back, NULL) == LSR_OK &&
              lsr_model_save(back, path) == LSR_OK,
          "%s", lsr_last_error());
    lsr_model_free(back);
    back = NULL;
    CHECK(lsr_model_load(&back, path) == LSR_OK && !lsr_model_class_name(back, 0),
          "removed class names came back");
    lsr_model_free(back);
    char long_name[LSR_CLASS_NAME_MAX + 1];
    memset(long_name, 'x', LSR_CLASS_NAME_MAX);
    long_name[LSR_CLASS_NAME_MAX] = '\0';
    const char *bad[7][3] = {{"a", "", "c"},     {"a", long_name, "c"}, {"a", "b\nc", "c"},
                             {"a", "b", "a"},    {"a", NULL, "c"},      {"a", "b\xff", "c"},
                             {"a", "\xc3(", "c"}};
    const char *why[7] = {"empty", "too long", "control character", "both named", "missing",
                          "UTF-8", "UTF-8"};
    for (int i = 0; i < 7; i++) {
        const lsr_status st = lsr_model_set_class_names(m, bad[i]);
        CHECK(st == LSR_ERROR_OPTION && strstr(lsr_last_error(), why[i]) &&
                  !strcmp(lsr_model_class_name(m, 0), names[0]),
              "bad names %d: %s '%s'", i, lsr_status_name(st), lsr_last_error());
    }
    lsr_model_free(m);
    /* 200 classes of 62-byte names do not fit a model file's 1023 bytes */
    CHECK(lsr_model_create(&m, "flatten,dense:200", 2, 2, 1, 200) == LSR_OK, "%s",
          lsr_last_error());
    static char many[200][LSR_CLASS_NAME_MAX];
    const char *list[200];
    for (int k = 0; k < 200; k++) {
        snprintf(many[k], sizeof many[k], "%062d", k);
        list[k] = many[k];
    }
    lsr_status st = m ? lsr_model_set_class_names(m, list) : LSR_ERROR_NULL_ARGUMENT;
    CHECK(st == LSR_ERROR_OPTION && strstr(lsr_last_error(), "at most 1023"),
          "names too long for the file: %s '%s'", lsr_status_name(st), lsr_last_error());
    lsr_model_free(m);
    /* 100000 classes (a vocabulary): refused at once, whatever the names */
    CHECK(lsr_model_create(&m, "flatten,dense:100000", 1, 1, 1, 100000) == LSR_OK, "%s",
          lsr_last_error());
    /* 100000 names, all "x": were the count not refused first, the names would be
     * ("both named") */
    const char **same = malloc(100000 * sizeof *same);
    for (int k = 0; same && k < 100000; k++)
        same[k] = "x";
    st = m && same ? lsr_model_set_class_names(m, same) : LSR_ERROR_NULL_ARGUMENT;
    CHECK(st == LSR_ERROR_OPTION && strstr(lsr_last_error(), "at most 1023"),
          "names of 100000 classes: %s '%s'", lsr_status_name(st), lsr_last_error());
    free(same);
    lsr_model_free(m);
    /* files whose class_names is not 3 names */
    const char *broken[3] = {"[\"a\",\"b\"]", "{\"a\": 1}", "[\"a\",\"b\",\"b\"]"};
    for (int i = 0; i < 3; i++) {
        lsr_metadata md = {0};
        lsr_metadata_set(&md, "class_names", "%s", broken[i]);
        lsr_model *w = NULL;
        CHECK(lsr_model_create(&w, "flatten,dense:3", 2, 2, 1, 3) == LSR_OK &&
                  lsr_model_write(w, &md, path) == LSR_OK,
              "%s", lsr_last_error());
        lsr_model_free(w);
        back = NULL;
        st = lsr_model_load(&back, path);
        CHECK(st == LSR_ERROR_FORMAT && strstr(lsr_last_error(), "class_names") && !back,
              "class_names %s: %s '%s'", broken[i], lsr_status_name(st), lsr_last_error());
    }
}

/* Settings of a later version, and checkpoints of the earlier format, are
 * refused with a message naming the version. */
static void test_other_versions_refused(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/v2.safetensors", tmpdir);
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "settings_version", "2");
    write_with_metadata(path, &md);
    lsr_model *m = NULL;
    lsr_status st = lsr_model_load(&m, path);
    CHECK(st == LSR_ERROR_FORMAT && strstr(lsr_last_error(), "version 2") && !m,
          "settings version 2: %s '%s'", lsr_status_name(st), lsr_last_error());
    snprintf(path, sizeof path, "%s/old.ckpt", tmpdir);
    lsr_metadata old = {0};
    lsr_metadata_set(&old, "format", "lsr-checkpoint-1");
    CHECK(lsr_safetensors_write(path, &old, NULL, 0) == LSR_OK, "%s", lsr_last_error());
    lsr_train_settings s;
    st = lsr_checkpoint_load(NULL, NULL, &s, NULL, path);
    CHECK(st == LSR_ERROR_FORMAT && strstr(lsr_last_error(), "format lsr-checkpoint-1") &&
              strstr(lsr_last_error(), "remove it"),
          "an lsr-checkpoint-1 file: %s '%s'", lsr_status_name(st), lsr_last_error());
}

int main(void) {
    if (scratch_make()) return 1;
    test_cleverhans_cnn_round_trip();
    test_lenet5_round_trip();
    test_small_conv_round_trip();
    test_corrupt_files_refused();
    test_untrained_model_has_no_settings();
    test_old_model_file();
    test_other_versions_refused();
    test_class_names();
    scratch_remove();
    return check_summary();
}
