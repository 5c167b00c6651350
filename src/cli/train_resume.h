/* lsr train --resume: the checkpoint's stored flags, and the flags given
 * with --resume compared with them. */
#ifndef LSR_CLI_TRAIN_RESUME_H
#define LSR_CLI_TRAIN_RESUME_H

#include "train_flags.h"

/* lsr train --resume FILE [the run's flags]: j gets the stored flags; any
 * flag given as well (argv) must have the stored run's value, except
 * --threads and --quiet, which a resume may change.  0, -1 (j->err set), or
 * TRAIN_JOB_HELP (the stored flags hold --help: the usage printed). */
int train_job_resume_flags(train_job *j, int argc, char **argv);

#endif
