/* lsr calibrate: temperature scaling.  Fits one T > 0 minimising the NLL of
 * softmax(z / T) on the validation examples the model was trained without
 * (lsr train --val N), and stores it in the model file's metadata. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"

int lsr_cmd_calibrate(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *data_dir = NULL;
    long long threads = 0;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 't':
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return cli_error("calibrate", lsr_last_error());
            break;
        case 'h':
            printf(
                "usage: lsr calibrate --model FILE [--data DIR] [--threads T]\n"
                "  fits the temperature T minimising the validation NLL of softmax(z / T) on the\n"
                "  examples held out by 'lsr train --val N' and stores it in FILE; lsr eval then\n"
                "  reports the metrics before and after.  DIR defaults to the training data.\n");
            return 0;
        default:
            return cli_flag_error("calibrate", c, argv);
        }
    }
    if (optind < argc) return cli_argument_error("calibrate", argv[optind]);
    if (!model_path) return cli_error("calibrate", "--model FILE is required");
    if (lsr_check_writable(model_path, "--model")) return cli_error("calibrate", lsr_last_error());
    cli_set_threads((int)threads);
    lsr_model *model = NULL;
    if (lsr_model_load(&model, model_path)) return cli_error("calibrate", lsr_last_error());
    const lsr_train_settings *s = lsr_model_settings(model);
    if (!data_dir && s) data_dir = s->data;
    int status = 1;
    lsr_dataset all = {0}, train = {0}, val = {0};
    float *logits = NULL;
    if (!s || s->val_samples <= 0 || !data_dir[0]) {
        lsr__fail(LSR_ERROR_OPTION,
                  "%s: trained without a validation split; train with --val N to "
                  "hold out examples for calibration",
                  model_path);
        goto out;
    }
    /* the examples the run held out: its split, made again */
    if (cli_load_data(&all, NULL, data_dir) || lsr_train_split(&train, &val, &all, s) ||
        lsr_check_model_data(model, &val, "validation data"))
        goto out;
    const int k = lsr_model_classes(model);
    logits = malloc((size_t)val.n * k * sizeof(float));
    if (!logits) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    double t;
    lsr_metrics before, after;
    if (lsr_model_predict(logits, model, val.x, val.n) ||
        lsr_temperature_fit(&t, logits, val.y, val.n, k) ||
        lsr_metrics_compute(&before, logits, val.y, val.n, k, 1.0) ||
        lsr_metrics_compute(&after, logits, val.y, val.n, k, t))
        goto out;
    printf("temperature %.4f fitted on %lld validation examples\n"
           "  validation NLL %.4f -> %.4f, ECE %.4f -> %.4f\n",
           t, (long long)val.n, before.nll, after.nll, before.ece, after.ece);
    if (lsr_model_set_temperature(model, t) || lsr_model_save(model, model_path)) goto out;
    status = 0;
out:
    if (status) cli_error("calibrate", lsr_last_error());
    free(logits);
    lsr_model_free(model);
    lsr_dataset_free(&all);
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    return status;
}
