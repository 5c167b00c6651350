/* lsr train's job, shared with lsr sweep: the library's settings, where the
 * run's files go, its progress display; its run and its model file.  Its
 * flags: train_flags.h. */
#ifndef LSR_CLI_TRAIN_JOB_H
#define LSR_CLI_TRAIN_JOB_H

#include <stddef.h>

#include "lsr/train.h"

/* lsr train's defaults (also in its usage text) */
#define TRAIN_DEFAULT_EPOCHS 6
#define TRAIN_DEFAULT_BATCH 128
/* under mpirun: each batch in this many parts, whatever the process count */
#define TRAIN_DEFAULT_MICRO_BATCHES 4
#define TRAIN_DEFAULT_CHECKPOINT_EVERY 200 /* steps, with --checkpoint */
#define TRAIN_DEFAULT_ADV_EPS 0.3          /* with --adv fgsm */
#define TRAIN_DEFAULT_ADV_WEIGHT 0.5       /* with --adv fgsm */

typedef struct train_job {
    lsr_train_settings s;   /* everything that decides the result (lsr/train.h) */
    const char *model_name; /* --model: a preset or a spec */
    /* the run's files (NULL: none) */
    const char *out, *metrics_path, *checkpoint_path, *resume_path;
    const char *class_names_path; /* --class-names FILE, or NULL */
    int resume_epoch;             /* on resume: the checkpoint's epoch in progress */
    long long checkpoint_every;   /* steps between checkpoints, with --checkpoint */
    char *note;        /* those files as JSON, stored in checkpoints (lsr sweep adds its run) */
    void *resume_note; /* on resume: the checkpoint's note (cJSON), which the paths point into */
    /* how to run it; a resume may change these */
    long long threads;
    long long micro_batches; /* under mpirun: the parts of each batch (lsr_train_parallel) */
    int allreduce;           /* under mpirun: --exchange allreduce (P-dependent bits) */
    int single_process;      /* a run of lsr sweep: one process even under mpirun */
    int quiet, tty;
    int val_given; /* --val was on the command line, in any spelling */
    /* flags resolved when parsing ends */
    const char *prior_arg, *convention_name, *optimizer_name, *schedule_name, *init_name, *adv;
    /* progress and metrics */
    double last_draw;
    double step_sum, step_sum2; /* this epoch's step losses: their sum and sum of squares */
    int64_t step_count;
    char *metrics_text;
    size_t metrics_len;
    lsr_model *model;
    const lsr_dataset *val_set;
    const char *prefix; /* before progress lines, e.g. the sweep's run */
    volatile int *stop; /* set by SIGINT / SIGTERM */
    int stopped_epoch;
    long long stopped_step;
    double train_seconds;
} train_job;

void train_job_defaults(train_job *j);
/* j->note from j's files (and the sweep's run name, if not NULL). */
lsr_status train_job_make_note(train_job *j, const char *sweep_run);
/* Splits all (limit, validation, imbalance), builds the model (or loads the
 * checkpoint of --resume) and trains it; *model and val_set (the held-out
 * examples) are the caller's to free.  LSR_OK, LSR_STOPPED (a signal, after
 * the checkpoint), or an error with lsr_last_error() set. */
lsr_status train_job_run(train_job *j, const lsr_dataset *all, int classes, lsr_model **model,
                         lsr_dataset *val_set);

#endif
