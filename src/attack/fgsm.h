/* The fast gradient sign method (Goodfellow et al.), as the cleverhans
 * tutorial runs it: x_adv = clip(x + eps sign(dL/dx), 0, 1), with L the
 * plain cross-entropy of the model's logits against the true labels or, by
 * default, against the model's own predictions. */
#ifndef LSR_FGSM_H
#define LSR_FGSM_H

#include "../net/net.h"

/* adv (n, D) from x (n, D); labels (n) or NULL for the model's predictions.
 * Uses the model in evaluation mode, batch samples at a time; leaves the
 * model's parameter gradients as they were.  adv may equal x. */
lsr_status lsr_fgsm(lsr_model *m, float *adv, const float *x, const int64_t *labels, int64_t n,
                    float eps, int batch);

#endif
