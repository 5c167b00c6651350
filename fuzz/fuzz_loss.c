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
    if (data[10] & 32) { /* bf16 logits: what float logits of the same values give, bit for bit */
        uint16_t zb[8 * 43], gb[8 * 43];
        float zr[8 * 43], gr[8 * 43], gf[8 * 43], lb[8], lr[8];
        for (int i = 0; i < 8 * 43; i++) {
            uint32_t u;
            memcpy(&u, &logits[i], 4);
            zb[i] = (u & 0x7fffffffu) > 0x7f800000u
                        ? (uint16_t)((u >> 16) | 0x40u)
                        : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
            u = (uint32_t)zb[i] << 16;
            memcpy(&zr[i], &u, 4);
        }
        lsr_loss_options ob = o, of = o;
        ob.logits_dtype = LSR_DTYPE_BFLOAT16;
        ob.grad_dtype = data[10] & 64 ? LSR_DTYPE_BFLOAT16 : LSR_DTYPE_FLOAT32;
        void *g = data[10] & 64 ? (void *)gb : (void *)gf;
        lsr_status b1 = soft ? lsr_cross_entropy_soft(lb, g, NULL, zb, targets, n, k, stride, &ob)
                             : lsr_cross_entropy(lb, g, NULL, zb, labels, n, k, stride, &ob);
        lsr_status b2 = soft ? lsr_cross_entropy_soft(lr, gr, NULL, zr, targets, n, k, stride, &of)
                             : lsr_cross_entropy(lr, gr, NULL, zr, labels, n, k, stride, &of);
        if (b1 != b2) abort();
        if (b1 == LSR_OK && o.reduction != LSR_REDUCTION_NONE && memcmp(lb, lr, 4) != 0) abort();
        for (int64_t i = 0; b1 == LSR_OK && i < n; i++) /* the gradients, the used columns */
            for (int64_t j = 0; j < k; j++) {
                const int64_t at = i * stride + j;
                if (!(data[10] & 64)) {
                    if (memcmp(&gf[at], &gr[at], 4) != 0) abort();
                    continue;
                }
                uint32_t u; /* the float gradient rounded as the library rounds bf16 */
                memcpy(&u, &gr[at], 4);
                const uint16_t want = (u & 0x7f800000u) == 0 ? (uint16_t)((u >> 16) & 0x8000u)
                                      : (u & 0x7fffffffu) > 0x7f800000u
                                          ? (uint16_t)((u >> 16) | 0x40u)
                                          : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
                if (gb[at] != want) abort();
            }
    }
    if ((s1 == LSR_OK) != (s2 == LSR_OK) && s1 != LSR_ERROR_UNSUPPORTED) abort();
    if (s1 == LSR_OK && s2 == LSR_OK && o.reduction != LSR_REDUCTION_NONE &&
        isfinite(loss_ref[0]) && fabsf(loss_ref[0]) < 1e6f &&
        fabsf(loss[0] - loss_ref[0]) > 1e-3f * (1.0f + fabsf(loss_ref[0])))
        abort();
    return 0;
}
