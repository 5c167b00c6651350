#include "train.h"

#include "../attack/fgsm.h"
#include "../loss/loss_internal.h"
#include "../metrics/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

LSR_API lsr_status lsr_train_split(lsr_dataset *train, lsr_dataset *val, const lsr_dataset *all,
                                   const lsr_train_settings *s) {
    if (!train || !val || !all || !s)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_train_split: an argument is NULL");
    LSR_TRY(lsr_train_settings_check(s));
    LSR_TRY(lsr_dataset_split(train, val, all, s->train_limit, s->val_samples, s->seed));
    if (s->imbalance > 1) {
        const lsr_status st = lsr_dataset_imbalance(train, s->imbalance, s->seed);
        if (st != LSR_OK) {
            lsr_dataset_free(train);
            lsr_dataset_free(val);
            return st;
        }
    }
    return LSR_OK;
}

lsr_status lsr_check_model_data(const lsr_model *m, const lsr_dataset *d, const char *what) {
    if (d->h != m->input.h || d->w != m->input.w || d->c != m->input.c)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "%s: samples are %dx%dx%d but the model takes %dx%dx%d", what, d->h, d->w,
                         d->c, m->input.h, m->input.w, m->input.c);
    for (int64_t i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= m->classes)
            return lsr__fail(LSR_ERROR_MISMATCH,
                             "%s: sample %lld has label %lld but the model has %d classes", what,
                             (long long)i, (long long)d->y[i], m->classes);
    return LSR_OK;
}

LSR_API void lsr_train_state_free(lsr_train_state *st) {
    if (!st) return;
    free(st->order);
    lsr_optimizer_free(&st->opt);
    free(st);
}

LSR_API int lsr_train_state_epoch(const lsr_train_state *st) { return st->epoch; }
LSR_API int64_t lsr_train_state_step(const lsr_train_state *st) { return st->step; }

static int grads_finite(const lsr_model *m) {
    float sum = 0.0f;
    for (size_t i = 0; i < m->n_params; i++)
        sum += m->grads[i] * 0.0f; /* NaN or inf poison it */
    return sum == 0.0f;
}

/* The smoothing prior of s for m on data, or NULL (the convention's). */
static lsr_status resolve_prior(float **prior, const lsr_train_settings *s, const lsr_model *m,
                                const lsr_dataset *data) {
    *prior = NULL;
    if (s->prior_source == LSR_PRIOR_UNIFORM) return LSR_OK;
    float *p = malloc((size_t)m->classes * sizeof *p);
    if (!p) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "prior: out of memory");
    const lsr_status st = s->prior_source == LSR_PRIOR_DATA
                              ? lsr_prior_from_labels(p, data->y, data->n, m->classes)
                              : lsr_prior_read(p, s->prior_file, m->classes);
    if (st != LSR_OK) {
        free(p);
        return st;
    }
    *prior = p;
    return LSR_OK;
}

void lsr_train_init_params(lsr_model *m, const lsr_train_settings *s) {
    lsr_rng init_rng;
    lsr_rng_seed(&init_rng, s->seed);
    lsr_model_init_params(m, s->init, &init_rng);
}

/* A fresh run's state: parameters initialised, the first epoch's order. */
static lsr_status start_state(lsr_train_state *st, lsr_model *m, const lsr_dataset *data,
                              const lsr_train_settings *s) {
    lsr_train_init_params(m, s);
    lsr_rng_seed(&st->rng, s->seed ^ 0x5eed5eed5eed5eedull);
    const lsr_optimizer_settings os = lsr_train_optimizer_settings(s, data->n);
    LSR_TRY(lsr_optimizer_init(&st->opt, &os, m->n_params));
    st->epoch = 1;
    st->n = data->n;
    st->order = malloc((size_t)data->n * sizeof *st->order);
    if (!st->order) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "training: out of memory");
    for (int64_t i = 0; i < data->n; i++)
        st->order[i] = i;
    lsr_rng_shuffle(&st->rng, st->order, data->n); /* the first epoch's order */
    return LSR_OK;
}

/* A checkpoint's state fits the run: the same settings, data size and
 * parameters, and a step inside an epoch. */
/* FNV-1a over 8-byte words (then the last bytes): a data set's 188 MB in a
 * fraction of the time a byte at a time takes. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t lsr_train_data_hash(const lsr_dataset *d) {
    const int64_t shape[4] = {d->n, d->h, d->w, d->c};
    uint64_t h = fnv1a(0xcbf29ce484222325ull, shape, sizeof shape);
    h = fnv1a(h, d->x, (size_t)d->n * (size_t)d->h * d->w * d->c * sizeof(float));
    return fnv1a(h, d->y, (size_t)d->n * sizeof(int64_t));
}

uint64_t lsr_train_params_hash(const lsr_model *m) {
    return fnv1a(0xcbf29ce484222325ull, m->params, m->n_params * sizeof(float));
}

static lsr_status check_resume(const lsr_train_state *st, const lsr_model *m,
                               const lsr_dataset *data, const lsr_train_settings *s) {
    char why[512];
    if (lsr_settings_differ(&st->settings, s, why, sizeof why))
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "resume: the checkpoint's run has other settings: its %s here", why);
    if (strcmp(st->spec, m->spec) != 0)
        return lsr__fail(LSR_ERROR_MISMATCH, "resume: the checkpoint's model is %.300s, not %.300s",
                         st->spec, m->spec);
    if (st->params_hash != lsr_train_params_hash(m))
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "resume: the model's parameters are not those the "
                         "checkpoint was saved with (pass the model lsr_checkpoint_load gave)");
    if (st->data_hash != lsr_train_data_hash(data))
        return lsr__fail(LSR_ERROR_MISMATCH, "resume: the training data is not the checkpoint's "
                                             "run's (other samples, labels or order)");
    const int64_t steps = (data->n + s->batch - 1) / s->batch;
    if (st->n != data->n || st->opt.n != m->n_params)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "resume: the checkpoint has %lld samples and %zu parameters, the run "
                         "%lld and %zu",
                         (long long)st->n, st->opt.n, (long long)data->n, m->n_params);
    if (st->epoch < 1 || st->step < 0 || st->step >= steps)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "resume: the checkpoint is at epoch %d step %lld, "
                         "outside the run",
                         st->epoch, (long long)st->step);
    return LSR_OK;
}

/* The buffers of one step. */
typedef struct step_buffers {
    float *x, *dlogits, *x_adv;
    int64_t *labels;
    int64_t *drawn; /* LSR_SMOOTHING_SAMPLE: the labels the step trains on */
    /* distillation: the teacher, its soft targets, the student's logits / T
     * and their gradient (B x K each) */
    lsr_model *teacher;
    float *soft, *scaled, *dsoft;
    /* data-parallel runs: every rank's parts, gathered (see part_bytes) */
    unsigned char *mine, *all;
    int *bytes, *offsets;
} step_buffers;

/* Data parallel: a part's record, its sums then its gradient. */
enum { PART_LOSS, PART_LABEL_CE, PART_PRIOR_CE, PART_HITS, PART_VALID, PART_NONFINITE, PART_SUMS };
static size_t part_bytes(const lsr_model *m) {
    return PART_SUMS * sizeof(double) + m->n_params * sizeof(float);
}
/* A rank's record: whether it was asked to stop and its failure status (as
 * doubles), then its parts. */
#define RANK_HEADER (2 * sizeof(double))
static int part_first(int rank, int ranks, int parts) {
    return (int)((int64_t)rank * parts / ranks);
}

/* The dropout stream of one part of one step: a function of the run's
 * random state (which only the epochs' shuffles advance in a data-parallel
 * run, the same on every rank), the step and the part. */
static uint64_t mix64(uint64_t h) { /* splitmix64's finaliser */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}
/* The run's random state as one number: the root of the streams drawn per
 * step below (the state only moves with the epochs' shuffles when they are
 * used, so they are the same on every rank and after a resume). */
static uint64_t state_hash(const lsr_train_state *st) {
    return mix64(st->rng.s[0] ^ mix64(st->rng.s[1] ^ mix64(st->rng.s[2] ^ st->rng.s[3])));
}
static void part_rng(lsr_rng *r, const lsr_train_state *st, int part) {
    uint64_t h = mix64(state_hash(st) ^ (uint64_t)st->epoch);
    h = mix64(h ^ (uint64_t)st->step);
    lsr_rng_seed(r, mix64(h ^ (uint64_t)part));
}

void lsr_smoothing_resample(int64_t *out, const int64_t *labels, int64_t n, int k, double eps,
                            lsr_smoothing_convention convention, const float *prior, uint64_t key) {
    for (int64_t j = 0; j < n; j++) {
        lsr_rng r;
        lsr_rng_seed(&r, mix64(key ^ mix64((uint64_t)j)));
        const int64_t y = labels[j];
        out[j] = y;
        if (!(lsr_rng_uniform(&r) < eps)) continue;
        if (prior) { /* by the prior's cumulative sums */
            const double u = lsr_rng_uniform(&r);
            double c = 0.0;
            int64_t pick = -1, last = y; /* last: the last class the prior can give */
            for (int i = 0; i < k; i++) {
                if (prior[i] > 0.0f) last = i;
                c += prior[i];
                if (pick < 0 && u < c && prior[i] > 0.0f) pick = i;
            }
            if (pick < 0) pick = last; /* u past the rounded sum */
            out[j] = pick;
        } else if (convention == LSR_SMOOTHING_OTHERS && k > 1) { /* one of the K - 1 others */
            const int64_t pick = (int64_t)lsr_rng_below(&r, (uint64_t)(k - 1));
            out[j] = pick < y ? pick : pick + 1;
        } else {
            out[j] = (int64_t)lsr_rng_below(&r, (uint64_t)k);
        }
    }
}

/* LSR_SMOOTHING_SAMPLE: the step's labels drawn into buf->drawn (from the
 * run's random state, the epoch and the step: the same for any process
 * count, and after a resume); returns the labels the step trains on and sets
 * *train to the options it trains with (no smoothing when drawn). */
static const int64_t *step_labels(lsr_loss_options *train, const step_buffers *buf,
                                  const lsr_train_state *st, const lsr_train_settings *s,
                                  const lsr_loss_options *lo, int b, int k) {
    *train = *lo;
    if (s->smoothing_mode != LSR_SMOOTHING_SAMPLE || !(lo->smoothing > 0.0f)) return buf->labels;
    const uint64_t key =
        mix64(mix64(state_hash(st) ^ 0x6c616265ull ^ (uint64_t)st->epoch) ^ (uint64_t)st->step);
    lsr_smoothing_resample(buf->drawn, buf->labels, b, k, lo->smoothing, lo->convention, lo->prior,
                           key);
    train->smoothing = 0.0f;
    return buf->drawn;
}

/* Distillation (settings.teacher) on n samples x whose student logits are z
 * and whose label loss's gradient is in dlogits (already divided by the
 * batch's divisor, as scale is): dlogits becomes the gradient of
 *   (1 - A) (label loss) + A T^2 scale sum_rows H(softmax(z_t / T), softmax(z / T))
 * and *loss (the label loss, scaled alike) the loss itself.  The soft part
 * is lsr_cross_entropy_soft on z / T (its gradient times A T: the chain rule
 * gives 1 / T, the weight A T^2). */
static lsr_status distill(float *loss, float *dlogits, const step_buffers *buf, const float *x,
                          const float *z, int n, int k, const lsr_train_settings *s, double scale) {
    const double T = s->distill_temperature, A = s->distill_weight;
    LSR_TRY(lsr_model_probabilities(buf->soft, buf->teacher, x, n, T)); /* its softmax at T */
    for (size_t i = 0; i < (size_t)n * k; i++) {
        if (!isfinite(buf->soft[i])) /* from a logit that is not finite */
            return lsr__fail(LSR_ERROR_NONFINITE, "the teacher %s has a non-finite logit",
                             s->teacher);
        buf->scaled[i] = (float)(z[i] / T);
    }
    lsr_loss_options o = lsr_loss_options_default();
    o.reduction = LSR_REDUCTION_SUM;
    float soft_loss;
    LSR_TRY(
        lsr_cross_entropy_soft(&soft_loss, buf->dsoft, NULL, buf->scaled, buf->soft, n, k, k, &o));
    const float keep = (float)(1.0 - A), w = (float)(A * T * scale);
    for (size_t i = 0; i < (size_t)n * k; i++)
        dlogits[i] = keep * dlogits[i] + w * buf->dsoft[i];
    *loss = (float)((1.0 - A) * *loss + A * T * T * scale * soft_loss);
    return LSR_OK;
}

/* One step on samples order[first..first+b): forward, loss, backward (twice
 * with adversarial training), then the optimizer step unless non-finite.
 * *loss and *stats: the step's loss and the clean examples' statistics;
 * *nonfinite: the loss or gradient was NaN or infinite. */
static lsr_status train_step(float *loss, lsr_loss_stats *stats, int *nonfinite, lsr_model *m,
                             lsr_train_state *st, const step_buffers *buf, const lsr_dataset *data,
                             const lsr_train_settings *s, const lsr_loss_options *lo, int b) {
    const int K = m->classes;
    const size_t sample = lsr_shape_size(m->input);
    const int64_t first = st->step * s->batch;
    for (int j = 0; j < b; j++) {
        const int64_t idx = st->order[first + j];
        memcpy(buf->x + (size_t)j * sample, data->x + (size_t)idx * sample, sample * sizeof(float));
        buf->labels[j] = data->y[idx];
    }
    /* the adversarial examples come from the model before this step */
    if (buf->x_adv) LSR_TRY(lsr_fgsm(m, buf->x_adv, buf->x, NULL, b, s->adv_eps, b));
    const float w_adv = buf->x_adv ? s->adv_weight : 0.0f;
    lsr_loss_options lt; /* the options and labels the step trains with */
    const int64_t *labels = step_labels(&lt, buf, st, s, lo, b, K);
    lsr_model_zero_grads(m);
    *loss = 0.0f;
    *nonfinite = 0;
    for (int pass = 0; pass < (buf->x_adv ? 2 : 1); pass++) {
        const float *logits = lsr_model_forward(m, pass ? buf->x_adv : buf->x, b, 1, &st->rng);
        float part;
        lsr_loss_stats pst;
        lsr_status ls = lsr_cross_entropy(&part, buf->dlogits, &pst, logits, labels, b, K, K, &lt);
        if (ls == LSR_OK && pass == 0 && labels != buf->labels) /* H(q,p), H(u,p) as always */
            ls = lsr_cross_entropy(NULL, NULL, &pst, logits, buf->labels, b, K, K, lo);
        if (ls == LSR_OK && buf->teacher) /* not with adversarial passes (settings check) */
            ls = distill(&part, buf->dlogits, buf, buf->x, logits, b, K, s, 1.0 / b);
        if (ls == LSR_ERROR_NONFINITE) {
            *nonfinite = 1;
            return LSR_OK;
        }
        if (ls != LSR_OK)
            return lsr__fail(ls, "epoch %d step %lld: loss: %s", st->epoch, (long long)st->step + 1,
                             lsr_last_error());
        const float w = pass ? w_adv : 1.0f - w_adv;
        if (w != 1.0f)
            for (int i = 0; i < b * K; i++)
                buf->dlogits[i] *= w;
        lsr_model_backward(m, buf->dlogits, b, LSR_GRAD_PARAMS);
        *loss += w * part;
        if (pass == 0) *stats = pst; /* statistics of the clean examples */
    }
    if (!grads_finite(m)) *nonfinite = 1;
    if (!*nonfinite) lsr_optimizer_step(&st->opt, m->params, m->grads);
    return LSR_OK;
}

/* One data-parallel step (lsr_train_parallel): this rank's parts of the
 * batch, each's gradient and sums into its record, every rank's records
 * gathered, the gradients summed in part order, the optimizer step.
 * *stop_any: some rank was asked to stop (its *cb->stop, or stop_pending: a
 * callback's LSR_STOPPED since the last exchange) before this step's
 * exchange.  A failure on one rank reaches the others in the exchange: every
 * rank returns an error, none waits for the others. */
static lsr_status train_step_parallel(float *loss, lsr_loss_stats *stats, int *nonfinite,
                                      int *stop_any, int stop_pending, lsr_model *m,
                                      lsr_train_state *st, const step_buffers *buf,
                                      const lsr_dataset *data, const lsr_train_settings *s,
                                      const lsr_loss_options *lo, int b,
                                      const lsr_train_callbacks *cb) {
    const lsr_train_parallel *par = cb->parallel;
    const int K = m->classes, M = par->micro_batches, P = par->size;
    const size_t sample = lsr_shape_size(m->input), record = part_bytes(m);
    const int64_t first = st->step * s->batch;
    for (int j = 0; j < b; j++) { /* the whole batch's labels: the divisors are the batch's */
        const int64_t idx = st->order[first + j];
        buf->labels[j] = data->y[idx];
    }
    double ce_scale, z_scale;
    lsr__loss_divisors(&ce_scale, &z_scale, lo, buf->labels, b);
    lsr_loss_options lt; /* the options and labels the parts train with */
    const int64_t *drawn = step_labels(&lt, buf, st, s, lo, b, K);
    const double asked = stop_pending || (cb->stop && *cb->stop) ? 1.0 : 0.0;
    lsr_status failed = LSR_OK; /* this rank's, told to the others in the exchange */
    /* allreduce mode: this rank's parts summed here, in part order */
    float *local = par->allreduce ? (float *)(void *)buf->all : NULL;
    double total[PART_SUMS + 2] = {0}; /* and whether some rank asked to stop, or failed */
    const int p0 = part_first(par->rank, P, M), p1 = part_first(par->rank + 1, P, M);
    for (int part = p0; part < p1 && !failed; part++) {
        unsigned char *rec = buf->mine + RANK_HEADER + (size_t)(part - p0) * record;
        double sums[PART_SUMS] = {0};
        const int lo_j = (int)((int64_t)part * b / M), hi_j = (int)((int64_t)(part + 1) * b / M);
        const int n = hi_j - lo_j;
        for (int j = 0; j < n; j++) {
            const int64_t idx = st->order[first + lo_j + j];
            memcpy(buf->x + (size_t)j * sample, data->x + (size_t)idx * sample,
                   sample * sizeof(float));
        }
        const int64_t *labels = drawn + lo_j;
        if (n > 0 && buf->x_adv &&
            (failed = lsr_fgsm(m, buf->x_adv, buf->x, NULL, n, s->adv_eps, n)))
            break;
        lsr_model_zero_grads(m);
        const double w_adv = buf->x_adv ? s->adv_weight : 0.0;
        lsr_rng rng;
        part_rng(&rng, st, part);
        for (int pass = 0; n > 0 && pass < (buf->x_adv ? 2 : 1) && !sums[PART_NONFINITE]; pass++) {
            const double w = pass ? w_adv : 1.0 - w_adv;
            const float *logits = lsr_model_forward(m, pass ? buf->x_adv : buf->x, n, 1, &rng);
            lsr__loss_sums ls;
            if ((failed = lsr__cross_entropy_rows(&ls, NULL, buf->dlogits, logits, labels, n, K, K,
                                                  &lt, w * ce_scale, w * z_scale)))
                break;
            lsr__loss_sums stat = ls; /* H(q,p), H(u,p) as always, when the labels were drawn */
            if (pass == 0 && drawn != buf->labels &&
                (failed = lsr__cross_entropy_rows(&stat, NULL, NULL, logits, buf->labels + lo_j, n,
                                                  K, K, lo, ce_scale, z_scale)))
                break;
            if (ls.first_bad >= 0) {
                sums[PART_NONFINITE] = 1.0;
                break;
            }
            float part_loss = (float)ls.loss;
            if (buf->teacher && (failed = distill(&part_loss, buf->dlogits, buf, buf->x, logits, n,
                                                  K, s, ce_scale))) {
                if (failed == LSR_ERROR_NONFINITE) { /* as a non-finite loss: skipped or stops */
                    failed = LSR_OK;
                    sums[PART_NONFINITE] = 1.0;
                }
                break;
            }
            lsr_model_backward(m, buf->dlogits, n, LSR_GRAD_PARAMS);
            sums[PART_LOSS] += buf->teacher ? (double)part_loss : ls.loss;
            if (pass == 0) { /* the clean examples' statistics */
                sums[PART_LABEL_CE] = stat.label_ce;
                sums[PART_PRIOR_CE] = stat.prior_ce;
                sums[PART_HITS] = (double)stat.hits;
                sums[PART_VALID] = (double)stat.valid;
            }
        }
        if (local) {
            for (int v = 0; v < PART_SUMS; v++)
                total[v] += sums[v];
            if (part == p0)
                memcpy(local, m->grads, m->n_params * sizeof(float));
            else
                for (size_t i = 0; i < m->n_params; i++)
                    local[i] += m->grads[i];
            continue;
        }
        memcpy(rec, sums, sizeof sums);
        memcpy(rec + sizeof sums, m->grads, m->n_params * sizeof(float));
    }
    *stop_any = 0;
    if (failed) lsr_model_zero_grads(m); /* what is exchanged is then not used */
    const double header[2] = {asked, (double)failed};
    memcpy(buf->mine, header, sizeof header);
    if (local) { /* the ranks' sums added by MPI_Allreduce, in its order */
        if (p0 == p1 || failed) memset(local, 0, m->n_params * sizeof(float));
        total[PART_SUMS] = asked;
        total[PART_SUMS + 1] = failed ? 1.0 : 0.0;
        LSR_TRY(par->allreduce(par->ctx, local, (int)m->n_params, total, PART_SUMS + 2));
        if (failed) return failed;
        if (total[PART_SUMS + 1] != 0.0)
            return lsr__fail(LSR_ERROR_IO, "epoch %d step %lld: another process failed", st->epoch,
                             (long long)st->step + 1);
        memcpy(m->grads, local, m->n_params * sizeof(float));
        *stop_any = total[PART_SUMS] != 0.0;
    } else {
        for (int r = 0; r < P; r++) {
            buf->bytes[r] = (int)(RANK_HEADER +
                                  (size_t)(part_first(r + 1, P, M) - part_first(r, P, M)) * record);
            buf->offsets[r] = r ? buf->offsets[r - 1] + buf->bytes[r - 1] : 0;
        }
        LSR_TRY(par->allgather(par->ctx, buf->mine, buf->all, buf->bytes, buf->offsets));
        if (failed) return failed;
        for (int r = 0; r < P; r++) { /* the first rank that failed, if one did */
            double head[2];
            memcpy(head, buf->all + buf->offsets[r], sizeof head);
            if (head[1] != 0.0)
                return lsr__fail((lsr_status)head[1], "epoch %d step %lld: process %d failed (%s)",
                                 st->epoch, (long long)st->step + 1, r,
                                 lsr_status_name((lsr_status)head[1]));
        }
        /* every part's sums and gradient, in part order, the same on every rank */
        for (int r = 0; r < P; r++) {
            const unsigned char *rank_rec = buf->all + buf->offsets[r];
            double stop_r;
            memcpy(&stop_r, rank_rec, sizeof stop_r);
            *stop_any |= stop_r != 0.0;
            for (int part = part_first(r, P, M); part < part_first(r + 1, P, M); part++) {
                const unsigned char *rec =
                    rank_rec + RANK_HEADER + (size_t)(part - part_first(r, P, M)) * record;
                double sums[PART_SUMS];
                memcpy(sums, rec, sizeof sums);
                for (int v = 0; v < PART_SUMS; v++)
                    total[v] += sums[v];
                const float *g = (const float *)(const void *)(rec + sizeof sums);
                if (part == 0)
                    memcpy(m->grads, g, m->n_params * sizeof(float));
                else
                    for (size_t i = 0; i < m->n_params; i++)
                        m->grads[i] += g[i];
            }
        }
    }
    *nonfinite = total[PART_NONFINITE] != 0.0;
    *loss = (float)total[PART_LOSS];
    const double valid = total[PART_VALID] > 0 ? total[PART_VALID] : 1.0;
    stats->valid_rows = (int64_t)total[PART_VALID];
    stats->top1_hits = (int64_t)total[PART_HITS];
    stats->label_ce = total[PART_LABEL_CE] / valid;
    stats->prior_ce = total[PART_PRIOR_CE] / valid;
    if (*nonfinite) return LSR_OK;
    if (!grads_finite(m)) *nonfinite = 1;
    if (!*nonfinite) lsr_optimizer_step(&st->opt, m->params, m->grads);
    return LSR_OK;
}

/* The teacher of a distillation, checked against the student, and the
 * buffers of its soft targets for batches of B. */
static lsr_status load_teacher(step_buffers *buf, const char *path, uint64_t *recorded,
                               const lsr_model *m, int B) {
    if (lsr_model_load(&buf->teacher, path))
        return lsr__fail(lsr__failed(), "teacher %s: %s", path, lsr_last_error());
    const lsr_model *t = buf->teacher;
    if (t->classes != m->classes || t->input.h != m->input.h || t->input.w != m->input.w ||
        t->input.c != m->input.c)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "teacher %s: %d classes of %dx%dx%d inputs, the student %d of %dx%dx%d",
                         path, t->classes, t->input.h, t->input.w, t->input.c, m->classes,
                         m->input.h, m->input.w, m->input.c);
    const uint64_t hash = lsr_train_params_hash(t);
    if (*recorded && *recorded != hash)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "teacher %s: not the model the run was started with (its parameters "
                         "differ)",
                         path);
    *recorded = hash;
    const size_t cells = (size_t)B * (size_t)m->classes;
    buf->soft = malloc(cells * sizeof(float));
    buf->scaled = malloc(cells * sizeof(float));
    buf->dsoft = malloc(cells * sizeof(float));
    if (!buf->soft || !buf->scaled || !buf->dsoft)
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "distillation: out of memory");
    return LSR_OK;
}

/* The exchange's buffers; the parallel settings checked. */
static lsr_status parallel_buffers(step_buffers *buf, const lsr_train_parallel *par,
                                   const lsr_model *m) {
    const int P = par->size, M = par->micro_batches;
    if (P < 1 || par->rank < 0 || par->rank >= P || M < 1 || (!par->allgather && !par->allreduce))
        return lsr__fail(LSR_ERROR_OPTION,
                         "parallel: rank %d of %d processes, %d micro-batches, allgather %s: "
                         "need 0 <= rank < size, micro_batches >= 1 and an allgather",
                         par->rank, P, M, par->allgather || par->allreduce ? "given" : "NULL");
    const size_t record = part_bytes(m);
    const int most = (M + P - 1) / P; /* parts of any one rank, at most */
    if (!par->allreduce && (double)P * RANK_HEADER + (double)M * (double)record > (double)INT32_MAX)
        return lsr__fail(LSR_ERROR_SIZE, "parallel: %d parts of %zu bytes are too many to gather",
                         M, record);
    buf->mine = malloc(RANK_HEADER + (par->allreduce ? 0 : (size_t)most * record));
    buf->all = par->allreduce ? malloc(m->n_params * sizeof(float) + 64) /* this rank's sum */
                              : malloc((size_t)P * RANK_HEADER + (size_t)M * record);
    buf->bytes = malloc((size_t)P * sizeof(int));
    buf->offsets = malloc((size_t)P * sizeof(int));
    if (!buf->mine || !buf->all || !buf->bytes || !buf->offsets)
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "parallel: out of memory for %d parts", M);
    return LSR_OK;
}

/* The epochs, from where st stands.  The state always means: about to take
 * step st->step of epoch st->epoch in st->order.  The next epoch's order is
 * drawn as soon as an epoch ends, so a checkpoint taken at any step boundary
 * resumes exactly. */
static lsr_status run_epochs(lsr_model *m, lsr_train_state *st, const step_buffers *buf,
                             const lsr_dataset *data, const lsr_train_settings *s,
                             const lsr_loss_options *lo, const lsr_train_callbacks *cb) {
    const int B = s->batch;
    const int64_t steps = (data->n + B - 1) / B;
    int stop_pending = 0; /* data parallel: a callback asked to stop, for the next exchange */
    while (st->epoch <= s->epochs) {
        lsr_train_progress p = {0};
        p.epoch = st->epoch;
        p.epochs = s->epochs;
        p.steps_per_epoch = steps;
        p.skipped = st->skipped;
        double loss_sum = 0, label_sum = 0, prior_sum = 0, hits = 0;
        const double t0 = lsr_now();
        int epoch_end = 0;
        while (!epoch_end) {
            const int b = (int)(data->n - st->step * B < B ? data->n - st->step * B : B);
            float loss;
            lsr_loss_stats stats = {0};
            int nonfinite, stop_any = 0;
            if (cb && cb->parallel)
                LSR_TRY(train_step_parallel(&loss, &stats, &nonfinite, &stop_any, stop_pending, m,
                                            st, buf, data, s, lo, b, cb));
            else
                LSR_TRY(train_step(&loss, &stats, &nonfinite, m, st, buf, data, s, lo, b));
            if (nonfinite && !s->skip_nonfinite)
                return lsr__fail(LSR_ERROR_NONFINITE,
                                 "epoch %d step %lld: the loss or its gradient is not finite",
                                 st->epoch, (long long)st->step + 1);
            if (nonfinite) {
                p.skipped = ++st->skipped;
                loss = NAN;
            } else {
                loss_sum += (double)loss * b;
                label_sum += stats.label_ce * b;
                prior_sum += stats.prior_ce * b;
                hits += (double)stats.top1_hits;
                p.samples += b;
            }
            const int64_t global = (int64_t)(st->epoch - 1) * steps + st->step;
            p.step = st->step + 1;
            const double seen = p.samples ? (double)p.samples : 1.0;
            p.step_loss = loss;
            p.loss = loss_sum / seen;
            p.label_ce = label_sum / seen;
            p.prior_ce = prior_sum / seen;
            p.accuracy = hits / seen;
            p.seconds = lsr_now() - t0;
            lsr_status asked = cb && cb->step ? cb->step(cb->ctx, &p) : LSR_OK;
            if (asked != LSR_OK && asked != LSR_STOPPED) return asked;

            if (++st->step == steps) { /* on to the next epoch's order */
                lsr_rng_shuffle(&st->rng, st->order, data->n);
                st->epoch++;
                st->step = 0;
                epoch_end = 1;
            }
            /* the epoch's report before its checkpoint: a checkpoint at an
             * epoch's end stands for everything that epoch did */
            if (epoch_end && cb && cb->epoch) {
                const lsr_status said = cb->epoch(cb->ctx, &p);
                if (said != LSR_OK && said != LSR_STOPPED) return said;
                if (said == LSR_STOPPED) asked = LSR_STOPPED;
            }
            /* data parallel: every rank stops after the same step, the one whose
             * exchange first carries a stop asked on any rank (its *stop, or a
             * callback's LSR_STOPPED, which waits for the next exchange) */
            int stop;
            if (cb && cb->parallel) {
                if (asked == LSR_STOPPED) stop_pending = 1;
                stop = stop_any;
            } else {
                stop = asked == LSR_STOPPED || (cb && cb->stop && *cb->stop);
            }
            const int64_t every = cb ? cb->checkpoint_every : 0;
            const int due = every > 0 && (global + 1) % every == 0;
            const int last = epoch_end && st->epoch > s->epochs;
            if (cb && cb->checkpoint && (stop || due || last)) {
                const lsr_status saved = cb->checkpoint(cb->ctx, m, st);
                if (saved == LSR_STOPPED && cb->parallel)
                    stop_pending = 1;
                else if (saved == LSR_STOPPED)
                    stop = 1;
                else if (saved != LSR_OK)
                    return saved;
            }
            if (stop && !last) return LSR_STOPPED; /* a stop at the last step: the run is done */
        }
    }
    return LSR_OK;
}

LSR_API lsr_status lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
                             const lsr_train_callbacks *cb, lsr_train_state *resume) {
    lsr_train_state st;
    memset(&st, 0, sizeof st);
    if (resume) { /* taken over, whatever happens */
        st = *resume;
        free(resume);
    }
    float *prior = NULL;
    step_buffers buf = {0};
    lsr_status status = LSR_OK;
    if (!m || !data || !s) {
        status = lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_train: m, data or settings is NULL");
        goto done;
    }
    if (cb && cb->checkpoint_every < 0) {
        status = lsr__fail(LSR_ERROR_OPTION, "callbacks.checkpoint_every = %lld: must be >= 0",
                           (long long)cb->checkpoint_every);
        goto done;
    }
    if ((status = lsr_train_settings_check(s)) ||
        (status = lsr_check_model_data(m, data, "training data")))
        goto done;
    if (data->n == 0) {
        status = lsr__fail(LSR_ERROR_SIZE, "training data: no samples");
        goto done;
    }
    /* the run's settings, the default initialisation resolved: what the
     * model and the checkpoints record */
    lsr_train_settings run = *s;
    if (run.init == LSR_INIT_DEFAULT) run.init = resume ? st.settings.init : m->default_init;
    s = &run;
    if (!resume) {
        if ((status = start_state(&st, m, data, s))) goto done;
    } else if ((status = check_resume(&st, m, data, s))) {
        goto done;
    }
    st.settings = run;
    snprintf(st.spec, sizeof st.spec, "%s", m->spec);
    /* the data's hash: checked against a resumed state's (check_resume), and
     * for a fresh run only needed when a checkpoint may be written */
    if (!resume && cb && cb->checkpoint) st.data_hash = lsr_train_data_hash(data);
    m->temperature = 0; /* a temperature fitted to other parameters no longer holds */
    if ((status = resolve_prior(&prior, s, m, data))) goto done;
    lsr_loss_options lo = s->loss;
    lo.prior = prior;
    const int B = s->batch;
    const size_t sample = lsr_shape_size(m->input);
    if ((status = lsr_model_set_precision(m, s->precision)) || (status = lsr_model_reserve(m, B)))
        goto done;
    buf.x = malloc((size_t)B * sample * sizeof(float));
    buf.dlogits = malloc((size_t)B * m->classes * sizeof(float));
    buf.x_adv = s->adv_eps > 0 ? malloc((size_t)B * sample * sizeof(float)) : NULL;
    buf.labels = malloc((size_t)B * sizeof(int64_t));
    buf.drawn = malloc((size_t)B * sizeof(int64_t));
    if (s->teacher[0]) { /* the run records the teacher it starts with (run is s) */
        if ((status = load_teacher(&buf, s->teacher, &run.teacher_hash, m, B))) goto done;
        st.settings.teacher_hash = run.teacher_hash;
    }
    if (!buf.x || !buf.dlogits || !buf.labels || !buf.drawn || (s->adv_eps > 0 && !buf.x_adv)) {
        status = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "training: out of memory");
        goto done;
    }
    if (cb && cb->parallel && (status = parallel_buffers(&buf, cb->parallel, m))) goto done;
    status = run_epochs(m, &st, &buf, data, s, &lo, cb);
    if (status == LSR_OK || status == LSR_STOPPED) {
        m->settings = *s;
        m->has_settings = 1;
        m->training_samples = data->n;
        lsr_model_forget_file_metadata(m);
    }
done:
    if (m) lsr_model_set_precision(m, LSR_PRECISION_FP32); /* evaluation is fp32 */
    free(buf.x);
    free(buf.dlogits);
    free(buf.x_adv);
    free(buf.labels);
    free(buf.drawn);
    lsr_model_free(buf.teacher);
    free(buf.soft);
    free(buf.scaled);
    free(buf.dsoft);
    free(buf.mine);
    free(buf.all);
    free(buf.bytes);
    free(buf.offsets);
    free(prior);
    free(st.order);
    lsr_optimizer_free(&st.opt);
    return status;
}

LSR_API lsr_status lsr_model_predict(float *logits, lsr_model *m, const float *x, int64_t n) {
    if (!m || (n > 0 && (!logits || !x)))
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_predict: an argument is NULL");
    if (n < 0) return lsr__fail(LSR_ERROR_SIZE, "lsr_model_predict: n = %lld", (long long)n);
    LSR_TRY(lsr_model_reserve(m, LSR_PREDICT_BATCH));
    const size_t sample = lsr_shape_size(m->input);
    for (int64_t first = 0; first < n; first += LSR_PREDICT_BATCH) {
        const int b = (int)(n - first < LSR_PREDICT_BATCH ? n - first : LSR_PREDICT_BATCH);
        const float *out = lsr_model_forward(m, x + (size_t)first * sample, b, 0, NULL);
        memcpy(logits + (size_t)first * m->classes, out, (size_t)b * m->classes * sizeof(float));
    }
    return LSR_OK;
}

LSR_API lsr_status lsr_model_probabilities(float *probs, lsr_model *m, const float *x, int64_t n,
                                           double temperature) {
    if (!(temperature > 0) || !isfinite(temperature))
        return lsr__fail(LSR_ERROR_OPTION, "temperature = %g: must be finite and > 0", temperature);
    LSR_TRY(lsr_model_predict(probs, m, x, n));
    const int k = m->classes;
    for (int64_t i = 0; i < n; i++) { /* in double: rows sum to 1 within float rounding */
        float *row = probs + i * k;
        double zmax = -INFINITY, sum = 0.0;
        for (int j = 0; j < k; j++)
            zmax = fmax(zmax, row[j] / temperature);
        for (int j = 0; j < k; j++)
            sum += exp(row[j] / temperature - zmax);
        for (int j = 0; j < k; j++)
            row[j] = (float)(exp(row[j] / temperature - zmax) / sum);
    }
    return LSR_OK;
}

LSR_API lsr_status lsr_model_evaluate(lsr_metrics *out, lsr_model *m, const lsr_dataset *d,
                                      double temperature) {
    if (!out || !m || !d)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_evaluate: an argument is NULL");
    LSR_TRY(lsr_check_model_data(m, d, "evaluation data"));
    float *logits = malloc((size_t)(d->n ? d->n : 1) * m->classes * sizeof(float));
    if (!logits) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "evaluation: out of memory");
    lsr_status st = lsr_model_predict(logits, m, d->x, d->n);
    if (st == LSR_OK) st = lsr_metrics_compute(out, logits, d->y, d->n, m->classes, temperature);
    free(logits);
    return st;
}
