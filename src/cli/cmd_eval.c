/* lsr eval: a model file on a dataset's test split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../data/dataset.h"
#include "../modelfile/modelfile.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"

int lsr_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model_path = NULL, *data_dir = LSR_FASHION_MNIST_DIR;
    int json = 0;
    long long threads = 0;
    char err[LSR_ERR_LEN];
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
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads, err))
                return cli_error("eval", err);
            break;
        case 'h':
            printf(
                "usage: lsr eval --model FILE [--data DIR] [--json] [--threads T]\n"
                "  top-1, top-5, NLL, ECE and MCE (%d bins), Brier score, confidence - accuracy\n"
                "  on the test split of DIR (default " LSR_FASHION_MNIST_DIR ")\n",
                LSR_CALIBRATION_BINS);
            return 0;
        default:
            return cli_flag_error("eval", c, argv);
        }
    }
    if (optind < argc) return cli_argument_error("eval", argv[optind]);
    if (!model_path) return cli_error("eval", "--model FILE is required");
    cli_set_threads((int)threads);
    lsr_model model;
    lsr_metadata md;
    if (lsr_model_load(&model, &md, model_path, err)) return cli_error("eval", err);
    const char *temp = lsr_metadata_get(&md, "temperature");
    const double temperature = temp ? atof(temp) : 1.0;
    lsr_dataset train, test;
    if (lsr_data_load_dir(&train, &test, data_dir, err)) {
        lsr_model_free(&model);
        return cli_error("eval", err);
    }
    lsr_dataset_free(&train);
    int status = 1;
    float *logits = malloc((size_t)(test.n ? test.n : 1) * model.classes * sizeof(float));
    char what[4200];
    snprintf(what, sizeof what, "--data %s", data_dir);
    if (!logits) {
        snprintf(err, sizeof err, "out of memory");
    } else if (lsr_check_model_data(&model, &test, what, err) == 0 &&
               lsr_predict(&model, &test, logits, CLI_PREDICT_BATCH, err) == 0) {
        lsr_metrics mt, scaled;
        lsr_metrics_compute(&mt, logits, test.y, test.n, model.classes, 1.0);
        if (temp) lsr_metrics_compute(&scaled, logits, test.y, test.n, model.classes, temperature);
        if (json && temp) {
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
            if (temp) {
                char title[64];
                snprintf(title, sizeof title, "after temperature scaling, T = %.4f", temperature);
                cli_print_metrics(&scaled, 0, title);
            }
        }
        status = 0;
    }
    if (status) cli_error("eval", err);
    free(logits);
    lsr_model_free(&model);
    lsr_dataset_free(&test);
    return status;
}
