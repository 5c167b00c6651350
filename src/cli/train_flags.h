/* lsr train's flags: their table, usage text and parser. */
#ifndef LSR_CLI_TRAIN_FLAGS_H
#define LSR_CLI_TRAIN_FLAGS_H

#include <getopt.h>

#include "train_job.h"

/* train_job_parse: --help was given, and the usage printed (exit status 0) */
#define TRAIN_JOB_HELP 1

/* getopt_long's values for the flags of train_opts */
enum {
    OPT_DATA = 256, /* past every char */
    OPT_MODEL,
    OPT_EPOCHS,
    OPT_BATCH,
    OPT_SEED,
    OPT_THREADS,
    OPT_OPTIMIZER,
    OPT_LR,
    OPT_MOMENTUM,
    OPT_NESTEROV,
    OPT_WD,
    OPT_INIT,
    OPT_SCHEDULE,
    OPT_STEP_SIZE,
    OPT_GAMMA,
    OPT_WARMUP,
    OPT_SMOOTHING,
    OPT_CONVENTION,
    OPT_PRIOR,
    OPT_ZLOSS,
    OPT_LIMIT,
    OPT_VAL,
    OPT_OUT,
    OPT_METRICS,
    OPT_QUIET,
    OPT_IMBALANCE,
    OPT_ADV,
    OPT_ADV_EPS,
    OPT_ADV_WEIGHT,
    OPT_CHECKPOINT,
    OPT_CHECKPOINT_EVERY,
    OPT_RESUME,
    OPT_NONFINITE,
    OPT_PRECISION,
    OPT_MICRO_BATCHES,
    OPT_EXCHANGE,
    OPT_SMOOTHING_MODE,
    OPT_TEACHER,
    OPT_DISTILL_T,
    OPT_DISTILL_W,
    OPT_CLASS_NAMES,
    OPT_HELP
};

/* lsr train's flags, for getopt_long (optstring ":") */
extern const struct option train_opts[];
/* "--name" of a flag of train_opts, "" for others */
const char *train_opt_name(int c);

/* Parses lsr train's flags into j: 0, -1 (lsr_last_error() says why), or
 * TRAIN_JOB_HELP. */
int train_job_parse(train_job *j, int argc, char **argv);

#endif
