/* A training run's progress: the progress bar (on a terminal), one line
 * per epoch on stderr, and the --metrics file of one JSON line per epoch. */
#ifndef LSR_CLI_PROGRESS_H
#define LSR_CLI_PROGRESS_H

#include <stddef.h>

#include "lsr/train.h"

/* Redraws the epoch's bar on stderr, at most every 0.1 s and at the epoch's
 * last step; *last_draw: when it was last drawn.  prefix: before the line,
 * e.g. the sweep's run. */
void progress_draw(const char *prefix, double *last_draw, const lsr_train_progress *p);
/* Ends the bar's line. */
void progress_end_bar(void);
/* The epoch's line on stderr; val_acc NAN: no validation split. */
void progress_epoch_line(const char *prefix, const lsr_train_progress *p, double val_acc);
/* Adds the epoch's JSON line to *text (*len bytes, realloc'd) and writes it
 * all to path, atomically.  step_sd: the standard deviation of the epoch's
 * step losses (NAN: fewer than 2 steps; after a resume, of the steps since). */
lsr_status progress_metrics_append(const char *path, char **text, size_t *len,
                                   const lsr_train_progress *p, double val_acc, double step_sd);
/* On resume, the metrics file keeps the lines of the epochs before the
 * checkpoint's: those of path's lines go into *text. */
void progress_metrics_reload(const char *path, int before_epoch, char **text, size_t *len);

#endif
