#include "train.h"

#include "../attack/fgsm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lsr_check_model_data(const lsr_model *m, const lsr_dataset *d, const char *what, char *err) {
    if (d->h != m->input.h || d->w != m->input.w || d->c != m->input.c)
        return lsr_fail(err, "%s: samples are %dx%dx%d but the model takes %dx%dx%d", what, d->h,
                        d->w, d->c, m->input.h, m->input.w, m->input.c);
    for (int64_t i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= m->classes)
            return lsr_fail(err, "%s: sample %lld has label %lld but the model has %d classes",
                            what, (long long)i, (long long)d->y[i], m->classes);
    return 0;
}

void lsr_train_state_free(lsr_train_state *st) {
    free(st->order);
    lsr_optimizer_free(&st->opt);
    memset(st, 0, sizeof *st);
}

static int grads_finite(const lsr_model *m) {
    float sum = 0.0f;
    for (size_t i = 0; i < m->n_params; i++) sum += m->grads[i] * 0.0f; /* NaN or inf poison it */
    return sum == 0.0f;
}

int lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
              const lsr_train_callbacks *cb, lsr_train_state *resume, float *loss_trace, char *err) {
    lsr_train_state st;
    memset(&st, 0, sizeof st);
    if (resume) {
        st = *resume;
        memset(resume, 0, sizeof *resume);
    }
    int status = 0;
    float *x = NULL, *dlogits = NULL, *x_adv = NULL;
    int64_t *labels = NULL;
    if (lsr_check_model_data(m, data, "training data", err)) goto fail;
    if (data->n == 0) {
        lsr_fail(err, "training data: no samples");
        goto fail;
    }
    const int B = s->batch, K = m->classes;
    const size_t sample = lsr_shape_size(m->input);
    const int64_t steps = (data->n + B - 1) / B;
    if (!resume) {
        lsr_rng init_rng;
        lsr_rng_seed(&init_rng, s->seed);
        lsr_rng_seed(&st.rng, s->seed ^ 0x5eed5eed5eed5eedull);
        lsr_model_init_params(m, s->init, &init_rng);
        lsr_optimizer_settings os = s->optimizer;
        if (os.schedule == LSR_SCHEDULE_COSINE && os.total_steps == 0) os.total_steps = steps * s->epochs;
        if (lsr_optimizer_init(&st.opt, &os, m->n_params, err)) goto fail;
        st.epoch = 1;
        st.n = data->n;
        st.order = malloc((size_t)data->n * sizeof *st.order);
        if (!st.order) {
            lsr_fail(err, "training: out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < data->n; i++) st.order[i] = i;
        lsr_rng_shuffle(&st.rng, st.order, data->n); /* the first epoch's order */
    } else if (st.n != data->n || st.opt.n != m->n_params) {
        lsr_fail(err, "resume: the checkpoint has %lld samples and %zu parameters, the run %lld and %zu",
                 (long long)st.n, st.opt.n, (long long)data->n, m->n_params);
        goto fail;
    }
    if (lsr_model_reserve(m, B, err)) goto fail;
    x = malloc((size_t)B * sample * sizeof(float));
    dlogits = malloc((size_t)B * K * sizeof(float));
    x_adv = s->adv_eps > 0 ? malloc((size_t)B * sample * sizeof(float)) : NULL;
    labels = malloc((size_t)B * sizeof(int64_t));
    if (!x || !dlogits || !labels || (s->adv_eps > 0 && !x_adv)) {
        lsr_fail(err, "training: out of memory");
        goto fail;
    }

    /* The state always means: about to take step st.step of epoch st.epoch
     * in st.order.  The next epoch's order is drawn as soon as an epoch ends,
     * so a checkpoint taken at any step boundary resumes exactly. */
    while (st.epoch <= s->epochs && !status) {
        lsr_train_progress p = {st.epoch, 0, steps, 0, 0, 0, 0, 0, 0, st.skipped};
        double loss_sum = 0, label_sum = 0, prior_sum = 0, hits = 0;
        const double t0 = lsr_now();
        int epoch_end = 0;
        while (!epoch_end) {
            const int64_t first = st.step * B;
            const int b = (int)(data->n - first < B ? data->n - first : B);
            for (int j = 0; j < b; j++) {
                const int64_t idx = st.order[first + j];
                memcpy(x + (size_t)j * sample, data->x + (size_t)idx * sample, sample * sizeof(float));
                labels[j] = data->y[idx];
            }
            /* the adversarial examples come from the model before this step */
            if (x_adv && lsr_fgsm(m, x_adv, x, NULL, b, s->adv_eps, b, err)) goto fail;
            const float w_adv = x_adv ? s->adv_weight : 0.0f;
            lsr_model_zero_grads(m);
            float loss = 0.0f;
            lsr_loss_stats stats = {0};
            int nonfinite = 0;
            for (int pass = 0; pass < (x_adv ? 2 : 1); pass++) {
                const float *logits = lsr_model_forward(m, pass ? x_adv : x, b, 1, &st.rng);
                float part;
                lsr_loss_stats pst;
                lsr_status ls = lsr_cross_entropy(&part, dlogits, &pst, logits, labels, b, K, K, &s->loss);
                if (ls == LSR_ERROR_NONFINITE) {
                    nonfinite = 1;
                    break;
                }
                if (ls != LSR_OK) {
                    lsr_fail(err, "epoch %d step %lld: loss: %s", st.epoch, (long long)st.step + 1,
                             lsr_last_error());
                    goto fail;
                }
                const float w = pass ? w_adv : 1.0f - w_adv;
                if (w != 1.0f)
                    for (int i = 0; i < b * K; i++) dlogits[i] *= w;
                lsr_model_backward(m, dlogits, b, LSR_GRAD_PARAMS);
                loss += w * part;
                if (pass == 0) stats = pst; /* statistics of the clean examples */
            }
            if (!nonfinite && !grads_finite(m)) nonfinite = 1;
            if (nonfinite && !s->skip_nonfinite) {
                lsr_fail(err, "epoch %d step %lld: the loss or its gradient is not finite (the run "
                              "diverged; try a lower --lr, or --on-nonfinite skip)",
                         st.epoch, (long long)st.step + 1);
                goto fail;
            }
            if (nonfinite) {
                p.skipped = ++st.skipped;
                loss = NAN;
            } else {
                lsr_optimizer_step(&st.opt, m->params, m->grads);
                loss_sum += (double)loss * b;
                label_sum += stats.label_ce * b;
                prior_sum += stats.prior_ce * b;
                hits += (double)stats.top1_hits;
                p.samples += b;
            }
            const int64_t global = (int64_t)(st.epoch - 1) * steps + st.step;
            if (loss_trace) loss_trace[global] = loss;
            p.step = st.step + 1;
            const double seen = p.samples ? (double)p.samples : 1.0;
            p.loss = loss_sum / seen;
            p.label_ce = label_sum / seen;
            p.prior_ce = prior_sum / seen;
            p.accuracy = hits / seen;
            p.seconds = lsr_now() - t0;
            if (cb && cb->step) cb->step(cb->ctx, &p);

            if (++st.step == steps) { /* on to the next epoch's order */
                lsr_rng_shuffle(&st.rng, st.order, data->n);
                st.epoch++;
                st.step = 0;
                epoch_end = 1;
            }
            const int stop = cb && cb->stop && *cb->stop;
            const int due = s->checkpoint_every && (global + 1) % s->checkpoint_every == 0;
            const int last = epoch_end && st.epoch > s->epochs;
            if (cb && cb->checkpoint && (stop || due || last) && cb->checkpoint(cb->ctx, m, &st))
                goto fail;
            if (epoch_end && cb && cb->epoch && cb->epoch(cb->ctx, &p)) {
                status = 1;
                break;
            }
            if (stop) {
                status = 1;
                break;
            }
        }
    }
    goto done;
fail:
    status = -1;
done:
    free(x);
    free(dlogits);
    free(x_adv);
    free(labels);
    lsr_train_state_free(&st);
    return status;
}

int lsr_predict(lsr_model *m, const lsr_dataset *data, float *logits, int batch, char *err) {
    if (lsr_check_model_data(m, data, "data", err) || lsr_model_reserve(m, batch, err)) return -1;
    const size_t sample = lsr_shape_size(m->input);
    for (int64_t first = 0; first < data->n; first += batch) {
        const int b = (int)(data->n - first < batch ? data->n - first : batch);
        const float *out = lsr_model_forward(m, data->x + (size_t)first * sample, b, 0, NULL);
        memcpy(logits + (size_t)first * m->classes, out, (size_t)b * m->classes * sizeof(float));
    }
    return 0;
}
