/* lsr sweep's runs: what each gives, shared by the run loop (cmd_sweep.c),
 * its results files (sweep_results.c) and its report (sweep_report.c). */
#ifndef LSR_CLI_SWEEP_H
#define LSR_CLI_SWEEP_H

#include "lsr/train.h"

#define SWEEP_MAX_EPS 32 /* values of --smoothing */

typedef struct run_result {
    double eps;
    int seed;
    lsr_metrics plain, scaled;
    double temperature, fgsm, transfer; /* transfer: NAN when there is no eps = 0 model */
    double seconds;
} run_result;

#endif
