/* lsr train's settings and steps, shared with lsr sweep: the job, its
 * defaults, its run, and its model file.  Its flags: train_flags.h. */
#ifndef LSR_CLI_TRAIN_JOB_H
#define LSR_CLI_TRAIN_JOB_H

#include "../data/dataset.h"
#include "../train/train.h"

/* lsr train's defaults (also in its usage text) */
#define TRAIN_DEFAULT_EPOCHS 6
#define TRAIN_DEFAULT_BATCH 128
#define TRAIN_DEFAULT_CHECKPOINT_EVERY 200 /* steps, with --checkpoint */
#define TRAIN_DEFAULT_ADV_EPS 0.3          /* with --adv fgsm */
#define TRAIN_DEFAULT_ADV_WEIGHT 0.5       /* with --adv fgsm */

typedef struct train_job {
    const char *data_dir, *model_name, *prior_arg, *out, *metrics_path, *convention_name;
    const char *optimizer_name, *schedule_name, *init_name;
    long long threads, train_limit, val;
    int val_given; /* --val was on the command line, in any spelling */
    double imbalance;
    const char *adv;
    int quiet, tty;
    lsr_precision precision;
    lsr_train_settings s;
    /* progress and metrics */
    double last_draw;
    char *metrics_text;
    size_t metrics_len;
    lsr_model *model;
    const lsr_dataset *val_set;
    const char *prefix; /* before progress lines, e.g. the sweep's run */
    const char *checkpoint_path, *resume_path;
    char *command_json;   /* the run's flags, stored in checkpoints */
    void *resume_command; /* on resume: the parsed stored flags (cJSON), owned */
    volatile int *stop;   /* set by SIGINT / SIGTERM */
    int stopped_epoch;
    long long stopped_step;
    int64_t training_samples;
    double train_seconds;
    char err[LSR_ERR_LEN];
} train_job;

void train_job_defaults(train_job *j);
/* Splits all (limit, validation, imbalance), builds the model and trains it;
 * val_set gets the held-out examples. */
int train_job_run(train_job *j, const lsr_dataset *all, int classes, lsr_model *model,
                  lsr_dataset *val_set);
/* Writes the model with the run's settings in its metadata (temperature if > 0). */
int train_job_save(const train_job *j, const lsr_model *model, const char *path, double temperature,
                   char *err);

#endif
