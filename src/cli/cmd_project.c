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

#include "../metrics/projection.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"

#define PROJECT_MAX_MODELS 4
#define PROJECT_DEFAULT_PER_CLASS 300

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

/* a class by index, or by its Fashion-MNIST name when the data is that */
static lsr_status parse_class(const char *s, int classes, int fashion, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end != s && !*end && v >= 0 && v < classes) {
        *out = (int)v;
        return LSR_OK;
    }
    for (int c = 0; fashion && c < 10; c++)
        if (!strcasecmp(s, fashion_names[c])) {
            *out = c;
            return LSR_OK;
        }
    return lsr__fail(LSR_ERROR_OPTION, "--classes: '%s' is not a class index in [0, %d)%s", s,
                     classes, fashion ? " or a Fashion-MNIST class name" : "");
}

/* round tick spacing: 1, 2, 2.5 or 5 x 10^n, about 5 ticks over span */
static double tick_step(double span) {
    if (!(span > 0)) return 1.0;
    const double raw = span / 5.0, p = pow(10.0, floor(log10(raw)));
    static const double steps[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    for (int i = 0; i < 5; i++)
        if (steps[i] * p >= raw) return steps[i] * p;
    return 10.0 * p;
}

typedef struct panel {
    const char *title;
    float *xy; /* (n, 2) */
    double tightness;
} panel;

static void svg_panel(FILE *f, const panel *p, const int *group, int64_t n, double x0,
                      const char *const *names) {
    static const char *const colour[3] = {"#1f77b4", "#d62728", "#2ca02c"};
    const double w = 420, h = 400, left = 50, top = 40, pw = w - left - 20, ph = h - top - 60;
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int64_t r = 0; r < n; r++)
        for (int a = 0; a < 2; a++) {
            lo[a] = fminf(lo[a], p->xy[2 * r + a]);
            hi[a] = fmaxf(hi[a], p->xy[2 * r + a]);
        }
    double step[2], from[2], to[2];
    for (int a = 0; a < 2; a++) {
        step[a] = tick_step((double)hi[a] - lo[a]);
        from[a] = floor(lo[a] / step[a]) * step[a];
        to[a] = ceil(hi[a] / step[a]) * step[a];
        if (to[a] <= from[a]) to[a] = from[a] + step[a];
    }
#define PX(v) (x0 + left + ((v)-from[0]) / (to[0] - from[0]) * pw)
#define PY(v) (top + ph - ((v)-from[1]) / (to[1] - from[1]) * ph)
    fprintf(f, "<text x='%.1f' y='20' font-size='13' text-anchor='middle'>", x0 + left + pw / 2);
    for (const char *c = p->title; *c; c++) /* a file name: escaped for XML */
        if (*c == '&')
            fputs("&amp;", f);
        else if (*c == '<')
            fputs("&lt;", f);
        else if (*c == '>')
            fputs("&gt;", f);
        else if (*c == '\'')
            fputs("&apos;", f);
        else
            fputc(*c, f);
    fputs("</text>\n", f);
    fprintf(f,
            "<text x='%.1f' y='34' font-size='11' text-anchor='middle' fill='#555'>within / "
            "between spread %.3f</text>\n",
            x0 + left + pw / 2, p->tightness);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#888'/>\n",
            x0 + left, top, pw, ph);
    for (double v = from[0]; v <= to[0] + step[0] / 2; v += step[0])
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/><text x='%.1f' "
                "y='%.1f' font-size='10' text-anchor='middle'>%g</text>\n",
                PX(v), top, PX(v), top + ph, PX(v), top + ph + 14, fabs(v) < step[0] / 2 ? 0 : v);
    for (double v = from[1]; v <= to[1] + step[1] / 2; v += step[1])
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/><text x='%.1f' "
                "y='%.1f' font-size='10' text-anchor='end'>%g</text>\n",
                x0 + left, PY(v), x0 + left + pw, PY(v), x0 + left - 4, PY(v) + 3,
                fabs(v) < step[1] / 2 ? 0 : v);
    for (int64_t r = 0; r < n; r++)
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='1.8' fill='%s' fill-opacity='0.5'/>\n",
                PX(p->xy[2 * r]), PY(p->xy[2 * r + 1]), colour[group[r]]);
    for (int g = 0; g < 3; g++) /* the legend, below the plot */
        fprintf(f,
                "<circle cx='%.1f' cy='%.1f' r='4' fill='%s'/><text x='%.1f' y='%.1f' "
                "font-size='11'>%s</text>\n",
                x0 + left + g * pw / 3, top + ph + 36, colour[g], x0 + left + g * pw / 3 + 8,
                top + ph + 40, names[g]);
#undef PX
#undef PY
}

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
                   "  Classes by index, or by name on Fashion-MNIST (e.g. Shirt,T-shirt/top,"
                   "Sneaker).\n",
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
    panel panels[PROJECT_MAX_MODELS] = {{0}};
    float *x = NULL, *acts = NULL;
    int *group = NULL;
    int status = 1;
    if (cli_load_data(&train, &test, data_dir)) goto out;
    lsr_dataset_free(&train);
    const int fashion = test.classes == 10 && !strcmp(data_dir, LSR_FASHION_MNIST_DIR);
    int cls[3], nc = 0;
    lsr_status bad = LSR_OK;
    char *list = strdup(classes_arg);
    if (!list) bad = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    for (char *tok = list ? strtok(list, ",") : NULL; tok && !bad; tok = strtok(NULL, ",")) {
        if (nc == 3)
            bad = lsr__fail(LSR_ERROR_OPTION, "--classes %s: three classes, not more", classes_arg);
        else if (!(bad = parse_class(tok, test.classes, fashion, &cls[nc])))
            nc++;
    }
    free(list);
    if (bad) goto out;
    if (nc != 3 || cls[0] == cls[1] || cls[0] == cls[2] || cls[1] == cls[2]) {
        lsr__fail(LSR_ERROR_OPTION, "--classes %s: three different classes, comma-separated",
                  classes_arg);
        goto out;
    }
    /* the first per_class test examples of each class */
    const size_t sample = (size_t)test.h * test.w * test.c;
    x = malloc((size_t)(3 * per_class) * sample * sizeof(float));
    group = malloc((size_t)(3 * per_class) * sizeof(int));
    if (!x || !group) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    int64_t n = 0, got[3] = {0, 0, 0};
    for (int64_t i = 0; i < test.n; i++)
        for (int g = 0; g < 3; g++)
            if (test.y[i] == cls[g] && got[g] < per_class) {
                memcpy(x + (size_t)n * sample, test.x + (size_t)i * sample, sample * sizeof(float));
                group[n++] = g;
                got[g]++;
            }
    for (int g = 0; g < 3; g++)
        if (got[g] < 2) {
            lsr__fail(LSR_ERROR_OPTION, "--classes: class %d has %lld test examples in %s", cls[g],
                      (long long)got[g], data_dir);
            goto out;
        }
    for (int k = 0; k < nmodels; k++) {
        if (lsr_model_load(&m[k], models[k])) {
            lsr__fail(lsr__failed(), "--model %s: %s", models[k], lsr_last_error());
            goto out;
        }
        if (lsr_check_model_data(m[k], &test, "--data")) goto out;
        const lsr_layer *last = &m[k]->layers[m[k]->n_layers - 1];
        const int64_t d = (int64_t)lsr_shape_size(last->in);
        free(acts);
        acts = malloc((size_t)n * (size_t)d * sizeof(float));
        double *plane = malloc((size_t)(3 * d) * sizeof(double));
        panels[k].xy = malloc((size_t)n * 2 * sizeof(float));
        if (!acts || !plane || !panels[k].xy) {
            free(plane);
            lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
            goto out;
        }
        if (lsr_model_reserve(m[k], LSR_PREDICT_BATCH)) {
            free(plane);
            goto out;
        }
        for (int64_t first = 0; first < n; first += LSR_PREDICT_BATCH) {
            const int b = (int)(n - first < LSR_PREDICT_BATCH ? n - first : LSR_PREDICT_BATCH);
            lsr_model_forward(m[k], x + (size_t)first * sample, b, 0, NULL);
            memcpy(acts + (size_t)first * d, m[k]->acts[m[k]->n_layers - 1],
                   (size_t)b * (size_t)d * sizeof(float));
        }
        const float *w = m[k]->params + last->weight_offset; /* (classes, d) */
        const lsr_status ps =
            lsr_template_plane(plane, plane + d, plane + 2 * d, w + (size_t)cls[0] * d,
                               w + (size_t)cls[1] * d, w + (size_t)cls[2] * d, d);
        if (!ps) lsr_project_plane(panels[k].xy, acts, n, d, plane, plane + d, plane + 2 * d);
        free(plane);
        if (ps) {
            lsr__fail(ps, "--model %s: %s", models[k], lsr_last_error());
            goto out;
        }
        panels[k].tightness = lsr_cluster_tightness(panels[k].xy, group, n, 3);
        panels[k].title = models[k];
    }
    char labels[3][32];
    const char *names[3];
    for (int g = 0; g < 3; g++) {
        if (fashion)
            snprintf(labels[g], sizeof labels[g], "%s", fashion_names[cls[g]]);
        else
            snprintf(labels[g], sizeof labels[g], "class %d", cls[g]);
        names[g] = labels[g];
    }
    lsr_atomic_file af;
    if (lsr_atomic_open(&af, out)) goto out;
    fprintf(af.f,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='400' "
            "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
            420 * nmodels);
    for (int k = 0; k < nmodels; k++)
        svg_panel(af.f, &panels[k], group, n, 420.0 * k, names);
    fputs("</svg>\n", af.f);
    if (lsr_atomic_commit(&af)) goto out;
    for (int k = 0; k < nmodels; k++)
        printf("%s: within / between spread %.4f (%lld, %lld and %lld examples)\n", models[k],
               panels[k].tightness, (long long)got[0], (long long)got[1], (long long)got[2]);
    fprintf(stderr, "%s written\n", out);
    status = 0;
out:
    if (status) cli_error("project", lsr_last_error());
    for (int k = 0; k < nmodels; k++) {
        lsr_model_free(m[k]);
        free(panels[k].xy);
    }
    free(x);
    free(acts);
    free(group);
    lsr_dataset_free(&test);
    return status;
}
