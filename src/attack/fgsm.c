#include "fgsm.h"

#include <stdlib.h>
#include <string.h>

#include "../metrics/metrics.h"
#include "lsr/loss.h"

lsr_status lsr_fgsm(lsr_model *m, float *adv, const float *x, const int64_t *labels, int64_t n,
                    float eps, int batch) {
    if (!(eps >= 0.0f && eps <= 1.0f))
        return lsr__fail(LSR_ERROR_OPTION, "fgsm: eps %g is not in [0, 1]", (double)eps);
    if (lsr_model_reserve(m, batch)) return lsr__failed();
    const size_t d = lsr_shape_size(m->input);
    const int k = m->classes;
    float *dlogits = malloc((size_t)batch * k * sizeof(float));
    int64_t *y = malloc((size_t)batch * sizeof(int64_t));
    if (!dlogits || !y) {
        free(dlogits);
        free(y);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "fgsm: out of memory");
    }
    lsr_loss_options o = lsr_loss_options_default();
    o.reduction = LSR_REDUCTION_SUM; /* only the sign matters */
    int status = 0;
    for (int64_t first = 0; first < n && !status; first += batch) {
        const int b = (int)(n - first < batch ? n - first : batch);
        const float *xb = x + (size_t)first * d;
        const float *z = lsr_model_forward(m, xb, b, 0, NULL);
        if (labels)
            memcpy(y, labels + first, (size_t)b * sizeof(int64_t));
        else
            lsr_top1(z, NULL, b, k, y); /* the model's own predictions */
        if (lsr_cross_entropy(NULL, dlogits, NULL, z, y, b, k, k, &o) != LSR_OK) {
            status = lsr__fail(LSR_ERROR_OPTION, "fgsm: %s", lsr_last_error());
            break;
        }
        lsr_model_backward(m, dlogits, b, LSR_GRAD_INPUT);
        const float *g = m->dacts[0];
        float *out = adv + (size_t)first * d;
        for (size_t i = 0; i < (size_t)b * d; i++) {
            const float step = g[i] > 0.0f ? eps : (g[i] < 0.0f ? -eps : 0.0f);
            float v = xb[i] + step;
            out[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        }
    }
    free(dlogits);
    free(y);
    return status;
}

LSR_API lsr_status lsr_fgsm_generate(float *adv, lsr_model *m, const float *x,
                                     const int64_t *labels, int64_t n, float eps) {
    if (!m || (n > 0 && (!adv || !x)))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_fgsm_generate: an argument is NULL");
    if (n < 0) return lsr__fail(LSR_ERROR_SIZE, "lsr_fgsm_generate: n = %lld", (long long)n);
    for (int64_t i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= m->classes)
            return lsr__fail(LSR_ERROR_LABEL,
                             "lsr_fgsm_generate: label %lld of sample %lld is "
                             "outside [0, %d)",
                             (long long)labels[i], (long long)i, m->classes);
    return lsr_fgsm(m, adv, x, labels, n, eps, LSR_PREDICT_BATCH);
}
