/* What lsr sweep keeps of its runs, read back when it resumes: each
 * finished run's OUT/runs/NAME.json and each run's checkpoint; and
 * OUT/results.csv of all runs. */
#ifndef LSR_CLI_SWEEP_RESULTS_H
#define LSR_CLI_SWEEP_RESULTS_H

#include <stddef.h>

#include "lsr/train.h"
#include "sweep.h"

/* Writes r to path (JSON), atomically. */
lsr_status sweep_result_save(const char *path, const run_result *r);
/* 1: loaded; 0: absent or unreadable (the run is redone). */
int sweep_result_load(const char *path, run_result *r);
/* Writes dir/results.csv, one line per run of r[0..nr). */
lsr_status sweep_results_csv(const char *dir, const run_result *r, int nr);
/* --checkpoint F: each run keeps its own, F with -NAME before the
 * extension (run.ckpt: run-eps0.1-seed2.ckpt) */
void sweep_run_checkpoint(char *buf, size_t size, const char *base, const char *name);
/* The run's checkpoint at path: 1 if it holds this very run (its stored
 * settings are s and its note is note: resume from it), 0 if there is none,
 * -1 (lsr_last_error() says why) if it holds another run or cannot be read. */
int sweep_checkpoint_matches(const char *path, const lsr_train_settings *s, const char *note);

#endif
