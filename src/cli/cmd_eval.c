/* lsr eval: a model file on a dataset's test split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../metrics/metrics.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"

/* s, then spaces up to width columns (printf's %-16s would count bytes). */
static void print_padded(const char *s, int width) {
    const int pad = width - cli_text_columns(s);
    printf("%s%*s", s, pad > 0 ? pad : 0, "");
}

/* Per class, from the model's logits (n, k) on test: its test examples, the
 * share right, and the class it is most often taken for, by name. */
static lsr_status print_per_class(const lsr_model *m, const float *logits, const lsr_dataset *test,
                                  const char *data_dir) {
    const int k = lsr_model_classes(m);
    int64_t *pred = malloc((size_t)(test->n ? test->n : 1) * sizeof(int64_t));
    int64_t *confusion = calloc((size_t)k * (size_t)k, sizeof(int64_t)); /* [true][predicted] */
    const lsr_status st =
        pred && confusion ? LSR_OK : lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        lsr_top1(logits, test->y, test->n, k, pred);
        for (int64_t i = 0; i < test->n; i++)
            confusion[test->y[i] * k + pred[i]]++;
        const char *const *data_names = cli_data_class_names(data_dir, k);
        char name[LSR_CLASS_NAME_MAX], other[LSR_CLASS_NAME_MAX];
        int width = 16; /* the widest name's columns: every row's numbers line up */
        for (int c = 0; c < k; c++) {
            const int columns =
                cli_text_columns(cli_class_label(name, sizeof name, m, data_names, c));
            if (columns > width) width = columns;
        }
        printf("per class: accuracy, and the class most often predicted instead\n");
        for (int c = 0; c < k; c++) {
            int64_t n = 0, worst = -1;
            for (int p = 0; p < k; p++) {
                n += confusion[c * k + p];
                if (p != c && confusion[c * k + p] > 0 &&
                    (worst < 0 || confusion[c * k + p] > confusion[c * k + worst]))
                    worst = p;
            }
            cli_class_label(name, sizeof name, m, data_names, c);
            printf("  ");
            print_padded(name, width);
            if (!n) { /* said, not left out: a missing row reads as a lost class */
                printf(" no test examples\n");
                continue;
            }
            printf(" %.4f of %6lld", (double)confusion[c * k + c] / (double)n, (long long)n);
            if (worst >= 0)
                printf("  %s (%.1f %%)",
                       cli_class_label(other, sizeof other, m, data_names, (int)worst),
                       100.0 * (double)confusion[c * k + worst] / (double)n);
            printf("\n");
        }
    }
    free(pred);
    free(confusion);
    return st;
}

int lsr_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model_path = NULL, *data_dir = LSR_FASHION_MNIST_DIR;
    int json = 0;
    long long threads = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 't':
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return cli_error("eval", lsr_last_error());
            break;
        case 'h':
            printf(
                "usage: lsr eval --model FILE [--data DIR] [--json] [--threads T]\n"
                "  top-1, top-5, NLL, ECE and MCE (%d bins), Brier score, confidence - accuracy\n"
                "  on the test split of DIR (default " LSR_FASHION_MNIST_DIR "), and (not\n"
                "  with --json) each class's accuracy and what it is most often taken for\n",
                LSR_CALIBRATION_BINS);
            return 0;
        default:
            return cli_flag_error("eval", c, argv);
        }
    }
    if (optind < argc) return cli_argument_error("eval", argv[optind]);
    if (!model_path) return cli_error("eval", "--model FILE is required");
    cli_set_threads((int)threads);
    lsr_model *model = NULL;
    if (lsr_model_load(&model, model_path)) return cli_error("eval", lsr_last_error());
    const double temperature = lsr_model_temperature(model); /* 0: none fitted */
    lsr_dataset train, test;
    if (cli_load_data(&train, &test, data_dir)) {
        lsr_model_free(model);
        return cli_error("eval", lsr_last_error());
    }
    lsr_dataset_free(&train);
    int status = 1;
    char what[4200];
    snprintf(what, sizeof what, "--data %s", data_dir);
    lsr_metrics mt, scaled;
    const int k = lsr_model_classes(model);
    /* one forward pass: the metrics before and after T and the per-class table */
    float *logits = malloc((size_t)(test.n ? test.n : 1) * (size_t)k * sizeof(float));
    if (!logits) lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    if (logits && lsr_check_model_data(model, &test, what) == LSR_OK &&
        lsr_model_predict(logits, model, test.x, test.n) == LSR_OK &&
        lsr_metrics_compute(&mt, logits, test.y, test.n, k, 1.0) == LSR_OK &&
        (temperature == 0 ||
         lsr_metrics_compute(&scaled, logits, test.y, test.n, k, temperature) == LSR_OK)) {
        if (json && temperature > 0) {
            printf("{\"temperature\": %.6f, \"before\": ", temperature);
            fflush(stdout);
            cli_print_metrics(&mt, 2, NULL);
            printf(", \"after\": ");
            cli_print_metrics(&scaled, 2, NULL);
            printf(
                ", \"n\": %lld, \"accuracy\": %.6f, \"top5\": %.6f, \"nll\": %.6f, \"ece\": %.6f, "
                "\"mce\": %.6f, \"brier\": %.6f}\n",
                (long long)mt.n, scaled.accuracy, scaled.top5, scaled.nll, scaled.ece, scaled.mce,
                scaled.brier);
        } else {
            cli_print_metrics(&mt, json, "test evaluation");
            if (temperature > 0) {
                char title[64];
                snprintf(title, sizeof title, "after temperature scaling, T = %.4f", temperature);
                cli_print_metrics(&scaled, 0, title);
            }
        }
        status = json ? 0 : print_per_class(model, logits, &test, data_dir) != LSR_OK;
    }
    if (status) cli_error("eval", lsr_last_error());
    free(logits);
    lsr_model_free(model);
    lsr_dataset_free(&test);
    return status;
}
