/* lsr eval: a model file on a dataset's test split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

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
    if (lsr_check_model_data(model, &test, what) == LSR_OK &&
        lsr_model_evaluate(&mt, model, &test, 1.0) == LSR_OK &&
        (temperature == 0 || lsr_model_evaluate(&scaled, model, &test, temperature) == LSR_OK)) {
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
        status = 0;
    }
    if (status) cli_error("eval", lsr_last_error());
    lsr_model_free(model);
    lsr_dataset_free(&test);
    return status;
}
