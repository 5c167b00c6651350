/* lsr sweep's report: OUT/report.html, self-contained, with inline SVG plots. */
#ifndef LSR_CLI_SWEEP_REPORT_H
#define LSR_CLI_SWEEP_REPORT_H

#include "sweep.h"

/* Writes dir/report.html of the runs r[0..nr) over the eps values eps[0..ne),
 * with the penultimate layer's section when proj is not NULL. */
lsr_status sweep_report(const char *dir, const run_result *r, int nr, const double *eps, int ne,
                        const char *title, const sweep_projection *proj);

#endif
