/* The trainer (lsr/train.h is its public side): the training loop and
 * prediction (train.c), the settings and their record (settings.c), model
 * files and checkpoints (files.c); the state a checkpoint holds. */
#ifndef LSR_TRAIN_INTERNAL_H
#define LSR_TRAIN_INTERNAL_H

#include "../data/dataset.h"
#include "../modelfile/modelfile.h"
#include "../net/net.h"
#include "../optim/optim.h"
#include "lsr/loss.h"
#include "lsr/train.h"

/* Everything a run needs to go on exactly where it stopped (with the
 * model's parameters): what a checkpoint holds. */
struct lsr_train_state {
    int epoch;                   /* 1-based epoch in progress */
    int64_t step;                /* steps of that epoch already taken */
    int64_t n;                   /* training samples */
    int64_t *order;              /* (n) this epoch's sample order */
    lsr_rng rng;                 /* shuffling and dropout, as after the last step */
    lsr_optimizer_state opt;     /* moments and step count */
    int64_t skipped;             /* steps skipped as non-finite */
    lsr_train_settings settings; /* the run's, its default initialisation resolved */
    char spec[LSR_SPEC_LEN];     /* the model's architecture */
    uint64_t data_hash;          /* lsr_train_data_hash of the training data */
    uint64_t params_hash;        /* lsr_train_params_hash of the parameters it was saved
                                    with (a loaded state; 0 otherwise) */
};

/* FNV-1a hashes: of a dataset's shape, samples and labels (which data a
 * run trains on), and of a model's parameters (that a resumed state gets
 * the model it was saved with). */
uint64_t lsr_train_data_hash(const lsr_dataset *d);
uint64_t lsr_train_params_hash(const lsr_model *m);

/* names[0..classes) fit to be a model's class names (each a name of at
 * most LSR_CLASS_NAME_MAX - 1 bytes of UTF-8 without control characters,
 * all different, and a model file's metadata holds them), or the status
 * bad with a message prefixed with what. */
lsr_status lsr_class_names_fit(const char *const *names, int classes, const char *what,
                               lsr_status bad);

/* The optimizer settings of a run of s on n samples: the cosine schedule's
 * length resolved (the one place it is computed). */
lsr_optimizer_settings lsr_train_optimizer_settings(const lsr_train_settings *s, int64_t n);

/* m's parameters at the start of a fresh run of s: drawn from s->seed. */
void lsr_train_init_params(lsr_model *m, const lsr_train_settings *s);

/* Checks s: every setting in range, named in the message. */
lsr_status lsr_train_settings_check(const lsr_train_settings *s);

/* Checks that a model and a dataset fit each other: input shape and labels.
 * what names the data in the message. */
lsr_status lsr_check_model_data(const lsr_model *m, const lsr_dataset *d, const char *what);

/* The settings in metadata (settings.c): one string entry per setting,
 * under the names docs/model-format.md lists, and "settings_version".
 * Reading starts from lsr_train_settings_default(); *found tells whether md
 * held any setting (old files may hold none). */
#define LSR_SETTINGS_VERSION 1
void lsr_settings_to_metadata(lsr_metadata *md, const lsr_train_settings *s);
lsr_status lsr_settings_from_metadata(lsr_train_settings *s, int *found, const lsr_metadata *md,
                                      const char *path);
/* The same, every setting required (checkpoints hold them all). */
lsr_status lsr_settings_from_metadata_all(lsr_train_settings *s, const lsr_metadata *md,
                                          const char *path);
/* 1 if a and b differ in any recorded setting, why then naming the first
 * (its key and both values); 0 if they are the same. */
int lsr_settings_differ(const lsr_train_settings *a, const lsr_train_settings *b, char *why,
                        size_t size);

/* LSR as label resampling (LSR_SMOOTHING_SAMPLE): out[j] = labels[j], or
 * with probability eps a draw from u (the prior, else the convention's:
 * uniform over the K classes, or over the K - 1 others); sample j's draws
 * come from key and j alone.  out may be labels. */
void lsr_smoothing_resample(int64_t *out, const int64_t *labels, int64_t n, int k, double eps,
                            lsr_smoothing_convention convention, const float *prior, uint64_t key);

#endif
