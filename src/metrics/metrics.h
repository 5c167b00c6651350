/* What a classifier's predictions are worth: accuracy, top-5, NLL, and
 * calibration (ECE and MCE over 15 equal-width bins, Brier score,
 * confidence minus accuracy); and the temperature that minimises NLL. */
#ifndef LSR_METRICS_H
#define LSR_METRICS_H

#include <stdint.h>

#define LSR_CALIBRATION_BINS 15

typedef struct lsr_metrics {
    int64_t n;
    double accuracy, top5, nll, brier;
    double ece, mce;          /* expected and maximum calibration error */
    double mean_confidence;
    double overconfidence;    /* mean confidence - accuracy */
    int64_t bin_count[LSR_CALIBRATION_BINS];
    double bin_confidence[LSR_CALIBRATION_BINS], bin_accuracy[LSR_CALIBRATION_BINS];
} lsr_metrics;

/* The first largest logit of each row into pred (n) (may be NULL); returns
 * how many equal labels (n) (0 when labels is NULL).  logits (n, k). */
int64_t lsr_top1(const float *logits, const int64_t *labels, int64_t n, int k, int64_t *pred);

/* logits (n, k), labels (n) in [0, k); softmax(logits / temperature). */
void lsr_metrics_compute(lsr_metrics *out, const float *logits, const int64_t *labels, int64_t n,
                         int k, double temperature);

/* The T > 0 minimising the mean NLL of softmax(logits / T) (golden-section
 * search on log T in [1/100, 100]). */
double lsr_fit_temperature(const float *logits, const int64_t *labels, int64_t n, int k);

#endif
