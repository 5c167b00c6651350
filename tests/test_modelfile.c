#define _DEFAULT_SOURCE
/* Model files (safetensors): a saved model loads back with the same
 * parameters, metadata and logits, to the bit, and corrupt files are
 * refused with a message naming the fault. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "modelfile/modelfile.h"
#include "net/net.h"
#include "scratch.h"

static char err[LSR_ERR_LEN];

/* Saves a model of spec on 28x28x1 inputs with He parameters drawn from
 * seed into rng (then shifted, the biases too), metadata smoothing=0.1. */
static void save_model_file(lsr_model *m, lsr_rng *rng, const char *spec, uint64_t seed,
                            const char *path) {
    lsr_rng_seed(rng, seed);
    CHECK(lsr_model_init(m, spec, (lsr_shape){28, 28, 1}, 10, err) == 0, "%s", err);
    lsr_model_init_params(m, LSR_INIT_HE, rng);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.01f * (float)(i % 13); /* biases too */
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "smoothing", "0.1");
    CHECK(lsr_model_save(m, &md, path, err) == 0, "save: %s", err);
}

/* Save and load: the same parameters, metadata and logits, bit for bit. */
static void check_round_trip(const char *spec, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    lsr_model m, back;
    lsr_rng rng;
    save_model_file(&m, &rng, spec, seed, path);
    lsr_metadata md2;
    int r = lsr_model_load(&back, &md2, path, err);
    CHECK(r == 0, "load %s: %s", spec, err);
    if (r) return;
    CHECK(back.n_params == m.n_params &&
              memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0,
          "%s: parameters differ after a round trip", spec);
    CHECK(strcmp(lsr_metadata_get(&md2, "smoothing"), "0.1") == 0, "metadata round trip");
    float x[2 * 784];
    for (int i = 0; i < 2 * 784; i++)
        x[i] = (float)lsr_rng_uniform(&rng);
    lsr_model_reserve(&m, 2, err);
    lsr_model_reserve(&back, 2, err);
    float a[20];
    memcpy(a, lsr_model_forward(&m, x, 2, 0, NULL), sizeof a);
    CHECK(memcmp(a, lsr_model_forward(&back, x, 2, 0, NULL), sizeof a) == 0,
          "%s: logits differ after save and load", spec);
    lsr_model_free(&back);
    lsr_model_free(&m);
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
        lsr_model m;
        lsr_rng rng;
        save_model_file(&m, &rng, "conv:3:3:1:same,relu,flatten,dense:10", 2, path);
        lsr_model_free(&m);
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
        lsr_model m;
        int r = lsr_model_load(&m, NULL, bad, err);
        CHECK(r != 0 && strstr(err, cases[c].needle), "corrupt case %zu: want '%s', got '%s'", c,
              cases[c].needle, r ? err : "(loaded)");
        if (!r) lsr_model_free(&m);
    }
}

int main(void) {
    if (scratch_make()) return 1;
    test_cleverhans_cnn_round_trip();
    test_lenet5_round_trip();
    test_small_conv_round_trip();
    test_corrupt_files_refused();
    scratch_remove();
    return check_summary();
}
