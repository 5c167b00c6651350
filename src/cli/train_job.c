/* lsr train's job: defaults, the run (split, prior, model, the training loop
 * with its progress), and the model file with the run's settings. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../modelfile/modelfile.h"
#include "cli.h"
#include "progress.h"
#include "train_job.h"

void train_job_defaults(train_job *j) {
    memset(j, 0, sizeof *j);
    j->data_dir = LSR_FASHION_MNIST_DIR;
    j->model_name = "cleverhans-cnn";
    j->prefix = "";
    j->s.epochs = TRAIN_DEFAULT_EPOCHS;
    j->s.batch = TRAIN_DEFAULT_BATCH;
    j->s.optimizer = lsr_optimizer_defaults();
    j->s.loss = lsr_loss_options_default();
    j->tty = isatty(fileno(stderr));
}

static void draw_progress(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (j->quiet || !j->tty) return;
    progress_draw(j->prefix, j->s.epochs, &j->last_draw, p);
}

static int epoch_done(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (j->tty && !j->quiet) progress_end_bar();
    double val_acc = NAN;
    /* a failure here stops the run with j->err set: an error, not a stop on
     * request (lsr_train returns 1 for both) */
    if (j->val_set && j->val_set->n > 0) {
        float *logits = malloc((size_t)j->val_set->n * j->model->classes * sizeof(float));
        if (!logits) return lsr_fail(j->err, "out of memory for the validation logits");
        lsr_metrics mt;
        const int failed = lsr_predict(j->model, j->val_set, logits, CLI_PREDICT_BATCH, j->err);
        if (!failed) {
            lsr_metrics_compute(&mt, logits, j->val_set->y, j->val_set->n, j->model->classes, 1.0);
            val_acc = mt.accuracy;
        }
        free(logits);
        if (failed) return -1;
    }
    if (!j->quiet) progress_epoch_line(j->prefix, j->s.epochs, p, val_acc);
    if (j->metrics_path)
        return progress_metrics_append(j->metrics_path, &j->metrics_text, &j->metrics_len, p,
                                       val_acc, j->err);
    return 0;
}

static int save_checkpoint(void *ctx, const lsr_model *m, const lsr_train_state *st) {
    train_job *j = ctx;
    j->stopped_epoch = st->epoch;
    j->stopped_step = st->step;
    if (!j->checkpoint_path) return 0;
    return lsr_checkpoint_save(j->checkpoint_path, m, st, j->command_json, j->err);
}

// for the run's header line
static const char *precision_words(lsr_precision precision, const lsr_model *m) {
    if (precision == LSR_PRECISION_FP32) return "fp32";
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LSR_LAYER_CONV2D && !lsr_conv2d_is_dense(&m->layers[i]))
            return "bf16 convolutions";
    return "fp32 (bf16 asked, but the model has no convolution it applies to)";
}

int train_job_run(train_job *j, const lsr_dataset *all, int classes, lsr_model *model,
                  lsr_dataset *val_set) {
    lsr_dataset train_set = {0};
    float *prior = NULL;
    int status = -1;
    memset(model, 0, sizeof *model);
    if (lsr_dataset_split(&train_set, val_set, all, j->train_limit, j->val, j->s.seed, j->err))
        return -1;
    if (j->imbalance > 1 && lsr_dataset_imbalance(&train_set, j->imbalance, j->s.seed, j->err))
        goto out;
    const lsr_shape input = {all->h, all->w, all->c};
    if (lsr_model_init(model, j->model_name, input, classes, j->err)) goto out;
    j->s.loss.prior = NULL;
    if (j->prior_arg && strcmp(j->prior_arg, "uniform") != 0) {
        prior = malloc((size_t)classes * sizeof(float));
        if (!prior) {
            snprintf(j->err, sizeof j->err, "out of memory");
            goto out;
        }
        if (!strcmp(j->prior_arg, "data")) {
            /* counted in integers: summing 1/n in float drifts past the loss's
             * 1e-4 tolerance on the sum from about 30,000 examples */
            int64_t *count = calloc((size_t)classes, sizeof *count);
            if (!count) {
                snprintf(j->err, sizeof j->err, "out of memory");
                goto out;
            }
            for (int64_t i = 0; i < train_set.n; i++)
                count[train_set.y[i]]++;
            for (int k = 0; k < classes; k++)
                prior[k] = (float)((double)count[k] / (double)(train_set.n ? train_set.n : 1));
            free(count);
        } else if (lsr_prior_read(j->prior_arg, classes, prior, j->err)) {
            goto out;
        }
        j->s.loss.prior = prior;
    }
    j->s.loss.threads = cli_threads();
    if (!j->quiet)
        fprintf(stderr,
                "%slsr train: %s, %lld training / %lld validation samples of %dx%dx%d, "
                "%d classes\nmodel %s (%zu parameters), eps %g (%s%s), %d epochs, batch %d, "
                "%d threads, %s, GEMMs by %s\n",
                j->prefix, j->data_dir, (long long)train_set.n, (long long)val_set->n, input.h,
                input.w, input.c, classes, model->spec, model->n_params,
                (double)j->s.loss.smoothing, j->s.loss.prior ? "prior " : "",
                j->s.loss.prior ? j->prior_arg
                                : (j->s.loss.convention == LSR_SMOOTHING_ALL ? "all" : "others"),
                j->s.epochs, j->s.batch, cli_threads(), precision_words(j->precision, model),
                lsr_gemm_backend());
    j->model = model;
    j->val_set = val_set;
    j->training_samples = train_set.n;
    lsr_train_state resume_state, *resume = NULL;
    if (j->s.optimizer.schedule == LSR_SCHEDULE_COSINE && j->s.optimizer.total_steps == 0)
        j->s.optimizer.total_steps = (train_set.n + j->s.batch - 1) / j->s.batch * j->s.epochs;
    if (j->resume_path) {
        char *command = NULL;
        lsr_model_free(model);
        if (lsr_checkpoint_load(j->resume_path, model, &resume_state, &j->s.optimizer, train_set.n,
                                &command, j->err))
            goto out;
        free(command);
        resume = &resume_state;
        if (!j->quiet)
            fprintf(stderr, "%sresuming at epoch %d, step %lld\n", j->prefix, resume_state.epoch,
                    (long long)resume_state.step);
    }
    if (lsr_model_set_precision(model, j->precision, j->err)) goto out;
    lsr_train_callbacks cb = {j, draw_progress, epoch_done, save_checkpoint, j->stop};
    const double t0 = lsr_now();
    const int r = lsr_train(model, &train_set, &j->s, &cb, resume, NULL, j->err);
    if (r < 0 || j->err[0]) goto out; /* j->err: a metrics write failed */
    /* the final evaluation computes what lsr eval will: in fp32 */
    if (lsr_model_set_precision(model, LSR_PRECISION_FP32, j->err)) goto out;
    j->train_seconds = lsr_now() - t0;
    status = r; /* 1: stopped on request */
out:
    j->s.loss.prior = NULL;
    free(prior);
    lsr_dataset_free(&train_set);
    if (status) {
        lsr_model_free(model);
        lsr_dataset_free(val_set);
    }
    return status;
}

int train_job_save(const train_job *j, const lsr_model *model, const char *path, double temperature,
                   char *err) {
    const lsr_train_settings *s = &j->s;
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "smoothing", "%g", (double)s->loss.smoothing);
    lsr_metadata_set(&md, "smoothing_convention", "%s",
                     s->loss.convention == LSR_SMOOTHING_ALL ? "all" : "others");
    lsr_metadata_set(&md, "smoothing_prior", "%s", j->prior_arg ? j->prior_arg : "uniform");
    lsr_metadata_set(&md, "z_loss", "%g", (double)s->loss.z_loss);
    lsr_metadata_set(&md, "epochs", "%d", s->epochs);
    lsr_metadata_set(&md, "batch", "%d", s->batch);
    lsr_metadata_set(&md, "optimizer", "%s", j->optimizer_name ? j->optimizer_name : "adam");
    lsr_metadata_set(&md, "lr", "%g", (double)s->optimizer.lr);
    lsr_metadata_set(&md, "weight_decay", "%g", (double)s->optimizer.weight_decay);
    lsr_metadata_set(&md, "seed", "%llu", (unsigned long long)s->seed);
    lsr_metadata_set(&md, "training_samples", "%lld", (long long)j->training_samples);
    lsr_metadata_set(&md, "train_limit", "%lld", j->train_limit);
    lsr_metadata_set(&md, "val_samples", "%lld", j->val);
    lsr_metadata_set(&md, "imbalance", "%g", j->imbalance > 1 ? j->imbalance : 1.0);
    lsr_metadata_set(&md, "adv", "%s", j->adv ? "fgsm" : "none");
    lsr_metadata_set(&md, "adv_eps", "%g", (double)s->adv_eps);
    lsr_metadata_set(&md, "adv_weight", "%g", (double)s->adv_weight);
    lsr_metadata_set(&md, "data", "%s", j->data_dir);
    lsr_metadata_set(&md, "precision", "%s", j->precision == LSR_PRECISION_BF16 ? "bf16" : "fp32");
    if (temperature > 0) lsr_metadata_set(&md, "temperature", "%.6f", temperature);
    return lsr_model_save(model, &md, path, err);
}
