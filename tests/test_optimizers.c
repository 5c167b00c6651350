/* The optimizers' steps against hand computations (Adam, SGD with momentum
 * and Nesterov, AdamW's decoupled weight decay) and the learning-rate
 * schedule.  The tolerances are a few float ulps of the values compared. */
#include <math.h>

#include "check.h"
#include "optim/optim.h"

/* Adam's first step moves each parameter by lr against its gradient's sign, to 1e-6 (float). */
static void test_adam_first_step(void) {
    lsr_optimizer_settings s = lsr_optimizer_defaults();
    lsr_optimizer_state o;
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -4.0f};
    lsr_optimizer_init(&o, &s, 2);
    lsr_optimizer_step(&o, p, g);
    CHECK(fabsf(p[0] - (1.0f - 1e-3f)) < 1e-6f && fabsf(p[1] - (-2.0f + 1e-3f)) < 1e-6f,
          "adam first step: %g %g", (double)p[0], (double)p[1]);
    lsr_optimizer_free(&o);
}

/* Two SGD steps with momentum 0.9, plain and Nesterov, as by hand, to 1e-6 (float). */
static void test_sgd_momentum(void) {
    /* SGD with momentum 0.9: v1 = g, v2 = 0.9 g + g; Nesterov uses g + mu v */
    lsr_optimizer_settings s = lsr_optimizer_defaults();
    lsr_optimizer_state o;
    s.kind = LSR_OPTIMIZER_SGD;
    s.lr = 0.1f;
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        s.nesterov = nesterov;
        float q = 1.0f, gq = 1.0f;
        lsr_optimizer_init(&o, &s, 1);
        lsr_optimizer_step(&o, &q, &gq);
        lsr_optimizer_step(&o, &q, &gq);
        const double want =
            nesterov ? 1.0 - 0.1 * (1 + 0.9) - 0.1 * (1 + 0.9 * 1.9) : 1.0 - 0.1 - 0.1 * 1.9;
        CHECK(fabs(q - want) < 1e-6, "sgd nesterov=%d: %g, want %g", nesterov, (double)q, want);
        lsr_optimizer_free(&o);
    }
}

/* AdamW decays the weight itself (w (1 - lr wd) with a zero gradient), to 1e-7 (float at 2). */
static void test_adamw_decays_weights(void) {
    lsr_optimizer_settings s = lsr_optimizer_defaults();
    lsr_optimizer_state o;
    s.kind = LSR_OPTIMIZER_ADAMW;
    s.weight_decay = 0.1f;
    float w = 2.0f, zero = 0.0f;
    lsr_optimizer_init(&o, &s, 1);
    lsr_optimizer_step(&o, &w, &zero);
    CHECK(fabsf(w - 2.0f * (1.0f - 1e-4f)) < 1e-7f, "adamw decay: %g", (double)w);
    lsr_optimizer_free(&o);
}

/* Cosine with warm-up: lr / warmup at step 0 and half of lr halfway, to 1e-9 (double). */
static void test_cosine_schedule(void) {
    lsr_optimizer_settings s = lsr_optimizer_defaults();
    lsr_optimizer_state o;
    s.schedule = LSR_SCHEDULE_COSINE;
    s.total_steps = 100;
    s.warmup = 10;
    lsr_optimizer_init(&o, &s, 1);
    CHECK(fabs(lsr_optimizer_lr(&o) - 1e-4) < 1e-9, "warm-up starts at lr/warmup");
    o.t = 50;
    CHECK(fabs(lsr_optimizer_lr(&o) - 0.5e-3) < 1e-9, "cosine halfway");
    lsr_optimizer_free(&o);
}

int main(void) {
    test_adam_first_step();
    test_sgd_momentum();
    test_adamw_decays_weights();
    test_cosine_schedule();
    return check_summary();
}
