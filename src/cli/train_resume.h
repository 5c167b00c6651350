/* lsr train --resume: the checkpoint's stored settings, and the flags given
 * with --resume compared with them. */
#ifndef LSR_CLI_TRAIN_RESUME_H
#define LSR_CLI_TRAIN_RESUME_H

#include "train_flags.h"

/* lsr train --resume FILE [the run's flags]: j gets the checkpoint's
 * settings and files; any flag given as well (argv, parsed into j before)
 * must have the stored run's value, except --threads and --quiet, which a
 * resume may change.  0, or -1 (lsr_last_error() says why). */
int train_job_resume_flags(train_job *j, int argc, char **argv);

#endif
