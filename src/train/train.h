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
    int skip_nonfinite;            /* a non-finite loss or gradient skips the batch (else stops) */
    int64_t checkpoint_every;      /* steps between checkpoint callbacks; 0: none */
} lsr_train_settings;

/* What one step or one epoch did; means over the samples seen. */
typedef struct lsr_train_progress {
    int epoch;                     /* 1-based */
    int64_t step, steps_per_epoch; /* step within the epoch, 1-based */
    int64_t samples;
    double loss, label_ce, prior_ce, accuracy;
    double seconds;                /* since the epoch began */
    int64_t skipped;               /* batches skipped as non-finite, in the whole run */
} lsr_train_progress;

/* Everything a run needs to go on exactly where it stopped (with the
 * model's parameters): what a checkpoint holds. */
typedef struct lsr_train_state {
    int epoch;                /* 1-based epoch in progress */
    int64_t step;             /* steps of that epoch already taken */
    int64_t n;                /* training samples */
    int64_t *order;           /* (n) this epoch's sample order */
    lsr_rng rng;              /* shuffling and dropout, as after the last step */
    lsr_optimizer opt;        /* moments and step count */
    int64_t skipped;          /* batches skipped as non-finite */
} lsr_train_state;

typedef struct lsr_train_callbacks {
    void *ctx;
    void (*step)(void *ctx, const lsr_train_progress *p);   /* after every step, may be NULL */
    int (*epoch)(void *ctx, const lsr_train_progress *p);   /* after every epoch; non-zero stops */
    /* every checkpoint_every steps, at the end, and when stopping on request;
     * non-zero stops the run with an error */
    int (*checkpoint)(void *ctx, const lsr_model *m, const lsr_train_state *st);
    volatile int *stop;       /* set (by a signal handler) to stop after the current step */
} lsr_train_callbacks;

/* Trains m on data.  Without resume, initialises m's parameters from
 * settings->seed first; with resume (taken over: its arrays are freed), goes
 * on from that state with m's parameters as they are.  loss_trace, if not
 * NULL, receives every step's loss at its global index.  Returns 1 (not an
 * error) when stopped on request after a checkpoint. */
int lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
              const lsr_train_callbacks *cb, lsr_train_state *resume, float *loss_trace, char *err);
void lsr_train_state_free(lsr_train_state *st);

/* logits (data->n, classes) of the model in evaluation mode. */
int lsr_predict(lsr_model *m, const lsr_dataset *data, float *logits, int batch, char *err);

/* Checks that a model and a dataset fit each other: input shape and labels. */
int lsr_check_model_data(const lsr_model *m, const lsr_dataset *d, const char *what, char *err);

#endif
