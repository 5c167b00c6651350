/* lsr project: the penultimate layer's activations of test examples of
 * three classes, projected onto the plane through those classes' templates
 * (rows of the last layer's weight matrix), as a scatter plot (SVG), one
 * panel per model side by side, with each panel's tightness (within-class
 * over between-class spread in the plane; Mueller, Kornblith and Hinton
 * 2019, figure 1). */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../train/train.h"
#include "cli.h"
#include "cmd.h"
#include "projection_plot.h"

#define PROJECT_MAX_MODELS 4
#define PROJECT_DEFAULT_PER_CLASS 300

int lsr_cmd_project(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"classes", required_argument, 0, 'c'},
        {"data", required_argument, 0, 'd'},  {"per-class", required_argument, 0, 'n'},
        {"out", required_argument, 0, 'o'},   {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *models[PROJECT_MAX_MODELS], *classes_arg = NULL, *out = NULL;
    const char *data_dir = LSR_FASHION_MNIST_DIR;
    int nmodels = 0;
    long long per_class = PROJECT_DEFAULT_PER_CLASS, threads = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (nmodels == PROJECT_MAX_MODELS)
                return cli_error("project", "--model: at most 4 models, one panel each");
            models[nmodels++] = optarg;
            break;
        case 'c':
            classes_arg = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'n':
            if (cli_int("--per-class", optarg, 2, 1000000, &per_class))
                return cli_error("project", lsr_last_error());
            break;
        case 'o':
            out = optarg;
            break;
        case 't':
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return cli_error("project", lsr_last_error());
            break;
        case 'h':
            printf("usage: lsr project --model FILE [--model FILE ...] --classes A,B,C --out "
                   "plot.svg\n"
                   "                   [--data DIR] [--per-class N (%d)] [--threads T]\n"
                   "  the penultimate layer's activations of the first N test examples of each\n"
                   "  of the three classes, projected onto the plane through the classes'\n"
                   "  templates (rows of the last layer's weights), one panel per model (up to\n"
                   "  4, e.g. eps = 0 and eps = 0.1 side by side), and each panel's tightness:\n"
                   "  within-class over between-class spread in the plane (smaller: tighter).\n"
                   "  Classes by index, or by the first model's names (Fashion-MNIST's, or\n"
                   "  lsr train --class-names; e.g. Shirt,T-shirt/top,Sneaker).\n",
                   PROJECT_DEFAULT_PER_CLASS);
            return 0;
        default:
            return cli_flag_error("project", c, argv);
        }
    }
    if (optind < argc) return cli_argument_error("project", argv[optind]);
    if (!nmodels || !classes_arg || !out)
        return cli_error("project", "--model, --classes and --out are required");
    if (lsr_check_writable(out, "--out")) return cli_error("project", lsr_last_error());
    cli_set_threads((int)threads);

    lsr_dataset train = {0}, test = {0};
    lsr_model *m[PROJECT_MAX_MODELS] = {0};
    projection_panel panels[PROJECT_MAX_MODELS];
    projection_points points;
    memset(panels, 0, sizeof panels);
    memset(&points, 0, sizeof points);
    int status = 1;
    if (cli_load_data(&train, &test, data_dir)) goto out;
    lsr_dataset_free(&train);
    for (int k = 0; k < nmodels; k++) {
        if (lsr_model_load(&m[k], models[k])) {
            lsr__fail(lsr__failed(), "--model %s: %s", models[k], lsr_last_error());
            goto out;
        }
        if (lsr_check_model_data(m[k], &test, "--data")) goto out;
    }
    /* the classes by the first model's names (or the data's) */
    const char *const *data_names = cli_data_class_names(data_dir, test.classes);
    int cls[3];
    if (projection_parse_model_classes(cls, classes_arg, m[0], data_names, test.classes) ||
        projection_pick(&points, &test, cls, per_class)) {
        lsr__fail(lsr__failed(), "--classes %s: %s", classes_arg, lsr_last_error());
        goto out;
    }
    for (int k = 0; k < nmodels; k++) {
        if (projection_compute(&panels[k], m[k], &points)) {
            lsr__fail(lsr__failed(), "--model %s: %s", models[k], lsr_last_error());
            goto out;
        }
        snprintf(panels[k].title, sizeof panels[k].title, "%s", models[k]);
    }
    char labels[3][LSR_CLASS_NAME_MAX];
    const char *names[3];
    for (int g = 0; g < 3; g++)
        names[g] = cli_class_label(labels[g], sizeof labels[g], m[0], data_names, cls[g]);
    lsr_atomic_file af;
    if (lsr_atomic_open(&af, out)) goto out;
    projection_svg(af.f, panels, nmodels, &points, names);
    if (lsr_atomic_commit(&af)) goto out;
    for (int k = 0; k < nmodels; k++)
        printf("%s: within / between spread %.4f (%lld, %lld and %lld examples)\n", models[k],
               panels[k].tightness, (long long)points.got[0], (long long)points.got[1],
               (long long)points.got[2]);
    fprintf(stderr, "%s written\n", out);
    status = 0;
out:
    if (status) cli_error("project", lsr_last_error());
    for (int k = 0; k < nmodels; k++) {
        lsr_model_free(m[k]);
        free(panels[k].xy);
    }
    projection_points_free(&points);
    lsr_dataset_free(&test);
    return status;
}
