#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lsr_optimizer_settings lsr_optimizer_defaults(void) {
    lsr_optimizer_settings s;
    memset(&s, 0, sizeof s);
    s.kind = LSR_OPTIMIZER_ADAM;
    s.lr = 1e-3f;
    s.momentum = 0.9f;
    s.beta1 = 0.9f;
    s.beta2 = 0.999f;
    s.eps = 1e-8f;
    s.schedule = LSR_SCHEDULE_CONSTANT;
    s.gamma = 0.1f;
    return s;
}

lsr_status lsr_optimizer_init(lsr_optimizer_state *o, const lsr_optimizer_settings *s, size_t n) {
    memset(o, 0, sizeof *o);
    o->s = *s;
    o->n = n;
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = s->kind == LSR_OPTIMIZER_SGD ? NULL : calloc(n ? n : 1, sizeof(float));
    if (!o->m || (s->kind != LSR_OPTIMIZER_SGD && !o->v)) {
        lsr_optimizer_free(o);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "optimizer: out of memory for %zu parameters", n);
    }
    return 0;
}

void lsr_optimizer_free(lsr_optimizer_state *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

double lsr_optimizer_lr(const lsr_optimizer_state *o) {
    const lsr_optimizer_settings *s = &o->s;
    double lr = s->lr;
    if (s->warmup > 0 && o->t < s->warmup) lr *= (double)(o->t + 1) / (double)s->warmup;
    if (s->schedule == LSR_SCHEDULE_STEP && s->step_size > 0)
        lr *= pow(s->gamma, (double)(o->t / s->step_size));
    else if (s->schedule == LSR_SCHEDULE_COSINE && s->total_steps > 0) {
        double frac = (double)o->t / (double)s->total_steps;
        if (frac > 1.0) frac = 1.0;
        lr *= 0.5 * (1.0 + cos(3.14159265358979323846 * frac));
    }
    return lr;
}

void lsr_optimizer_step(lsr_optimizer_state *o, float *params, const float *grads) {
    const lsr_optimizer_settings *s = &o->s;
    const float lr = (float)lsr_optimizer_lr(o), wd = s->weight_decay;
    const int64_t n = (int64_t)o->n;
    o->t++;
    float *m = o->m, *v = o->v;
    if (s->kind == LSR_OPTIMIZER_SGD) {
        const float mu = s->momentum;
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) {
            float g = grads[i] + wd * params[i];
            if (mu != 0.0f) {
                m[i] = o->t == 1 ? g : mu * m[i] + g; /* PyTorch: the first step copies g */
                g = s->nesterov ? g + mu * m[i] : m[i];
            }
            params[i] -= lr * g;
        }
        return;
    }
    const float b1 = s->beta1, b2 = s->beta2, eps = s->eps;
    const float c1 = (float)(1.0 - pow(b1, (double)o->t)),
                c2 = (float)(1.0 - pow(b2, (double)o->t));
    const float step = lr / c1, root_c2 = sqrtf(c2);
    const int decoupled = s->kind == LSR_OPTIMIZER_ADAMW;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float g = grads[i];
        if (decoupled)
            params[i] *= 1.0f - lr * wd;
        else
            g += wd * params[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        params[i] -= step * m[i] / (sqrtf(v[i]) / root_c2 + eps);
    }
}
