/* The training loop: shuffled mini-batches through the model, the
 * label-smoothed loss of liblsr, and an optimizer step; and prediction. */
#ifndef LSR_TRAIN_H
#define LSR_TRAIN_H

#include "lsr/loss.h"
#include "../data/dataset.h"
#include "../net/net.h"
#include "../optim/optim.h"

typedef struct lsr_train_settings {
    int epochs;
    int batch;
    uint64_t seed;                 /* initialisation, shuffling, dropout */
    lsr_init init;
    lsr_optimizer_settings optimizer;
    lsr_loss_options loss;         /* smoothing, convention, prior, weights, ... */
    /* Adversarial training (cleverhans): loss = (1 - w) CE(x) + w CE(FGSM(x)),
     * the FGSM examples made against the current model at every step. */
    float adv_eps;                 /* 0: no adversarial training */
    float adv_weight;              /* w */
} lsr_train_settings;

/* What one step or one epoch did; means over the samples seen. */
typedef struct lsr_train_progress {
    int epoch;                     /* 1-based */
    int64_t step, steps_per_epoch; /* step within the epoch, 1-based */
    int64_t samples;
    double loss, label_ce, prior_ce, accuracy;
    double seconds;                /* since the epoch began */
} lsr_train_progress;

typedef struct lsr_train_callbacks {
    void *ctx;
    void (*step)(void *ctx, const lsr_train_progress *p);   /* after every step, may be NULL */
    int (*epoch)(void *ctx, const lsr_train_progress *p);   /* after every epoch; non-zero stops */
} lsr_train_callbacks;

/* Initialises m's parameters from settings->seed and trains it on data.
 * loss_trace, if not NULL, receives every step's loss (epochs * steps). */
int lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
              const lsr_train_callbacks *cb, float *loss_trace, char *err);

/* logits (data->n, classes) of the model in evaluation mode. */
int lsr_predict(lsr_model *m, const lsr_dataset *data, float *logits, int batch, char *err);

/* Checks that a model and a dataset fit each other: input shape and labels. */
int lsr_check_model_data(const lsr_model *m, const lsr_dataset *d, const char *what, char *err);

#endif
