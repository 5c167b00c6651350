#include "train.h"

#include "../attack/fgsm.h"

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

int lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
              const lsr_train_callbacks *cb, float *loss_trace, char *err) {
    if (lsr_check_model_data(m, data, "training data", err)) return -1;
    if (data->n == 0) return lsr_fail(err, "training data: no samples");
    const int B = s->batch, K = m->classes;
    const size_t sample = lsr_shape_size(m->input);
    const int64_t steps = (data->n + B - 1) / B;
    lsr_rng init_rng, rng;
    lsr_rng_seed(&init_rng, s->seed);
    lsr_rng_seed(&rng, s->seed ^ 0x5eed5eed5eed5eedull);
    lsr_model_init_params(m, s->init, &init_rng);

    lsr_optimizer_settings os = s->optimizer;
    if (os.schedule == LSR_SCHEDULE_COSINE && os.total_steps == 0) os.total_steps = steps * s->epochs;
    lsr_optimizer opt;
    if (lsr_model_reserve(m, B, err) || lsr_optimizer_init(&opt, &os, m->n_params, err)) return -1;
    int64_t *order = malloc((size_t)data->n * sizeof *order);
    float *x = malloc((size_t)B * sample * sizeof(float));
    float *dlogits = malloc((size_t)B * K * sizeof(float));
    float *x_adv = s->adv_eps > 0 ? malloc((size_t)B * sample * sizeof(float)) : NULL;
    int64_t *labels = malloc((size_t)B * sizeof(int64_t));
    int status = 0;
    if (!order || !x || !dlogits || !labels || (s->adv_eps > 0 && !x_adv)) {
        status = lsr_fail(err, "training: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < data->n; i++) order[i] = i;

    for (int epoch = 1; epoch <= s->epochs && !status; epoch++) {
        lsr_rng_shuffle(&rng, order, data->n);
        lsr_train_progress p = {epoch, 0, steps, 0, 0, 0, 0, 0, 0};
        double loss_sum = 0, label_sum = 0, prior_sum = 0, hits = 0;
        const double t0 = lsr_now();
        for (int64_t step = 0; step < steps; step++) {
            const int64_t first = step * B;
            const int b = (int)(data->n - first < B ? data->n - first : B);
            for (int j = 0; j < b; j++) {
                const int64_t idx = order[first + j];
                memcpy(x + (size_t)j * sample, data->x + (size_t)idx * sample, sample * sizeof(float));
                labels[j] = data->y[idx];
            }
            /* the adversarial examples come from the model before this step */
            if (x_adv && lsr_fgsm(m, x_adv, x, NULL, b, s->adv_eps, b, err)) {
                status = -1;
                break;
            }
            const float w_adv = x_adv ? s->adv_weight : 0.0f;
            lsr_model_zero_grads(m);
            float loss = 0.0f;
            lsr_loss_stats st = {0};
            for (int pass = 0; pass < (x_adv ? 2 : 1); pass++) {
                const float *logits = lsr_model_forward(m, pass ? x_adv : x, b, 1, &rng);
                float part;
                lsr_loss_stats pst;
                lsr_status ls = lsr_cross_entropy(&part, dlogits, &pst, logits, labels, b, K, K, &s->loss);
                if (ls != LSR_OK) {
                    status = lsr_fail(err, "epoch %d step %lld: loss: %s", epoch, (long long)step + 1,
                                      lsr_last_error());
                    break;
                }
                const float w = pass ? w_adv : 1.0f - w_adv;
                if (w != 1.0f)
                    for (int i = 0; i < b * K; i++) dlogits[i] *= w;
                lsr_model_backward(m, dlogits, b, LSR_GRAD_PARAMS);
                loss += w * part;
                if (pass == 0) st = pst; /* statistics of the clean examples */
            }
            if (status) break;
            lsr_optimizer_step(&opt, m->params, m->grads);
            if (loss_trace) loss_trace[(epoch - 1) * steps + step] = loss;
            loss_sum += (double)loss * b;
            label_sum += st.label_ce * b;
            prior_sum += st.prior_ce * b;
            hits += (double)st.top1_hits;
            p.step = step + 1;
            p.samples += b;
            p.loss = loss_sum / (double)p.samples;
            p.label_ce = label_sum / (double)p.samples;
            p.prior_ce = prior_sum / (double)p.samples;
            p.accuracy = hits / (double)p.samples;
            p.seconds = lsr_now() - t0;
            if (cb && cb->step) cb->step(cb->ctx, &p);
        }
        if (!status && cb && cb->epoch && cb->epoch(cb->ctx, &p)) break;
    }
done:
    free(order);
    free(x);
    free(dlogits);
    free(x_adv);
    free(labels);
    lsr_optimizer_free(&opt);
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
