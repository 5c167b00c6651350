/* The penultimate layer's picture (Mueller, Kornblith and Hinton 2019,
 * figure 1) for lsr project and lsr sweep's report: test examples of three
 * classes, their penultimate activations projected onto the plane through
 * the three classes' templates (rows of the last layer's weights), one
 * scatter panel per model, and each panel's tightness (projection.h). */
#ifndef LSR_CLI_PROJECTION_PLOT_H
#define LSR_CLI_PROJECTION_PLOT_H

#include <stdio.h>

#include "lsr/train.h"

/* The examples drawn: the first per_class of each class of cls, in the
 * data's order; group[i] in 0..2 is example i's place in cls. */
typedef struct projection_points {
    int cls[3];
    int64_t n, got[3];
    float *x; /* (n, sample) */
    int *group;
} projection_points;

/* cls from "A,B,C": three different classes, each an index or one of
 * names (classes entries, each a name or NULL; names may be NULL), in any
 * case; a name may hold commas, as long as the list reads as three classes
 * in one way only.  The messages of these two name no flag: the caller
 * puts its own before them. */
lsr_status projection_parse_classes(int cls[3], const char *arg, const char *const *names,
                                    int classes);
/* The same by m's names, else data_names' (which may be NULL). */
lsr_status projection_parse_model_classes(int cls[3], const char *arg, const lsr_model *m,
                                          const char *const *data_names, int classes);
lsr_status projection_pick(projection_points *p, const lsr_dataset *test, const int cls[3],
                           int64_t per_class);
void projection_points_free(projection_points *p);

typedef struct projection_panel {
    char title[256];
    float *xy; /* (n, 2), malloc'd */
    double tightness;
} projection_panel;

/* panel: m's picture of p (its xy the caller's to free). */
lsr_status projection_compute(projection_panel *panel, lsr_model *m, const projection_points *p);
/* One SVG plot (svg.h's look) of np panels side by side, the classes
 * labelled names[0..2]. */
void projection_svg(FILE *f, const projection_panel *panels, int np, const projection_points *p,
                    const char *const names[3]);

#endif
