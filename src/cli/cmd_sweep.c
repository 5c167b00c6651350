/* lsr sweep: train every (eps, seed), evaluate each (accuracy, top-5, NLL,
 * ECE, MCE, Brier, FGSM, transfer FGSM from the eps = 0 model, and all of it
 * after temperature scaling), and write results.csv and a self-contained
 * report.html with inline SVG plots.  Finished runs are kept in
 * OUT/runs/NAME.json, so an interrupted sweep resumes where it stopped. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../attack/fgsm.h"
#include "../metrics/metrics.h"
#include "../modelfile/modelfile.h"
#include "cli.h"
#include "train_job.h"

#define MAX_EPS 32
#define MAX_SEEDS 64

typedef struct run_result {
    double eps;
    int seed;
    lsr_metrics plain, scaled;
    double temperature, fgsm, transfer; /* transfer: NAN when there is no eps = 0 model */
    double seconds;
} run_result;


static void run_name(char *buf, size_t size, double eps, int seed) {
    snprintf(buf, size, "eps%g-seed%d", eps, seed);
}

/* --checkpoint F: each run keeps its own, F with -NAME before the
 * extension (run.ckpt: run-eps0.1-seed2.ckpt) */
static void run_checkpoint(char *buf, size_t size, const char *base, const char *name) {
    const char *slash = strrchr(base, '/'), *file = slash ? slash + 1 : base;
    const char *dot = strrchr(file, '.');
    if (!dot || dot == file) dot = file + strlen(file);
    snprintf(buf, size, "%.*s-%s%s", (int)(dot - base), base, name, dot);
}

/* The run's checkpoint: 1 if it holds this very run (resume from it), 0 if
 * there is none, -1 (err) if it holds another run or cannot be read. */
static int run_checkpoint_matches(const char *path, const char *command, char *err) {
    if (access(path, F_OK) != 0) return 0;
    lsr_model m;
    lsr_train_state st;
    char *stored = NULL;
    if (lsr_checkpoint_load(path, &m, &st, NULL, -1, &stored, err)) return -1;
    lsr_model_free(&m);
    const int same = !strcmp(stored, command);
    free(stored);
    if (same) return 1;
    return lsr_fail(err, "--checkpoint %s: holds a run with other settings; remove it, or give "
                         "another --checkpoint", path);
}

static cJSON *number_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static void add_metrics(cJSON *o, const char *key, const lsr_metrics *m) {
    cJSON *x = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(x, "accuracy", m->accuracy);
    cJSON_AddNumberToObject(x, "top5", m->top5);
    cJSON_AddNumberToObject(x, "nll", m->nll);
    cJSON_AddNumberToObject(x, "ece", m->ece);
    cJSON_AddNumberToObject(x, "mce", m->mce);
    cJSON_AddNumberToObject(x, "brier", m->brier);
    cJSON_AddNumberToObject(x, "mean_confidence", m->mean_confidence);
    double count[LSR_CALIBRATION_BINS];
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) count[b] = (double)m->bin_count[b];
    cJSON_AddItemToObject(x, "bin_count", number_array(count, LSR_CALIBRATION_BINS));
    cJSON_AddItemToObject(x, "bin_confidence", number_array(m->bin_confidence, LSR_CALIBRATION_BINS));
    cJSON_AddItemToObject(x, "bin_accuracy", number_array(m->bin_accuracy, LSR_CALIBRATION_BINS));
}

static int get_number(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNull(v)) {
        *out = NAN;
        return 1;
    }
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

static int read_metrics(const cJSON *o, const char *key, lsr_metrics *m) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    memset(m, 0, sizeof *m);
    if (!cJSON_IsObject(x)) return 0;
    int ok = get_number(x, "accuracy", &m->accuracy) && get_number(x, "top5", &m->top5) &&
             get_number(x, "nll", &m->nll) && get_number(x, "ece", &m->ece) &&
             get_number(x, "mce", &m->mce) && get_number(x, "brier", &m->brier) &&
             get_number(x, "mean_confidence", &m->mean_confidence);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "bin_count");
    const cJSON *bc = cJSON_GetObjectItemCaseSensitive(x, "bin_confidence");
    const cJSON *ba = cJSON_GetObjectItemCaseSensitive(x, "bin_accuracy");
    if (!ok || cJSON_GetArraySize(c) != LSR_CALIBRATION_BINS ||
        cJSON_GetArraySize(bc) != LSR_CALIBRATION_BINS || cJSON_GetArraySize(ba) != LSR_CALIBRATION_BINS)
        return 0;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        m->bin_count[b] = (int64_t)cJSON_GetArrayItem(c, b)->valuedouble;
        m->bin_confidence[b] = cJSON_GetArrayItem(bc, b)->valuedouble;
        m->bin_accuracy[b] = cJSON_GetArrayItem(ba, b)->valuedouble;
        m->n += m->bin_count[b];
    }
    return 1;
}

static int save_result(const char *path, const run_result *r, char *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "eps", r->eps);
    cJSON_AddNumberToObject(o, "seed", r->seed);
    add_metrics(o, "plain", &r->plain);
    add_metrics(o, "temperature_scaled", &r->scaled);
    cJSON_AddNumberToObject(o, "temperature", r->temperature);
    cJSON_AddNumberToObject(o, "fgsm_accuracy", r->fgsm);
    if (isnan(r->transfer)) cJSON_AddNullToObject(o, "transfer_fgsm_accuracy");
    else cJSON_AddNumberToObject(o, "transfer_fgsm_accuracy", r->transfer);
    cJSON_AddNumberToObject(o, "train_seconds", r->seconds);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    lsr_atomic_file af;
    if (!text || lsr_atomic_open(&af, path, err)) {
        free(text);
        return text ? -1 : lsr_fail(err, "out of memory");
    }
    fputs(text, af.f);
    fputc('\n', af.f);
    free(text);
    return lsr_atomic_commit(&af, err);
}

/* 1: loaded; 0: absent or unreadable (the run is redone). */
static int load_result(const char *path, run_result *r) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    double seed = -1;
    int ok = cJSON_IsObject(o) && get_number(o, "eps", &r->eps) && get_number(o, "seed", &seed) &&
             read_metrics(o, "plain", &r->plain) && read_metrics(o, "temperature_scaled", &r->scaled) &&
             get_number(o, "temperature", &r->temperature) && get_number(o, "fgsm_accuracy", &r->fgsm) &&
             get_number(o, "transfer_fgsm_accuracy", &r->transfer) &&
             get_number(o, "train_seconds", &r->seconds);
    r->seed = (int)seed;
    cJSON_Delete(o);
    return ok;
}

/* FGSM accuracy of model on the first n test samples, crafted on crafter. */
static double fgsm_accuracy(lsr_model *model, lsr_model *crafter, const lsr_dataset *test, int64_t n,
                            float eps, float *adv, float *logits, char *err) {
    if (lsr_fgsm(crafter, adv, test->x, NULL, n, eps, 256, err)) return NAN;
    lsr_dataset d = *test;
    d.n = n;
    d.x = adv;
    if (lsr_predict(model, &d, logits, 256, err)) return NAN;
    return (double)lsr_top1(logits, test->y, n, model->classes, NULL) / (double)n;
}

/* ---- the report ---- */

typedef struct series {
    const char *name, *color;
    double mean[MAX_EPS], sd[MAX_EPS];
} series;

static void mean_sd(const run_result *r, int nr, double eps, double (*get)(const run_result *),
                    double *mean, double *sd) {
    double s = 0, ss = 0;
    int n = 0;
    for (int i = 0; i < nr; i++)
        if (r[i].eps == eps && !isnan(get(&r[i]))) {
            s += get(&r[i]);
            ss += get(&r[i]) * get(&r[i]);
            n++;
        }
    *mean = n ? s / n : NAN;
    *sd = n > 1 ? sqrt(fmax(0.0, (ss - s * s / n) / (n - 1))) : 0.0;
}

static void svg_line_plot(FILE *f, const char *title, const double *eps, int ne, const series *s,
                          int ns) {
    const double W = 420, H = 260, L = 55, R = 110, T = 30, B = 40;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < ne; i++)
            if (!isnan(s[k].mean[i])) {
                lo = fmin(lo, s[k].mean[i] - s[k].sd[i]);
                hi = fmax(hi, s[k].mean[i] + s[k].sd[i]);
            }
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-6) hi = lo + 1e-3;
    const double pad = 0.08 * (hi - lo);
    lo -= pad;
    hi += pad;
    const double xmax = eps[ne - 1] > 0 ? eps[ne - 1] : 1;
#define PX(x) (L + (W - L - R) * (x) / xmax)
#define PY(y) (T + (H - T - B) * (1 - ((y) - lo) / (hi - lo)))
    fprintf(f, "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", L, title);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n", L, T, W - L - R, H - T - B);
    for (int t = 0; t <= 4; t++) {
        const double y = lo + (hi - lo) * t / 4;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 4, PY(y) + 4, y);
    }
    for (int i = 0; i < ne; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", PX(eps[i]), H - B + 14, eps[i]);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">label smoothing eps</text>\n", (L + W - R) / 2, H - 6);
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s[k].color);
        for (int i = 0; i < ne; i++)
            if (!isnan(s[k].mean[i])) fprintf(f, "%.1f,%.1f ", PX(eps[i]), PY(s[k].mean[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < ne; i++) {
            if (isnan(s[k].mean[i])) continue;
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>", PX(eps[i]), PX(eps[i]),
                    PY(s[k].mean[i] - s[k].sd[i]), PY(s[k].mean[i] + s[k].sd[i]), s[k].color);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(eps[i]), PY(s[k].mean[i]), s[k].color);
        }
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                W - R + 8, T + 4 + 16 * k, s[k].color, W - R + 22, T + 13 + 16 * k, s[k].name);
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
}

/* Reliability diagram: accuracy per confidence bin against the diagonal,
 * with the bin populations as a histogram below. */
static void svg_reliability(FILE *f, const char *title, const lsr_metrics *m) {
    const double W = 300, H = 300, L = 45, T = 30, S = 220;
    fprintf(f, "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H + 70);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", L, title);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n", L, T, S, S);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>\n", L, T + S, L + S, T);
    const double bw = S / LSR_CALIBRATION_BINS;
    int64_t most = 1;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++)
        if (m->bin_count[b] > most) most = m->bin_count[b];
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        if (!m->bin_count[b]) continue;
        const double h = S * m->bin_accuracy[b], gap = S * m->bin_confidence[b];
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a7fc1\" stroke=\"white\"/>", L + b * bw, T + S - h, bw, h);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d9534f\" stroke-width=\"2\"/>\n", L + b * bw, L + (b + 1) * bw, T + S - gap, T + S - gap);
        const double hh = 50.0 * (double)m->bin_count[b] / (double)most;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#888\"/>\n", L + b * bw, T + S + 65 - hh, bw - 1, hh);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">confidence (0 to 1); blue: accuracy, red: mean confidence</text>\n", L - 30, T + S + 14);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">ECE %.4f, MCE %.4f; grey: samples per bin</text>\n", L - 30, T + S + 78, m->ece, m->mce);
    fprintf(f, "</svg>\n");
}

static double g_acc(const run_result *r) { return r->plain.accuracy; }
static double g_top5(const run_result *r) { return r->plain.top5; }
static double g_ece(const run_result *r) { return r->plain.ece; }
static double g_ece_ts(const run_result *r) { return r->scaled.ece; }
static double g_nll(const run_result *r) { return r->plain.nll; }
static double g_nll_ts(const run_result *r) { return r->scaled.nll; }
static double g_fgsm(const run_result *r) { return r->fgsm; }
static double g_transfer(const run_result *r) { return r->transfer; }
static double g_conf(const run_result *r) { return r->plain.mean_confidence; }

static int write_report(const char *dir, const run_result *r, int nr, const double *eps, int ne,
                        const char *title, char *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    lsr_atomic_file af;
    if (lsr_atomic_open(&af, path, err)) return -1;
    fprintf(af.f, "eps,seed,accuracy,top5,nll,ece,mce,brier,mean_confidence,fgsm_accuracy,"
                  "transfer_fgsm_accuracy,temperature,ts_nll,ts_ece,ts_mce,ts_brier,train_seconds\n");
    for (int i = 0; i < nr; i++) {
        const run_result *x = &r[i];
        char transfer[32] = "";
        if (!isnan(x->transfer)) snprintf(transfer, sizeof transfer, "%.6f", x->transfer);
        fprintf(af.f, "%g,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.1f\n", x->eps, x->seed,
                x->plain.accuracy, x->plain.top5, x->plain.nll, x->plain.ece, x->plain.mce, x->plain.brier,
                x->plain.mean_confidence, x->fgsm, transfer, x->temperature, x->scaled.nll, x->scaled.ece,
                x->scaled.mce, x->scaled.brier, x->seconds);
    }
    if (lsr_atomic_commit(&af, err)) return -1;

    series s[3];
    snprintf(path, sizeof path, "%s/report.html", dir);
    if (lsr_atomic_open(&af, path, err)) return -1;
    FILE *f = af.f;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lsr sweep: %s</title>\n"
               "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}svg{margin:0.5em}</style>\n"
               "</head><body>\n<h1>Label smoothing sweep</h1>\n<p>%s. %d runs; points are means over seeds, bars one standard deviation.</p>\n",
            title, title, nr);
#define SERIES(k, label, colour, getter)                                           \
    do {                                                                           \
        s[k].name = label;                                                         \
        s[k].color = colour;                                                       \
        for (int i = 0; i < ne; i++) mean_sd(r, nr, eps[i], getter, &s[k].mean[i], &s[k].sd[i]); \
    } while (0)
    fprintf(f, "<div>\n");
    SERIES(0, "top-1", "#4a7fc1", g_acc);
    svg_line_plot(f, "Test accuracy", eps, ne, s, 1);
    SERIES(0, "top-5", "#4a7fc1", g_top5);
    svg_line_plot(f, "Test top-5 accuracy", eps, ne, s, 1);
    SERIES(0, "raw", "#d9534f", g_ece);
    SERIES(1, "temp. scaled", "#5cb85c", g_ece_ts);
    svg_line_plot(f, "Expected calibration error (15 bins)", eps, ne, s, 2);
    SERIES(0, "raw", "#d9534f", g_nll);
    SERIES(1, "temp. scaled", "#5cb85c", g_nll_ts);
    svg_line_plot(f, "Test NLL", eps, ne, s, 2);
    SERIES(0, "FGSM", "#d9534f", g_fgsm);
    SERIES(1, "transfer", "#f0ad4e", g_transfer);
    svg_line_plot(f, "Accuracy under FGSM", eps, ne, s, 2);
    SERIES(0, "confidence", "#9b59b6", g_conf);
    SERIES(1, "accuracy", "#4a7fc1", g_acc);
    svg_line_plot(f, "Mean confidence and accuracy", eps, ne, s, 2);
    fprintf(f, "</div>\n");
    /* reliability diagrams: eps = 0 and the eps with the best mean accuracy, first seed of each */
    int best = 0;
    double best_acc = -1;
    for (int i = 0; i < ne; i++) {
        double m, sd;
        mean_sd(r, nr, eps[i], g_acc, &m, &sd);
        if (m > best_acc) best_acc = m, best = i;
    }
    fprintf(f, "<h2>Reliability diagrams</h2>\n<div>\n");
    const double shown[2] = {eps[0], eps[best]};
    for (int k = 0; k < (best ? 2 : 1); k++)
        for (int i = 0; i < nr; i++)
            if (r[i].eps == shown[k]) {
                char t[128];
                snprintf(t, sizeof t, "eps %g (seed %d)%s", r[i].eps, r[i].seed, k ? ", best accuracy" : "");
                svg_reliability(f, t, &r[i].plain);
                snprintf(t, sizeof t, "eps %g, temperature %.2f", r[i].eps, r[i].temperature);
                svg_reliability(f, t, &r[i].scaled);
                break;
            }
    fprintf(f, "</div>\n<h2>All runs</h2>\n<table>\n<tr><th>eps</th><th>seed</th><th>accuracy</th><th>top-5</th>"
               "<th>NLL</th><th>ECE</th><th>MCE</th><th>Brier</th><th>confidence</th><th>FGSM</th><th>transfer FGSM</th>"
               "<th>T</th><th>NLL (T)</th><th>ECE (T)</th><th>train s</th></tr>\n");
    for (int i = 0; i < nr; i++) {
        const run_result *x = &r[i];
        char transfer[32] = "n/a";
        if (!isnan(x->transfer)) snprintf(transfer, sizeof transfer, "%.4f", x->transfer);
        fprintf(f, "<tr><td>%g</td><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.4f</td>"
                   "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%s</td><td>%.3f</td><td>%.4f</td><td>%.4f</td><td>%.0f</td></tr>\n",
                x->eps, x->seed, x->plain.accuracy, x->plain.top5, x->plain.nll, x->plain.ece, x->plain.mce,
                x->plain.brier, x->plain.mean_confidence, x->fgsm, transfer, x->temperature, x->scaled.nll,
                x->scaled.ece, x->seconds);
    }
    fprintf(f, "</table>\n<p>FGSM: L-infinity, labels from the model's own predictions, clipped to [0, 1]. "
               "Transfer: the examples are crafted on the eps = 0 model of the same seed, the control for "
               "gradient masking. Temperature T fitted on the held-out validation split.</p>\n</body></html>\n");
#undef SERIES
    return lsr_atomic_commit(&af, err);
}

int lsr_cmd_sweep(int argc, char **argv) {
    const char *out_dir = NULL, *eps_arg = "0,0.05,0.1,0.2";
    long long seeds = 3, attack_limit = 2000;
    double attack_eps = 0.3;
    char err[LSR_ERR_LEN];
    /* lsr sweep's own flags; everything else goes to lsr train's parser */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    if (!rest) return cli_error("sweep", "out of memory");
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--help")) {
            printf("usage: lsr sweep --out DIR [--smoothing LIST] [--seeds N] [--attack-eps E]\n"
                   "       [--attack-limit N] [any lsr train flag]\n"
                   "  trains every (eps, seed) (default eps 0,0.05,0.1,0.2 and 3 seeds), evaluates each\n"
                   "  on the test split (accuracy, top-5, NLL, ECE, MCE, Brier, FGSM and transfer FGSM\n"
                   "  from the eps = 0 model, before and after temperature scaling on --val N held-out\n"
                   "  examples, default 10 %% of the training set, at most 5000), and writes\n"
                   "  DIR/results.csv and DIR/report.html.\n"
                   "  --seed S: the runs take seeds S, S+1, ..., S+N-1 (default 0).\n"
                   "  Finished runs are kept in DIR/runs: run the same command again to resume.\n"
                   "  --checkpoint F: each run keeps its own checkpoint, F with -eps<E>-seed<S> before\n"
                   "  the extension, and the same command run again goes on from it (--resume is not\n"
                   "  taken).\n");
            free(rest);
            return 0;
        }
        /* the sweep's own flags, as "--flag VALUE" or "--flag=VALUE" */
        static const char *const own[] = {"--out", "--smoothing", "--seeds", "--attack-eps", "--attack-limit"};
        int which = -1;
        const char *value = NULL;
        for (int f = 0; f < (int)(sizeof own / sizeof own[0]) && which < 0; f++) {
            const size_t len = strlen(own[f]);
            if (!strcmp(a, own[f])) which = f, value = has_value ? argv[++i] : NULL;
            else if (!strncmp(a, own[f], len) && a[len] == '=') which = f, value = a + len + 1;
        }
        if (which >= 0 && !value) {
            snprintf(err, sizeof err, "%s: needs a value", a);
            free(rest);
            return cli_error("sweep", err);
        }
        int bad = 0;
        switch (which) {
        case 0: out_dir = value; break;
        case 1: eps_arg = value; break;
        case 2: bad = cli_int("--seeds", value, 1, MAX_SEEDS, &seeds, err); break;
        case 3: bad = cli_float("--attack-eps", value, 0, 1, &attack_eps, err); break;
        case 4: bad = cli_int("--attack-limit", value, 1, INT64_MAX, &attack_limit, err); break;
        default: rest[nrest++] = argv[i];
        }
        if (bad) {
            free(rest);
            return cli_error("sweep", err);
        }
    }
    double eps[MAX_EPS];
    int ne;
    train_job j;
    train_job_defaults(&j);
    if (lsr_parse_number_list(eps_arg, "--smoothing", 0.0, 1.0, eps, MAX_EPS, &ne, err) || (!out_dir && lsr_fail(err, "--out DIR is required"))) {
        free(rest);
        return cli_error("sweep", err);
    }
    int parsed = train_job_parse(&j, nrest, rest);
    if (!parsed && j.resume_path)
        parsed = lsr_fail(j.err, "--resume is not taken: run the same lsr sweep command again (with "
                                 "--checkpoint F, each unfinished run goes on from its own checkpoint)");
    if (!parsed && j.s.seed > (uint64_t)(INT_MAX - MAX_SEEDS))
        parsed = lsr_fail(j.err, "--seed %llu: at most %d in a sweep (its runs take seeds S to S+N-1)",
                          (unsigned long long)j.s.seed, INT_MAX - MAX_SEEDS);
    const int val_given = j.val_given;
    if (!parsed && val_given && j.val <= 0)
        parsed = lsr_fail(j.err, "--val must hold out examples for temperature scaling");
    if (!parsed && (j.out || j.metrics_path))
        parsed = lsr_fail(j.err, "--out is the sweep's directory; --metrics is not taken");
    if (parsed) {
        free(rest);
        return cli_error("sweep", j.err);
    }
    const int base_seed = (int)j.s.seed;
    const char *checkpoint_base = j.checkpoint_path;
    char runs[4200], path[4300], name[64];
    snprintf(runs, sizeof runs, "%s/runs", out_dir);
    if ((mkdir(out_dir, 0777) != 0 && errno != EEXIST) || (mkdir(runs, 0777) != 0 && errno != EEXIST)) {
        snprintf(err, sizeof err, "--out %s: cannot create the directory: %s", out_dir, strerror(errno));
        free(rest);
        return cli_error("sweep", err);
    }
    snprintf(path, sizeof path, "%s/probe", runs);
    if (lsr_check_writable(path, "--out", err)) {
        free(rest);
        return cli_error("sweep", err);
    }
    cli_set_threads((int)j.threads);

    lsr_dataset all, test;
    if (lsr_data_load_dir(&all, &test, j.data_dir, err)) {
        free(rest);
        return cli_error("sweep", err);
    }
    if (!val_given) { /* fits any training set: 10 %, at most 5000 */
        const int64_t n = j.train_limit > 0 && j.train_limit < all.n ? j.train_limit : all.n;
        j.val = n / 10 < 5000 ? (n / 10 > 0 ? n / 10 : 1) : 5000;
        fprintf(stderr, "lsr sweep: holding out %lld of the %lld training examples for temperature "
                        "scaling (--val N; by default 10 %%, at most 5000)\n",
                (long long)j.val, (long long)n);
    }
    const int classes = all.classes > test.classes ? all.classes : test.classes;
    const int64_t n_attack = attack_limit < test.n ? attack_limit : test.n;
    const int total = ne * (int)seeds;
    run_result *results = calloc((size_t)total, sizeof *results);
    float *logits = malloc((size_t)(test.n > j.val ? test.n : j.val) * classes * sizeof(float));
    float *adv = malloc((size_t)n_attack * (size_t)all.h * all.w * all.c * sizeof(float));
    /* a run's flags, stored in its checkpoint: the sweep's lsr train flags
     * and the run's own, after them */
    char **run_args = calloc((size_t)nrest + 6, sizeof *run_args);
    char run_eps[32], run_seed[32], run_val[32], checkpoint[4300];
    int status = 1, done = 0, trained = 0;
    double trained_seconds = 0.0; /* for the sweep's ETA */
    if (!results || !logits || !adv || !run_args) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    memcpy(run_args, rest, (size_t)nrest * sizeof *run_args);
    run_args[nrest] = "--smoothing";
    run_args[nrest + 1] = run_eps;
    run_args[nrest + 2] = "--seed";
    run_args[nrest + 3] = run_seed;
    run_args[nrest + 4] = "--val";
    run_args[nrest + 5] = run_val;
    snprintf(run_val, sizeof run_val, "%lld", (long long)j.val);
    for (int seed = base_seed; seed < base_seed + seeds; seed++)
        for (int e = 0; e < ne; e++) {
            run_result *r = &results[(seed - base_seed) * ne + e];
            run_name(name, sizeof name, eps[e], seed);
            snprintf(path, sizeof path, "%s/%s.json", runs, name);
            if (load_result(path, r) && r->eps == eps[e] && r->seed == seed) {
                done++;
                fprintf(stderr, "[%d/%d] %s: done before, kept\n", done, total, name);
                continue;
            }
            char prefix[128], eta[48] = "";
            if (trained) {
                const double left = trained_seconds / trained * (total - done);
                snprintf(eta, sizeof eta, left < 90 ? ", sweep ETA %.0f s" : ", sweep ETA %.0f min",
                         left < 90 ? left : left / 60.0);
            }
            snprintf(prefix, sizeof prefix, "[%d/%d %s%s] ", done + 1, total, name, eta);
            const double run_start = lsr_now();
            j.prefix = prefix;
            j.s.loss.smoothing = (float)eps[e];
            j.s.seed = (uint64_t)seed;
            char tag[96];
            snprintf(run_eps, sizeof run_eps, "%g", eps[e]);
            snprintf(run_seed, sizeof run_seed, "%d", seed);
            snprintf(tag, sizeof tag, "sweep:%s", name);
            free(j.command_json);
            j.command_json = train_job_command(nrest + 6, run_args, tag);
            if (!j.command_json) {
                snprintf(err, sizeof err, "out of memory");
                goto out;
            }
            j.resume_path = NULL;
            if (checkpoint_base) {
                run_checkpoint(checkpoint, sizeof checkpoint, checkpoint_base, name);
                j.checkpoint_path = checkpoint;
                const int found = run_checkpoint_matches(checkpoint, j.command_json, err);
                if (found < 0) goto out;
                if (found) j.resume_path = checkpoint;
            }
            lsr_model model;
            lsr_dataset val_set;
            if (train_job_run(&j, &all, classes, &model, &val_set)) {
                snprintf(err, sizeof err, "%s: %.400s", name, j.err);
                goto out;
            }
            int failed = lsr_predict(&model, &val_set, logits, 256, err);
            r->eps = eps[e];
            r->seed = seed;
            r->seconds = j.train_seconds;
            if (!failed) r->temperature = lsr_fit_temperature(logits, val_set.y, val_set.n, classes);
            lsr_dataset_free(&val_set);
            failed = failed || lsr_predict(&model, &test, logits, 256, err);
            if (!failed) {
                lsr_metrics_compute(&r->plain, logits, test.y, test.n, classes, 1.0);
                lsr_metrics_compute(&r->scaled, logits, test.y, test.n, classes, r->temperature);
                r->fgsm = fgsm_accuracy(&model, &model, &test, n_attack, (float)attack_eps, adv, logits, err);
                failed = isnan(r->fgsm);
            }
            r->transfer = NAN;
            if (!failed && eps[0] == 0.0) { /* crafted on this seed's eps = 0 model */
                lsr_model source;
                char source_path[4300];
                run_name(name, sizeof name, 0.0, seed);
                snprintf(source_path, sizeof source_path, "%s/%s.safetensors", runs, name);
                if (lsr_model_load(&source, NULL, source_path, err) == 0) {
                    r->transfer = fgsm_accuracy(&model, &source, &test, n_attack, (float)attack_eps, adv, logits, err);
                    lsr_model_free(&source);
                } else if (eps[e] != 0.0) {
                    failed = 1;
                }
            }
            run_name(name, sizeof name, eps[e], seed);
            snprintf(path, sizeof path, "%s/%s.safetensors", runs, name);
            failed = failed || train_job_save(&j, &model, path, r->temperature, err);
            snprintf(path, sizeof path, "%s/%s.json", runs, name);
            failed = failed || save_result(path, r, err);
            lsr_model_free(&model);
            if (failed) goto out;
            done++;
            trained++;
            trained_seconds += lsr_now() - run_start;
            fprintf(stderr, "%saccuracy %.4f  ECE %.4f -> %.4f (T %.3f)  FGSM %.4f  transfer %.4f\n", prefix,
                    r->plain.accuracy, r->plain.ece, r->scaled.ece, r->temperature, r->fgsm, r->transfer);
        }
    char title[512];
    snprintf(title, sizeof title, "%s on %s, %d epochs, batch %d, %lld seeds, FGSM eps %g on %lld test samples",
             j.model_name, j.data_dir, j.s.epochs, j.s.batch, seeds, attack_eps, (long long)n_attack);
    if (write_report(out_dir, results, total, eps, ne, title, err)) goto out;
    printf("%d runs; %s/results.csv and %s/report.html written\n", total, out_dir, out_dir);
    status = 0;
out:
    if (status) cli_error("sweep", err);
    free(results);
    free(logits);
    free(adv);
    free(run_args);
    free(rest);
    free(j.command_json);
    free(j.metrics_text);
    lsr_dataset_free(&all);
    lsr_dataset_free(&test);
    return status;
}
