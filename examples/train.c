/*
 * examples/train.c - the trainer as a library: one epoch of an MLP on
 * Fashion-MNIST with label smoothing 0.1, evaluated on the test split, saved.
 *
 *     cc train.c $(pkg-config --cflags --libs lsr) -o train
 *     ./train [MODEL_OUT [DATA_DIR]]
 *
 * MODEL_OUT defaults to example-mlp.safetensors, DATA_DIR to where Debian's
 * dataset-fashion-mnist puts it.  Exits 1 on an error or when the test
 * accuracy is below 0.80.
 */
#include <stdio.h>

#include <lsr/train.h>

static lsr_status on_epoch(void *ctx, const lsr_train_progress *p) {
    (void)ctx;
    printf("epoch %d/%d: loss %.4f, train accuracy %.4f, %.1f s\n", p->epoch, p->epochs, p->loss,
           p->accuracy, p->seconds);
    return LSR_OK;
}

int main(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "example-mlp.safetensors";
    const char *dir = argc > 2 ? argv[2] : LSR_FASHION_MNIST_DIR;
    lsr_dataset train = {0}, test = {0};
    lsr_model *model = NULL;
    lsr_metrics m = {0};
    lsr_train_callbacks cb = {0};
    cb.epoch = on_epoch;

    lsr_train_settings s = lsr_train_settings_default(); /* Adam 1e-3, batch 128, seed 0 */
    s.epochs = 1;
    s.loss.smoothing = 0.1f;
    snprintf(s.data, sizeof s.data, "%s", dir); /* recorded in the model file */

    lsr_status st = lsr_dataset_load_dir(&train, &test, dir);
    if (st == LSR_OK) {
        printf("%lld training and %lld test samples of %dx%dx%d, %d classes\n", (long long)train.n,
               (long long)test.n, train.h, train.w, train.c, train.classes);
        st = lsr_model_create(&model, "mlp", train.h, train.w, train.c, train.classes);
    }
    if (st == LSR_OK) st = lsr_train(model, &train, &s, &cb, NULL);
    if (st == LSR_OK) st = lsr_model_evaluate(&m, model, &test, 1.0);
    if (st == LSR_OK) st = lsr_model_save(model, out);
    if (st == LSR_OK) {
        printf("test: accuracy %.4f, NLL %.4f, ECE %.4f (%zu parameters, saved to %s)\n",
               m.accuracy, m.nll, m.ece, lsr_model_param_count(model), out);
        if (m.accuracy < 0.80) fprintf(stderr, "train: test accuracy below 0.80\n");
    } else {
        fprintf(stderr, "train: %s: %s\n", lsr_status_name(st), lsr_last_error());
    }

    int failed = st != LSR_OK || m.accuracy < 0.80;
    lsr_model_free(model);
    lsr_dataset_free(&train);
    lsr_dataset_free(&test);
    return failed;
}
