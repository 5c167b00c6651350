/* lsr calibrate: temperature scaling.  Fits one T > 0 minimising the NLL of
 * softmax(z / T) on the validation examples the model was trained without
 * (lsr train --val N), and stores it in the model file's metadata. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../data/dataset.h"
#include "../metrics/metrics.h"
#include "../modelfile/modelfile.h"
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
    char err[LSR_ERR_LEN];
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
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads, err))
                return cli_error("calibrate", err);
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
    if (lsr_check_writable(model_path, "--model", err)) return cli_error("calibrate", err);
    cli_set_threads((int)threads);
    lsr_model model;
    lsr_metadata md;
    if (lsr_model_load(&model, &md, model_path, err)) return cli_error("calibrate", err);
    const char *v = lsr_metadata_get(&md, "val_samples"),
               *lim = lsr_metadata_get(&md, "train_limit");
    const char *seed = lsr_metadata_get(&md, "seed");
    if (!data_dir) data_dir = lsr_metadata_get(&md, "data");
    int status = 1;
    lsr_dataset all = {0}, train = {0}, val = {0};
    float *logits = NULL;
    if (!v || atoll(v) <= 0 || !lim || !seed || !data_dir) {
        snprintf(err, sizeof err,
                 "%s: trained without a validation split; train with --val N to "
                 "hold out examples for calibration",
                 model_path);
        goto out;
    }
    if (lsr_data_load_dir(&all, NULL, data_dir, err)) goto out;
    if (lsr_dataset_split(&train, &val, &all, atoll(lim), atoll(v), strtoull(seed, NULL, 10), err))
        goto out;
    if (lsr_check_model_data(&model, &val, "validation data", err)) goto out;
    logits = malloc((size_t)val.n * model.classes * sizeof(float));
    if (!logits) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (lsr_predict(&model, &val, logits, CLI_PREDICT_BATCH, err)) goto out;
    const double t = lsr_fit_temperature(logits, val.y, val.n, model.classes);
    lsr_metrics before, after;
    lsr_metrics_compute(&before, logits, val.y, val.n, model.classes, 1.0);
    lsr_metrics_compute(&after, logits, val.y, val.n, model.classes, t);
    printf("temperature %.4f fitted on %lld validation examples\n"
           "  validation NLL %.4f -> %.4f, ECE %.4f -> %.4f\n",
           t, (long long)val.n, before.nll, after.nll, before.ece, after.ece);
    lsr_metadata_set(&md, "temperature", "%.6f", t);
    if (lsr_model_save(&model, &md, model_path, err)) goto out;
    status = 0;
out:
    if (status) cli_error("calibrate", err);
    free(logits);
    lsr_model_free(&model);
    lsr_dataset_free(&all);
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    return status;
}
