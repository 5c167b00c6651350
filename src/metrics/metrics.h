/* What a classifier's predictions are worth: accuracy, top-5, NLL, and
 * calibration (ECE and MCE over 15 equal-width bins, Brier score,
 * confidence minus accuracy); and the temperature that minimises NLL.
 * lsr_metrics, lsr_metrics_compute and lsr_temperature_fit: lsr/train.h. */
#ifndef LSR_METRICS_H
#define LSR_METRICS_H

#include <stdint.h>

#include "lsr/train.h"

/* The first largest logit of each row into pred (n) (may be NULL); returns
 * how many equal labels (n) (0 when labels is NULL).  logits (n, k). */
int64_t lsr_top1(const float *logits, const int64_t *labels, int64_t n, int k, int64_t *pred);

#endif
