/* Optimizers (SGD with momentum / Nesterov / weight decay, Adam, AdamW)
 * and learning-rate schedules, over one flat parameter block. */
#ifndef LSR_OPTIM_H
#define LSR_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

typedef enum lsr_optimizer_kind { LSR_OPTIMIZER_SGD, LSR_OPTIMIZER_ADAM, LSR_OPTIMIZER_ADAMW } lsr_optimizer_kind;
typedef enum lsr_schedule_kind { LSR_SCHEDULE_CONSTANT, LSR_SCHEDULE_STEP, LSR_SCHEDULE_COSINE } lsr_schedule_kind;

typedef struct lsr_optimizer_settings {
    lsr_optimizer_kind kind;
    float lr;
    float momentum;      /* SGD */
    int nesterov;        /* SGD */
    float weight_decay;  /* SGD and Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2, eps; /* Adam, AdamW */
    lsr_schedule_kind schedule;
    int64_t step_size;   /* STEP: multiply by gamma every step_size steps */
    float gamma;
    int64_t warmup;      /* linear warm-up over this many steps */
    int64_t total_steps; /* COSINE: decays to 0 over this many steps */
} lsr_optimizer_settings;

lsr_optimizer_settings lsr_optimizer_defaults(void); /* Adam, lr 1e-3, PyTorch's betas and eps */

typedef struct lsr_optimizer {
    lsr_optimizer_settings s;
    int64_t t;           /* steps taken */
    size_t n;
    float *m;            /* (n) first moment or momentum buffer */
    float *v;            /* (n) second moment (Adam) */
} lsr_optimizer;

int lsr_optimizer_init(lsr_optimizer *o, const lsr_optimizer_settings *s, size_t n, char *err);
void lsr_optimizer_free(lsr_optimizer *o);
/* The learning rate the next step uses. */
double lsr_optimizer_lr(const lsr_optimizer *o);
/* params (n) -= update from grads (n). */
void lsr_optimizer_step(lsr_optimizer *o, float *params, const float *grads);

#endif
