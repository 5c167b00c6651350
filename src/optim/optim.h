/* Optimizers (SGD with momentum / Nesterov / weight decay, Adam, AdamW)
 * and learning-rate schedules, over one flat parameter block. */
#ifndef LSR_OPTIM_H
#define LSR_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "lsr/train.h"

/* lsr_optimizer_settings: lsr/train.h */

lsr_optimizer_settings lsr_optimizer_defaults(void); /* Adam, lr 1e-3, PyTorch's betas and eps */

typedef struct lsr_optimizer_state {
    lsr_optimizer_settings s;
    int64_t t; /* steps taken */
    size_t n;
    float *m; /* (n) first moment or momentum buffer */
    float *v; /* (n) second moment (Adam) */
} lsr_optimizer_state;

lsr_status lsr_optimizer_init(lsr_optimizer_state *o, const lsr_optimizer_settings *s, size_t n);
void lsr_optimizer_free(lsr_optimizer_state *o);
/* The learning rate the next step uses. */
double lsr_optimizer_lr(const lsr_optimizer_state *o);
/* params (n) -= update from grads (n). */
void lsr_optimizer_step(lsr_optimizer_state *o, float *params, const float *grads);

#endif
