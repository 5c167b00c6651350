/* lsr sweep's report: report.html, self-contained, with inline SVG plots:
 * the metrics against eps (means over seeds, bars one standard deviation),
 * reliability diagrams, and a table of all runs. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../common/common.h"
#include "sweep_report.h"

typedef struct series {
    const char *name, *color;
    double mean[SWEEP_MAX_EPS], sd[SWEEP_MAX_EPS];
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
#define PY(y) (T + (H - T - B) * (1 - ((y)-lo) / (hi - lo)))
    fprintf(f,
            "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
            W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", L,
            title);
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#999\"/>\n",
            L, T, W - L - R, H - T - B);
    for (int t = 0; t <= 4; t++) {
        const double y = lo + (hi - lo) * t / 4;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 4,
                PY(y) + 4, y);
    }
    for (int i = 0; i < ne; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", PX(eps[i]),
                H - B + 14, eps[i]);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">label smoothing eps</text>\n",
            (L + W - R) / 2, H - 6);
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                s[k].color);
        for (int i = 0; i < ne; i++)
            if (!isnan(s[k].mean[i])) fprintf(f, "%.1f,%.1f ", PX(eps[i]), PY(s[k].mean[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < ne; i++) {
            if (isnan(s[k].mean[i])) continue;
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>",
                    PX(eps[i]), PX(eps[i]), PY(s[k].mean[i] - s[k].sd[i]),
                    PY(s[k].mean[i] + s[k].sd[i]), s[k].color);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(eps[i]),
                    PY(s[k].mean[i]), s[k].color);
        }
        fprintf(f,
                "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
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
    fprintf(f,
            "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
            W, H + 70);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", L,
            title);
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#999\"/>\n",
            L, T, S, S);
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#bbb\" "
            "stroke-dasharray=\"4\"/>\n",
            L, T + S, L + S, T);
    const double bw = S / LSR_CALIBRATION_BINS;
    int64_t most = 1;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++)
        if (m->bin_count[b] > most) most = m->bin_count[b];
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        if (!m->bin_count[b]) continue;
        const double h = S * m->bin_accuracy[b], gap = S * m->bin_confidence[b];
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a7fc1\" "
                "stroke=\"white\"/>",
                L + b * bw, T + S - h, bw, h);
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d9534f\" "
                "stroke-width=\"2\"/>\n",
                L + b * bw, L + (b + 1) * bw, T + S - gap, T + S - gap);
        const double hh = 50.0 * (double)m->bin_count[b] / (double)most;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#888\"/>\n",
                L + b * bw, T + S + 65 - hh, bw - 1, hh);
    }
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\">confidence (0 to 1); blue: accuracy, red: mean "
            "confidence</text>\n",
            L - 30, T + S + 14);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">ECE %.4f, MCE %.4f; grey: samples per bin</text>\n",
            L - 30, T + S + 78, m->ece, m->mce);
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

lsr_status sweep_report(const char *dir, const run_result *r, int nr, const double *eps, int ne,
                        const char *title) {
    char path[4200];
    lsr_atomic_file af;
    series s[3];
    snprintf(path, sizeof path, "%s/report.html", dir);
    LSR_TRY(lsr_atomic_open(&af, path));
    FILE *f = af.f;
    fprintf(f,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lsr sweep: %s</title>\n"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
            "table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "svg{margin:0.5em}</style>\n"
            "</head><body>\n<h1>Label smoothing sweep</h1>\n"
            "<p>%s. %d runs; points are means over seeds, bars one standard deviation.</p>\n",
            title, title, nr);
#define SERIES(k, label, colour, getter)                                                           \
    do {                                                                                           \
        s[k].name = label;                                                                         \
        s[k].color = colour;                                                                       \
        for (int i = 0; i < ne; i++)                                                               \
            mean_sd(r, nr, eps[i], getter, &s[k].mean[i], &s[k].sd[i]);                            \
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
                snprintf(t, sizeof t, "eps %g (seed %d)%s", r[i].eps, r[i].seed,
                         k ? ", best accuracy" : "");
                svg_reliability(f, t, &r[i].plain);
                snprintf(t, sizeof t, "eps %g, temperature %.2f", r[i].eps, r[i].temperature);
                svg_reliability(f, t, &r[i].scaled);
                break;
            }
    fprintf(f, "</div>\n<h2>All runs</h2>\n<table>\n"
               "<tr><th>eps</th><th>seed</th><th>accuracy</th><th>top-5</th>"
               "<th>NLL</th><th>ECE</th><th>MCE</th><th>Brier</th><th>confidence</th>"
               "<th>FGSM</th><th>transfer FGSM</th>"
               "<th>T</th><th>NLL (T)</th><th>ECE (T)</th><th>train s</th></tr>\n");
    for (int i = 0; i < nr; i++) {
        const run_result *x = &r[i];
        char transfer[32] = "n/a";
        if (!isnan(x->transfer)) snprintf(transfer, sizeof transfer, "%.4f", x->transfer);
        fprintf(f,
                "<tr><td>%g</td><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td>"
                "<td>%.4f</td><td>%.4f</td>"
                "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%s</td><td>%.3f</td>"
                "<td>%.4f</td><td>%.4f</td><td>%.0f</td></tr>\n",
                x->eps, x->seed, x->plain.accuracy, x->plain.top5, x->plain.nll, x->plain.ece,
                x->plain.mce, x->plain.brier, x->plain.mean_confidence, x->fgsm, transfer,
                x->temperature, x->scaled.nll, x->scaled.ece, x->seconds);
    }
    fprintf(f, "</table>\n<p>FGSM: L-infinity, labels from the model's own predictions, "
               "clipped to [0, 1]. Transfer: the examples are crafted on the eps = 0 model of "
               "the same seed, the control for gradient masking. Temperature T fitted on the "
               "held-out validation split.</p>\n</body></html>\n");
#undef SERIES
    return lsr_atomic_commit(&af);
}
