/* lsr sweep's runs: what each gives, shared by the run loop (cmd_sweep.c),
 * its results files (sweep_results.c) and its report (sweep_report.c). */
#ifndef LSR_CLI_SWEEP_H
#define LSR_CLI_SWEEP_H

#include "lsr/train.h"
#include "projection_plot.h"

#define SWEEP_MAX_EPS 32 /* values of --smoothing */

typedef struct run_result {
    double eps;
    int seed;
    lsr_metrics plain, scaled;
    double temperature, fgsm, transfer; /* transfer: NAN when there is no eps = 0 model */
    double seconds;
    double tightness; /* the penultimate layer's, in the report's plane; NAN: not measured */
} run_result;

/* The report's picture of the penultimate layer: the plane of three
 * classes, each run's tightness in it (run_result), and the panels of the
 * first seed's runs (up to 4 eps). */
#define SWEEP_MAX_PANELS 4
typedef struct sweep_projection {
    projection_points points;
    char labels[3][LSR_CLASS_NAME_MAX]; /* the three classes' names */
    projection_panel panels[SWEEP_MAX_PANELS];
    int np;
} sweep_projection;

#endif
