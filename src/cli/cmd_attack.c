/* lsr attack: FGSM against a model file on the test split, optionally
 * crafted on another model (a transfer attack, the control for gradient
 * masking), optionally saving the adversarial images. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../metrics/metrics.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"
#include "svg.h"

#define ATTACK_DEFAULT_EPS 0.3 /* --eps, also in the usage text */

/* How many of m's predictions on x are y; pred (n) gets them.  -1: failed. */
static int64_t count_hits(lsr_model *m, const float *x, const int64_t *y, int64_t n,
                          int64_t *pred) {
    const int k = lsr_model_classes(m);
    float *logits = malloc((size_t)n * k * sizeof(float));
    if (!logits) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        return -1;
    }
    if (lsr_model_predict(logits, m, x, n)) {
        free(logits);
        return -1;
    }
    const int64_t hits = lsr_top1(logits, y, n, k, pred);
    free(logits);
    return hits;
}

static lsr_status write_idx_images(const char *path, const float *x, int64_t n, lsr_shape s) {
    lsr_atomic_file af;
    LSR_TRY(lsr_atomic_open(&af, path));
    const int ndim = s.c == 1 ? 3 : 4;
    const int64_t dims[4] = {n, s.h, s.w, s.c};
    unsigned char head[4] = {0, 0, 8, (unsigned char)ndim};
    fwrite(head, 1, 4, af.f);
    for (int d = 0; d < ndim; d++) {
        unsigned char b[4] = {(unsigned char)(dims[d] >> 24), (unsigned char)(dims[d] >> 16),
                              (unsigned char)(dims[d] >> 8), (unsigned char)dims[d]};
        fwrite(b, 1, 4, af.f);
    }
    const size_t total = (size_t)n * lsr_shape_size(s);
    for (size_t i = 0; i < total; i++)
        fputc((int)lrintf(x[i] * 255.0f), af.f);
    return lsr_atomic_commit(&af);
}

static lsr_status write_idx_labels(const char *path, const int64_t *y, int64_t n) {
    lsr_atomic_file af;
    LSR_TRY(lsr_atomic_open(&af, path));
    unsigned char head[8] = {0,
                             0,
                             8,
                             1,
                             (unsigned char)(n >> 24),
                             (unsigned char)(n >> 16),
                             (unsigned char)(n >> 8),
                             (unsigned char)n};
    fwrite(head, 1, 8, af.f);
    for (int64_t i = 0; i < n; i++)
        fputc((int)y[i], af.f);
    return lsr_atomic_commit(&af);
}

/* A grid label's columns in a cell of px pixels (up to where the next
 * cell's label starts), in 10 px sans-serif: the mean advance of DejaVu
 * Sans (Debian's sans-serif) at 10 px is 5.6 px over lowercase letters and
 * 6.2 over all letters (Liberation Sans: 4.9, 5.8); a wide East Asian
 * character, two columns, about 10.  By the lowercase mean, as labels
 * mostly are: Fashion-MNIST's longest, "true: T-shirt/top" (17 columns,
 * about 79 px), keeps its 98 px cell; a label of capitals may reach a
 * tenth into the next cell's gap. */
static int grid_label_columns(int px) { return px * 10 / 56; }

/* A <text> at (x, y) holding prefix and name, at most max columns
 * (cli_text_columns): a longer one keeps the whole characters of its first
 * max - 1 columns and ends in an ellipsis, with the whole in a <title>
 * child (shown on hover). */
static void write_grid_label(FILE *f, int x, int y, const char *fill, const char *prefix,
                             const char *name, int max) {
    char text[LSR_CLASS_NAME_MAX + 8];
    snprintf(text, sizeof text, "%s%s", prefix, name);
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\">", x, y, fill);
    if (cli_text_columns(text) > max) {
        fputs("<title>", f);
        svg_text(f, text);
        fputs("</title>", f);
        /* whole characters, and the ellipsis's column */
        strcpy(text + cli_text_prefix(text, max - 1), "\xE2\x80\xA6"); /* U+2026 */
    }
    svg_text(f, text);
    fputs("</text>", f);
}

/* An SVG grid: clean images above, adversarial below, each with the
 * model's prediction by name (green when right, red with the true class when
 * wrong). */
static lsr_status write_grid(const char *path, const float *clean, const float *adv,
                             const int64_t *y, const int64_t *pred_clean, const int64_t *pred_adv,
                             int64_t n, lsr_shape s, const lsr_model *m,
                             const char *const *data_names) {
    const int cols = n < 10 ? (int)n : 10, px = 3, cell = s.w * px + 14, rowh = s.h * px + 36;
    lsr_atomic_file af;
    LSR_TRY(lsr_atomic_open(&af, path));
    fprintf(af.f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n",
            cols * cell + 80, 2 * rowh + 10);
    fprintf(af.f, "<text x=\"4\" y=\"%d\">clean</text><text x=\"4\" y=\"%d\">FGSM</text>\n",
            rowh / 2, rowh + rowh / 2);
    for (int row = 0; row < 2; row++)
        for (int c = 0; c < cols; c++) {
            const float *img = (row ? adv : clean) + (size_t)c * lsr_shape_size(s);
            const int ox = 80 + c * cell, oy = 5 + row * rowh;
            for (int i = 0; i < s.h; i++)
                for (int j = 0; j < s.w;) { /* runs of equal grey */
                    const int v = (int)lrintf(img[(i * s.w + j) * s.c] * 255.0f);
                    int run = 1;
                    while (j + run < s.w &&
                           (int)lrintf(img[(i * s.w + j + run) * s.c] * 255.0f) == v)
                        run++;
                    fprintf(af.f,
                            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                            "fill=\"rgb(%d,%d,%d)\"/>",
                            ox + j * px, oy + i * px, run * px, px, v, v, v);
                    j += run;
                }
            const int64_t p = row ? pred_adv[c] : pred_clean[c];
            char name[LSR_CLASS_NAME_MAX];
            fputc('\n', af.f);
            write_grid_label(af.f, ox, oy + s.h * px + 13, p == y[c] ? "green" : "red", "",
                             cli_class_label(name, sizeof name, m, data_names, (int)p),
                             grid_label_columns(cell));
            if (p != y[c])
                write_grid_label(af.f, ox, oy + s.h * px + 26, "#555", "true: ",
                                 cli_class_label(name, sizeof name, m, data_names, (int)y[c]),
                                 grid_label_columns(cell));
            fputc('\n', af.f);
        }
    fputs("</svg>\n", af.f);
    return lsr_atomic_commit(&af);
}

int lsr_cmd_attack(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"data", required_argument, 0, 'd'},
        {"method", required_argument, 0, 'M'}, {"eps", required_argument, 0, 'e'},
        {"true-labels", no_argument, 0, 'y'},  {"transfer-from", required_argument, 0, 'f'},
        {"save", required_argument, 0, 's'},   {"limit", required_argument, 0, 'n'},
        {"json", no_argument, 0, 'j'},         {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *model_path = NULL, *data_dir = LSR_FASHION_MNIST_DIR, *source_path = NULL,
               *save_dir = NULL;
    double eps = ATTACK_DEFAULT_EPS;
    long long limit = 0, threads = 0;
    int json = 0, true_labels = 0, c;
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
        case 'M':
            if (strcmp(optarg, "fgsm") != 0)
                return cli_error("attack", "--method: only fgsm is implemented");
            break;
        case 'e':
            if (cli_float("--eps", optarg, 0, 1, &eps))
                return cli_error("attack", lsr_last_error());
            break;
        case 'y':
            true_labels = 1;
            break;
        case 'f':
            source_path = optarg;
            break;
        case 's':
            save_dir = optarg;
            break;
        case 'n':
            if (cli_int("--limit", optarg, 1, INT64_MAX, &limit))
                return cli_error("attack", lsr_last_error());
            break;
        case 'j':
            json = 1;
            break;
        case 't':
            if (cli_int("--threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return cli_error("attack", lsr_last_error());
            break;
        case 'h':
            printf("usage: lsr attack --model FILE [--data DIR] [--method fgsm] [--eps %g]\n"
                   "       [--true-labels] [--transfer-from FILE] [--save DIR]"
                   " [--limit N] [--json]\n"
                   "  L-infinity FGSM on the test split, clipped to [0, 1]; the label is the"
                   " model's\n"
                   "  own prediction unless --true-labels.  --transfer-from crafts the examples"
                   " on\n"
                   "  another model (the control for gradient masking).  --save writes the\n"
                   "  adversarial images as IDX files and grid.svg.\n",
                   ATTACK_DEFAULT_EPS);
            return 0;
        default:
            return cli_flag_error("attack", c, argv);
        }
    }
    if (optind < argc) return cli_argument_error("attack", argv[optind]);
    if (!model_path) return cli_error("attack", "--model FILE is required");
    if (save_dir) {
        struct stat st;
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/grid.svg", save_dir);
        if (stat(save_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            lsr__fail(LSR_ERROR_OPTION, "--save %s: not an existing directory", save_dir);
            return cli_error("attack", lsr_last_error());
        }
        if (lsr_check_writable(probe, "--save")) return cli_error("attack", lsr_last_error());
    }
    cli_set_threads((int)threads);
    lsr_model *model = NULL, *source = NULL;
    lsr_dataset train = {0}, test = {0};
    float *adv = NULL;
    int64_t *pred_clean = NULL, *pred_adv = NULL;
    int status = 1;
    if (lsr_model_load(&model, model_path)) goto out;
    if (source_path && lsr_model_load(&source, source_path)) goto out;
    if (cli_load_data(&train, &test, data_dir)) goto out;
    if (limit && limit < test.n) test.n = limit;
    char what[4200];
    snprintf(what, sizeof what, "--data %s", data_dir);
    if (lsr_check_model_data(model, &test, what)) goto out;
    lsr_model *crafter = source_path ? source : model;
    if (source_path && (lsr_check_model_data(source, &test, "--transfer-from"))) goto out;
    lsr_shape shape;
    lsr_model_input_shape(model, &shape.h, &shape.w, &shape.c);
    adv = malloc((size_t)test.n * lsr_shape_size(shape) * sizeof(float));
    pred_clean = malloc((size_t)test.n * sizeof(int64_t));
    pred_adv = malloc((size_t)test.n * sizeof(int64_t));
    if (!adv || !pred_clean || !pred_adv) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    const int64_t clean_hits = count_hits(model, test.x, test.y, test.n, pred_clean);
    if (clean_hits < 0) goto out;
    if (lsr_fgsm_generate(adv, crafter, test.x, true_labels ? test.y : NULL, test.n, (float)eps))
        goto out;
    const int64_t adv_hits = count_hits(model, adv, test.y, test.n, pred_adv);
    if (adv_hits < 0) goto out;
    if (save_dir) {
        char p[4200];
        snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", save_dir);
        if (write_idx_images(p, adv, test.n, shape)) goto out;
        snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", save_dir);
        if (write_idx_labels(p, test.y, test.n)) goto out;
        snprintf(p, sizeof p, "%s/grid.svg", save_dir);
        if (write_grid(p, test.x, adv, test.y, pred_clean, pred_adv, test.n, shape, model,
                       cli_data_class_names(data_dir, lsr_model_classes(model))))
            goto out;
    }
    const double ca = (double)clean_hits / (double)test.n, aa = (double)adv_hits / (double)test.n;
    if (json)
        printf("{\"n\": %lld, \"eps\": %g, \"labels\": \"%s\", \"transfer\": %s, "
               "\"clean_accuracy\": %.6f, "
               "\"adv_accuracy\": %.6f}\n",
               (long long)test.n, eps, true_labels ? "true" : "predicted",
               source_path ? "true" : "false", ca, aa);
    else
        printf("FGSM eps %g (%s labels%s%s), %lld test samples\n  clean accuracy        %.4f\n"
               "  adversarial accuracy  %.4f\n",
               eps, true_labels ? "true" : "predicted", source_path ? ", crafted on " : "",
               source_path ? source_path : "", (long long)test.n, ca, aa);
    status = 0;
out:
    if (status) cli_error("attack", lsr_last_error());
    free(adv);
    free(pred_clean);
    free(pred_adv);
    lsr_model_free(model);
    lsr_model_free(source);
    lsr_dataset_free(&train);
    lsr_dataset_free(&test);
    return status;
}
