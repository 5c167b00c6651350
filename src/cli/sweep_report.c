/* lsr sweep's report: report.html, self-contained, with inline SVG plots:
 * the metrics against eps (means over seeds, bars one standard deviation),
 * reliability diagrams, and a table of all runs. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../common/common.h"
#include "cli.h"
#include "svg.h"
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
    *sd = n > 1 ? cli_sample_sd(n, s, ss) : 0.0;
}

/* Means over seeds against eps, bars one standard deviation; every value
 * plotted is >= 0, and a probability (most 1) <= 1. */
static void svg_line_plot(FILE *f, const char *title, const char *ylabel, double most,
                          const double *eps, int ne, const series *s, int ns) {
    const double W = 440, H = 280;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < ne; i++)
            if (!isnan(s[k].mean[i])) {
                lo = fmin(lo, s[k].mean[i] - s[k].sd[i]);
                hi = fmax(hi, s[k].mean[i] + s[k].sd[i]);
            }
    svg_frame fr = {60, 30, W - 60 - 120, H - 30 - 45, {0, 0, 0}, {0, 0, 0}};
    fr.ax = svg_axis_over(0, eps[ne - 1], 0, eps[ne - 1] > 0 ? eps[ne - 1] : 1); /* no padding */
    fr.ay = svg_axis_over(lo, hi, 0, most);
    svg_begin(f, W, H);
    svg_title(f, fr.x, 18, title);
    svg_draw_frame(f, &fr, "label smoothing eps", ylabel);
    const char *names[4], *colours[4];
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                s[k].color);
        for (int i = 0; i < ne; i++)
            if (!isnan(s[k].mean[i]))
                fprintf(f, "%.1f,%.1f ", svg_px(&fr, eps[i]), svg_py(&fr, s[k].mean[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < ne; i++) {
            if (isnan(s[k].mean[i])) continue;
            const double x = svg_px(&fr, eps[i]);
            fprintf(f,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                    x, x, svg_py(&fr, fmax(s[k].mean[i] - s[k].sd[i], fr.ay.from)),
                    svg_py(&fr, fmin(s[k].mean[i] + s[k].sd[i], fr.ay.to)), s[k].color, x,
                    svg_py(&fr, s[k].mean[i]), s[k].color);
        }
        names[k] = s[k].name;
        colours[k] = s[k].color;
    }
    svg_legend(f, fr.x + fr.w + 12, fr.y + 4, names, colours, ns);
    svg_end(f);
}

/* Reliability diagram: accuracy per confidence bin against the diagonal,
 * with the bin populations as a histogram below. */
static void svg_reliability(FILE *f, const char *title, const lsr_metrics *m) {
    const double W = 320, H = 450;
    const svg_frame fr = {55, 30, 230, 230, {0, 1, 0.2}, {0, 1, 0.2}};
    svg_begin(f, W, H);
    svg_title(f, fr.x, 18, title);
    svg_draw_frame(f, &fr, "confidence", "accuracy");
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\" "
            "stroke-dasharray=\"4\"/>\n",
            fr.x, fr.y + fr.h, fr.x + fr.w, fr.y);
    const double bw = fr.w / LSR_CALIBRATION_BINS, hist_bottom = fr.y + fr.h + 95;
    int64_t most = 1;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++)
        if (m->bin_count[b] > most) most = m->bin_count[b];
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        if (!m->bin_count[b]) continue;
        const double x = fr.x + b * bw, acc = svg_py(&fr, m->bin_accuracy[b]),
                     conf = svg_py(&fr, m->bin_confidence[b]);
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a7fc1\" "
                "stroke=\"white\"/>"
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d9534f\" "
                "stroke-width=\"2\"/>\n",
                x, acc, bw, fr.y + fr.h - acc, x, x + bw, conf, conf);
        const double hh = 45.0 * (double)m->bin_count[b] / (double)most;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#888\"/>\n",
                x, hist_bottom - hh, bw - 1, hh);
    }
    static const char *const names[3] = {"accuracy", "mean confidence", "examples per bin"};
    static const char *const colours[3] = {"#4a7fc1", "#d9534f", "#888"};
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">ECE %.4f, MCE %.4f</text>\n", fr.x, hist_bottom + 16,
            m->ece, m->mce);
    svg_legend(f, fr.x, hist_bottom + 26, names, colours, 3);
    svg_end(f);
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
static double g_tight(const run_result *r) { return r->tightness; }

lsr_status sweep_report(const char *dir, const run_result *r, int nr, const double *eps, int ne,
                        const char *title, const sweep_projection *proj) {
    char path[4200];
    lsr_atomic_file af;
    series s[3];
    snprintf(path, sizeof path, "%s/report.html", dir);
    LSR_TRY(lsr_atomic_open(&af, path));
    FILE *f = af.f;
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lsr sweep: ", f);
    svg_text(f, title); /* a data path or model spec: escaped */
    fputs("</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
          "table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
          "svg{margin:0.5em}</style>\n"
          "</head><body>\n<h1>Label smoothing sweep</h1>\n<p>",
          f);
    svg_text(f, title);
    fprintf(f, ". %d runs; points are means over seeds, bars one standard deviation.</p>\n", nr);
#define SERIES(k, label, colour, getter)                                                           \
    do {                                                                                           \
        s[k].name = label;                                                                         \
        s[k].color = colour;                                                                       \
        for (int i = 0; i < ne; i++)                                                               \
            mean_sd(r, nr, eps[i], getter, &s[k].mean[i], &s[k].sd[i]);                            \
    } while (0)
    fprintf(f, "<div>\n");
    SERIES(0, "top-1", "#4a7fc1", g_acc);
    svg_line_plot(f, "Test accuracy", "accuracy", 1, eps, ne, s, 1);
    SERIES(0, "top-5", "#4a7fc1", g_top5);
    svg_line_plot(f, "Test top-5 accuracy", "top-5 accuracy", 1, eps, ne, s, 1);
    SERIES(0, "raw", "#d9534f", g_ece);
    SERIES(1, "temp. scaled", "#5cb85c", g_ece_ts);
    svg_line_plot(f, "Expected calibration error (15 bins)", "ECE", 1, eps, ne, s, 2);
    SERIES(0, "raw", "#d9534f", g_nll);
    SERIES(1, "temp. scaled", "#5cb85c", g_nll_ts);
    svg_line_plot(f, "Test NLL", "nats per example", INFINITY, eps, ne, s, 2);
    SERIES(0, "FGSM", "#d9534f", g_fgsm);
    SERIES(1, "transfer", "#f0ad4e", g_transfer);
    svg_line_plot(f, "Accuracy under FGSM", "accuracy", 1, eps, ne, s, 2);
    SERIES(0, "confidence", "#9b59b6", g_conf);
    SERIES(1, "accuracy", "#4a7fc1", g_acc);
    svg_line_plot(f, "Mean confidence and accuracy", "probability", 1, eps, ne, s, 2);
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
    fprintf(f, "</div>\n");
    if (proj) {
        fprintf(f, "<h2>The penultimate layer</h2>\n<p>");
        for (int g = 0; g < 3; g++) {
            svg_text(f, proj->labels[g]);
            fputs(g == 0 ? ", " : g == 1 ? " and " : "", f);
        }
        fprintf(f, ": the penultimate activations of test examples, projected onto the plane "
                   "through the three classes' templates (rows of the last layer's weights), "
                   "first seed; and the within-class over between-class spread in that plane "
                   "(smaller: tighter clusters; M&uuml;ller, Kornblith and Hinton 2019, figure "
                   "1).</p>\n<div>\n");
        const char *names[3] = {proj->labels[0], proj->labels[1], proj->labels[2]};
        projection_svg(f, proj->panels, proj->np, &proj->points, names);
        SERIES(0, "spread", "#9b59b6", g_tight);
        svg_line_plot(f, "Within / between spread", "ratio", INFINITY, eps, ne, s, 1);
        fprintf(f, "</div>\n");
    }
    fprintf(f, "<h2>All runs</h2>\n<table>\n"
               "<tr><th>eps</th><th>seed</th><th>accuracy</th><th>top-5</th>"
               "<th>NLL</th><th>ECE</th><th>MCE</th><th>Brier</th><th>confidence</th>"
               "<th>FGSM</th><th>transfer FGSM</th>"
               "<th>T</th><th>NLL (T)</th><th>ECE (T)</th><th>spread</th><th>train s</th></tr>\n");
    for (int i = 0; i < nr; i++) {
        const run_result *x = &r[i];
        char transfer[32] = "n/a", tightness[32] = "n/a";
        if (!isnan(x->transfer)) snprintf(transfer, sizeof transfer, "%.4f", x->transfer);
        if (!isnan(x->tightness)) snprintf(tightness, sizeof tightness, "%.3f", x->tightness);
        fprintf(f,
                "<tr><td>%g</td><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td>"
                "<td>%.4f</td><td>%.4f</td>"
                "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%s</td><td>%.3f</td>"
                "<td>%.4f</td><td>%.4f</td><td>%s</td><td>%.0f</td></tr>\n",
                x->eps, x->seed, x->plain.accuracy, x->plain.top5, x->plain.nll, x->plain.ece,
                x->plain.mce, x->plain.brier, x->plain.mean_confidence, x->fgsm, transfer,
                x->temperature, x->scaled.nll, x->scaled.ece, tightness, x->seconds);
    }
    fprintf(f, "</table>\n<p>FGSM: L-infinity, labels from the model's own predictions, "
               "clipped to [0, 1]. Transfer: the examples are crafted on the eps = 0 model of "
               "the same seed, the control for gradient masking. Temperature T fitted on the "
               "held-out validation split.</p>\n</body></html>\n");
#undef SERIES
    return lsr_atomic_commit(&af);
}
