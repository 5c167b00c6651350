/* The loss API with options, shapes and values from the input: every call
 * returns a status, and when both succeed the fast and reference results
 * agree. */
#include <math.h>

#include "fuzz_input.h"
#include "lsr/loss.h"

static float take_float(const uint8_t **p, const uint8_t *end) {
    float v = 0.0f;
    if (end - *p >= 4) {
        memcpy(&v, *p, 4);
        *p += 4;
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 12) return 0;
    const uint8_t *p = data + 12, *end = data + size;
    const int64_t n = data[0] % 9, k = 1 + data[1] % 40, stride = k + data[2] % 3;
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = (float)(data[3] % 12) / 10.0f;            /* up to 1.1: also out of range */
    o.convention = (lsr_smoothing_convention)(data[4] % 3); /* 2 is invalid */
    o.reduction = (lsr_reduction)(data[5] % 4);             /* 3 is invalid */
    o.z_loss = data[6] % 4 == 3 ? -1.0f : (float)(data[6] % 4) * 1e-3f;
    o.threads = 1 + data[7] % 2;
    o.isa = (lsr_isa)(data[8] % 4);
    o.ignore_index = data[9] % 2 ? LSR_IGNORE_INDEX_DEFAULT : 0;
    const int soft = data[10] & 1, in_place = data[10] & 2, use_prior = data[10] & 4,
              use_weights = data[10] & 8, stats_wanted = data[10] & 16;
    float logits[8 * 43], targets[8 * 43], grad[8 * 43], grad_ref[8 * 43], loss[8], loss_ref[8];
    float prior[40], weights[40];
    int64_t labels[8];
    for (int i = 0; i < 8 * 43; i++) {
        logits[i] = take_float(&p, end);
        const float t = fabsf(take_float(&p, end));
        targets[i] =
            isfinite(t) ? t / (1.0f + t) : 1.0f; /* the domain the precision is for: [0, 1] */
    }
    double sum = 0;
    for (int j = 0; j < k; j++)
        sum += prior[j] = (float)(1 + (j * 7 + data[11]) % 5);
    for (int j = 0; j < k; j++) {
        prior[j] = (float)(prior[j] / sum);
        weights[j] = (float)((j + data[11]) % 4) * 0.5f;
    }
    for (int i = 0; i < 8; i++)
        labels[i] = (int64_t)(p < end ? *p++ : 0) % (k + 1) - (i % 5 == 4 ? 100 : 0);
    o.prior = use_prior ? prior : NULL;
    o.class_weights = use_weights ? weights : NULL;
    lsr_loss_stats st, st_ref;
    memcpy(grad, logits, sizeof grad);
    lsr_status s1, s2;
    /* in place: the gradient overwrites a copy of the logits */
    const float *z = in_place ? grad : logits;
    if (soft) {
        s1 = lsr_cross_entropy_soft(loss, grad, stats_wanted ? &st : NULL, z, targets, n, k, stride,
                                    &o);
        s2 = lsr_cross_entropy_soft_reference(loss_ref, grad_ref, &st_ref, logits, targets, n, k,
                                              stride, &o);
    } else {
        s1 = lsr_cross_entropy(loss, grad, stats_wanted ? &st : NULL, z, labels, n, k, stride, &o);
        s2 = lsr_cross_entropy_reference(loss_ref, grad_ref, &st_ref, logits, labels, n, k, stride,
                                         &o);
    }
    if (s1 >= LSR_STATUS_COUNT || s2 >= LSR_STATUS_COUNT) abort();
    if ((s1 == LSR_OK) != (s2 == LSR_OK) && s1 != LSR_ERROR_UNSUPPORTED) abort();
    if (s1 == LSR_OK && s2 == LSR_OK && o.reduction != LSR_REDUCTION_NONE &&
        isfinite(loss_ref[0]) && fabsf(loss_ref[0]) < 1e6f &&
        fabsf(loss[0] - loss_ref[0]) > 1e-3f * (1.0f + fabsf(loss_ref[0])))
        abort();
    return 0;
}
