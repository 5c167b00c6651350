#include "metrics.h"

#include <math.h>
#include <string.h>

#include "../common/common.h"

int64_t lsr_top1(const float *logits, const int64_t *labels, int64_t n, int k, int64_t *pred) {
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[best]) best = j;
        if (pred) pred[i] = best;
        if (labels) hits += best == labels[i];
    }
    return hits;
}

/* The arguments every metric needs, checked. */
static lsr_status check_inputs(const char *who, const float *logits, const int64_t *labels,
                               int64_t n, int k) {
    if (n < 0 || k < 1)
        return lsr__fail(LSR_ERROR_SIZE, "%s: n = %lld, k = %d", who, (long long)n, k);
    if (n > 0 && (!logits || !labels))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "%s: logits or labels is NULL", who);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return lsr__fail(LSR_ERROR_LABEL, "%s: label %lld of row %lld is outside [0, %d)", who,
                             (long long)labels[i], (long long)i, k);
    return LSR_OK;
}

LSR_API lsr_status lsr_metrics_compute(lsr_metrics *out, const float *logits, const int64_t *labels,
                                       int64_t n, int k, double temperature) {
    if (!out) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_metrics_compute: out is NULL");
    LSR_TRY(check_inputs("lsr_metrics_compute", logits, labels, n, k));
    if (!(temperature > 0) || !isfinite(temperature))
        return lsr__fail(LSR_ERROR_OPTION, "lsr_metrics_compute: temperature = %g: must be > 0",
                         temperature);
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0) return LSR_OK;
    double hits = 0, top5 = 0, nll = 0, brier = 0, conf_sum = 0;
    double bin_conf[LSR_CALIBRATION_BINS] = {0}, bin_hits[LSR_CALIBRATION_BINS] = {0};
    const double inv_t = 1.0 / temperature;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        const int64_t y = labels[i];
        double zmax = -INFINITY;
        int argmax = 0, above = 0;
        for (int j = 0; j < k; j++) {
            const double v = z[j] * inv_t;
            if (v > zmax) {
                zmax = v;
                argmax = j;
            }
            if (z[j] > z[y]) above++;
        }
        double sum = 0;
        for (int j = 0; j < k; j++)
            sum += exp(z[j] * inv_t - zmax);
        const double lse = zmax + log(sum);
        for (int j = 0; j < k; j++) {
            const double p = exp(z[j] * inv_t - lse), t = j == y ? 1.0 : 0.0;
            brier += (p - t) * (p - t);
        }
        const double conf = exp(zmax - lse);
        const int hit = argmax == y;
        hits += hit;
        top5 += above < 5;
        nll += lse - z[y] * inv_t;
        conf_sum += conf;
        /* bins (b/15, (b+1)/15]; a NaN confidence (non-finite logits) goes to bin 0 */
        const double scaled = ceil(conf * LSR_CALIBRATION_BINS);
        int bin = scaled >= 1.0 ? (int)fmin(scaled, LSR_CALIBRATION_BINS) - 1 : 0;
        if (bin >= LSR_CALIBRATION_BINS) bin = LSR_CALIBRATION_BINS - 1;
        out->bin_count[bin]++;
        bin_conf[bin] += conf;
        bin_hits[bin] += hit;
    }
    out->accuracy = hits / (double)n;
    out->top5 = top5 / (double)n;
    out->nll = nll / (double)n;
    out->brier = brier / (double)n;
    out->mean_confidence = conf_sum / (double)n;
    out->overconfidence = out->mean_confidence - out->accuracy;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        if (!out->bin_count[b]) continue;
        const double c = (double)out->bin_count[b];
        out->bin_confidence[b] = bin_conf[b] / c;
        out->bin_accuracy[b] = bin_hits[b] / c;
        const double gap = fabs(out->bin_accuracy[b] - out->bin_confidence[b]);
        out->ece += c / (double)n * gap;
        if (gap > out->mce) out->mce = gap;
    }
    return LSR_OK;
}

static double mean_nll(const float *logits, const int64_t *labels, int64_t n, int k, double t) {
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        double zmax = -INFINITY, sum = 0;
        for (int j = 0; j < k; j++)
            if (z[j] / t > zmax) zmax = z[j] / t;
        for (int j = 0; j < k; j++)
            sum += exp(z[j] / t - zmax);
        total += zmax + log(sum) - z[labels[i]] / t;
    }
    return total / (double)(n ? n : 1);
}

LSR_API lsr_status lsr_temperature_fit(double *temperature, const float *logits,
                                       const int64_t *labels, int64_t n, int k) {
    if (!temperature)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_temperature_fit: temperature is NULL");
    LSR_TRY(check_inputs("lsr_temperature_fit", logits, labels, n, k));
    if (n == 0) return lsr__fail(LSR_ERROR_SIZE, "lsr_temperature_fit: no rows to fit on");
    /* NLL(T) is unimodal in log T for the cases that matter; golden-section search */
    const double g = 0.5 * (sqrt(5.0) - 1.0);
    double a = log(0.01), b = log(100.0);
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = mean_nll(logits, labels, n, k, exp(c)), fd = mean_nll(logits, labels, n, k, exp(d));
    for (int it = 0; it < 80 && b - a > 1e-7; it++) {
        if (fc < fd) {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = mean_nll(logits, labels, n, k, exp(c));
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = mean_nll(logits, labels, n, k, exp(d));
        }
    }
    *temperature = exp(0.5 * (a + b));
    return LSR_OK;
}
