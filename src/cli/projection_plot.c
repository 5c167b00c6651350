/* The penultimate layer's picture: projection_plot.h. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../metrics/projection.h"
#include "../train/train.h"
#include "cli.h"
#include "projection_plot.h"
#include "svg.h"

/* The class that s[0, len) names: an index, or a name of names (any case);
 * -1 if none. */
static int find_class(const char *s, size_t len, const char *const *names, int classes) {
    char buf[LSR_CLASS_NAME_MAX + 24];
    if (len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    const long v = strtol(buf, &end, 10);
    if (end != buf && !*end && v >= 0 && v < classes) return (int)v;
    for (int c = 0; names && c < classes; c++)
        if (names[c] && !strcasecmp(buf, names[c])) return c;
    return -1;
}

/* The list's pieces between commas (empty ones left out) are joined into
 * three classes in every way that names three (a name may hold commas):
 * exactly one way must. */
lsr_status projection_parse_classes(int cls[3], const char *arg, const char *const *names,
                                    int classes) {
    enum { MAX_PIECES = 32 };
    size_t from[MAX_PIECES], to[MAX_PIECES]; /* piece p is arg[from[p], to[p]) */
    int pieces = 0;
    for (size_t i = 0; arg[i];) {
        const size_t len = strcspn(arg + i, ",");
        if (len) {
            if (pieces == MAX_PIECES) return lsr__fail(LSR_ERROR_OPTION, "three classes, not more");
            from[pieces] = i;
            to[pieces++] = i + len;
        }
        i += len + (arg[i + len] == ',');
    }
    /* group[p][q]: the class that pieces p..q name, commas and all, or -1 */
    int group[MAX_PIECES][MAX_PIECES];
    for (int p = 0; p < pieces; p++)
        for (int q = p; q < pieces; q++)
            group[p][q] = find_class(arg + from[p], to[q] - from[p], names, classes);
    int ways = 0, found[3] = {0, 0, 0};
    for (int a = 1; a < pieces; a++) /* the second class starts at piece a, the third at b */
        for (int b = a + 1; b < pieces; b++) {
            const int c[3] = {group[0][a - 1], group[a][b - 1], group[b][pieces - 1]};
            if (c[0] < 0 || c[1] < 0 || c[2] < 0 || c[0] == c[1] || c[0] == c[2] || c[1] == c[2])
                continue;
            if (ways++ == 0) memcpy(found, c, sizeof found);
        }
    if (ways == 1) {
        memcpy(cls, found, sizeof found);
        return LSR_OK;
    }
    if (ways > 1)
        return lsr__fail(LSR_ERROR_OPTION,
                         "'%s' reads as three classes in %d ways (names with commas): give "
                         "indices",
                         arg, ways);
    for (int p = 0; p < pieces; p++) { /* a piece in no class, alone or with its neighbours */
        int in_one = 0;
        for (int first = 0; first <= p && !in_one; first++)
            for (int last = p; last < pieces && !in_one; last++)
                in_one = group[first][last] >= 0;
        if (in_one) continue;
        int named = 0;
        for (int c = 0; names && c < classes; c++)
            named |= names[c] != NULL;
        return lsr__fail(LSR_ERROR_OPTION, "'%.*s' is not a class index in [0, %d)%s",
                         (int)(to[p] - from[p]), arg + from[p], classes,
                         named ? " or a class name" : " (no class names are known)");
    }
    if (pieces > 3) return lsr__fail(LSR_ERROR_OPTION, "three classes, not more");
    return lsr__fail(LSR_ERROR_OPTION, "three different classes, comma-separated");
}

lsr_status projection_parse_model_classes(int cls[3], const char *arg, const lsr_model *m,
                                          const char *const *data_names, int classes) {
    const char **names = calloc((size_t)(classes > 0 ? classes : 1), sizeof *names);
    if (!names) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    for (int c = 0; c < classes; c++) { /* m's name, else the data's, else none */
        names[c] = lsr_model_class_name(m, c);
        if (!names[c] && data_names) names[c] = data_names[c];
    }
    const lsr_status st = projection_parse_classes(cls, arg, names, classes);
    free(names);
    return st;
}

lsr_status projection_pick(projection_points *p, const lsr_dataset *test, const int cls[3],
                           int64_t per_class) {
    memset(p, 0, sizeof *p);
    memcpy(p->cls, cls, sizeof p->cls);
    const size_t sample = (size_t)test->h * test->w * test->c;
    p->x = malloc((size_t)(3 * per_class) * sample * sizeof(float));
    p->group = malloc((size_t)(3 * per_class) * sizeof(int));
    if (!p->x || !p->group) {
        projection_points_free(p);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < test->n; i++)
        for (int g = 0; g < 3; g++)
            if (test->y[i] == cls[g] && p->got[g] < per_class) {
                memcpy(p->x + (size_t)p->n * sample, test->x + (size_t)i * sample,
                       sample * sizeof(float));
                p->group[p->n++] = g;
                p->got[g]++;
            }
    for (int g = 0; g < 3; g++)
        if (p->got[g] < 2) {
            const int64_t got = p->got[g];
            projection_points_free(p);
            return lsr__fail(LSR_ERROR_OPTION, "class %d has %lld test examples", cls[g],
                             (long long)got);
        }
    return LSR_OK;
}

void projection_points_free(projection_points *p) {
    free(p->x);
    free(p->group);
    p->x = NULL;
    p->group = NULL;
}

lsr_status projection_compute(projection_panel *panel, lsr_model *m, const projection_points *p) {
    const lsr_layer *last = &m->layers[m->n_layers - 1];
    if (last->kind != LSR_LAYER_DENSE)
        return lsr__fail(LSR_ERROR_OPTION, "the model's last layer is not dense: no templates");
    const int64_t d = (int64_t)lsr_shape_size(last->in), n = p->n;
    const size_t sample = lsr_shape_size(m->input);
    float *acts = malloc((size_t)n * (size_t)d * sizeof(float));
    double *plane = malloc((size_t)(3 * d) * sizeof(double));
    panel->xy = malloc((size_t)n * 2 * sizeof(float));
    lsr_status st =
        acts && plane && panel->xy ? LSR_OK : lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    if (!st) st = lsr_model_reserve(m, LSR_PREDICT_BATCH);
    for (int64_t first = 0; !st && first < n; first += LSR_PREDICT_BATCH) {
        const int b = (int)(n - first < LSR_PREDICT_BATCH ? n - first : LSR_PREDICT_BATCH);
        lsr_model_forward(m, p->x + (size_t)first * sample, b, 0, NULL);
        memcpy(acts + (size_t)first * d, m->acts[m->n_layers - 1],
               (size_t)b * (size_t)d * sizeof(float));
    }
    const float *w = m->params + last->weight_offset; /* (classes, d) */
    if (!st)
        st = lsr_template_plane(plane, plane + d, plane + 2 * d, w + (size_t)p->cls[0] * d,
                                w + (size_t)p->cls[1] * d, w + (size_t)p->cls[2] * d, d);
    if (!st) {
        lsr_project_plane(panel->xy, acts, n, d, plane, plane + d, plane + 2 * d);
        panel->tightness = lsr_cluster_tightness(panel->xy, p->group, n, 3);
    } else {
        free(panel->xy);
        panel->xy = NULL;
    }
    free(acts);
    free(plane);
    return st;
}

#define PANEL_W 340.0
#define PANEL_H 420.0

static const char *const colour[3] = {"#1f77b4", "#d62728", "#2ca02c"}; /* the classes' */

static void svg_panel(FILE *f, const projection_panel *panel, const projection_points *p, double x0,
                      const char *const names[3]) {
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int64_t r = 0; r < p->n; r++)
        for (int a = 0; a < 2; a++) {
            lo[a] = fminf(lo[a], panel->xy[2 * r + a]);
            hi[a] = fmaxf(hi[a], panel->xy[2 * r + a]);
        }
    svg_frame fr = {x0 + 55, 50, PANEL_W - 75, PANEL_H - 50 - 95, {0, 0, 0}, {0, 0, 0}};
    fr.ax = svg_axis_over(lo[0], hi[0], -INFINITY, INFINITY);
    fr.ay = svg_axis_over(lo[1], hi[1], -INFINITY, INFINITY);
    fprintf(f, "<text x=\"%.1f\" y=\"20\" font-size=\"13\" text-anchor=\"middle\">",
            fr.x + fr.w / 2);
    svg_text(f, panel->title);
    fprintf(f,
            "</text>\n<text x=\"%.1f\" y=\"36\" text-anchor=\"middle\" fill=\"#555\">within / "
            "between spread %.3f</text>\n",
            fr.x + fr.w / 2, panel->tightness);
    char xlabel[2 * LSR_CLASS_NAME_MAX + 64], ylabel[LSR_CLASS_NAME_MAX + 64];
    snprintf(xlabel, sizeof xlabel, "from %s's template towards %s's", names[0], names[1]);
    snprintf(ylabel, sizeof ylabel, "towards %s's template", names[2]);
    svg_draw_frame(f, &fr, xlabel, ylabel);
    for (int64_t r = 0; r < p->n; r++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.8\" fill=\"%s\" fill-opacity=\"0.5\"/>\n",
                svg_px(&fr, panel->xy[2 * r]), svg_py(&fr, panel->xy[2 * r + 1]),
                colour[p->group[r]]);
}

void projection_svg(FILE *f, const projection_panel *panels, int np, const projection_points *p,
                    const char *const names[3]) {
    svg_begin(f, PANEL_W * np, PANEL_H);
    for (int k = 0; k < np; k++)
        svg_panel(f, &panels[k], p, PANEL_W * k, names);
    char labels[3][LSR_CLASS_NAME_MAX + 32];
    const char *legend[3];
    for (int g = 0; g < 3; g++) { /* below the panels, outside the data */
        snprintf(labels[g], sizeof labels[g], "%s (%lld examples)", names[g], (long long)p->got[g]);
        legend[g] = labels[g];
    }
    svg_legend(f, 55, PANEL_H - 52, legend, colour, 3);
    svg_end(f);
}
