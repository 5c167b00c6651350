/* lsr_steps: a few steps of `lsr train` (fp32, Adam, the trainer's own
 * lsr_train) with everything scripts/check-torch-steps.py needs to replay
 * them in PyTorch written to a directory:
 *
 *   init.safetensors         the parameters lsr_train starts from
 *   order.txt                one line per epoch: that epoch's sample order
 *                            (indices into the first --train-limit examples)
 *   steps.tsv                step, epoch, batch size, loss of every step
 *   params_<k>.safetensors   the parameters after step k, for each --save-at k
 *   grads_<k>.safetensors    the gradient step k applied (same layouts)
 *
 * With --start FILE (a model file) the run starts from its parameters, with
 * a fresh Adam state and a seeded order, instead of lsr_train's own
 * initialisation: a check of the late, confident phase of training.
 *
 * The training set is what `lsr train --train-limit N` trains on (no --val,
 * no --imbalance): the first N examples in file order.  The settings are
 * those of `make demo` unless given.  All tensors are in PyTorch's layouts
 * (docs/model-format.md).
 *
 *   lsr_steps --out-dir D [--data DIR] [--model NAME|SPEC] [--train-limit N]
 *             [--steps K] [--seed S] [--batch B] [--lr LR] [--smoothing EPS]
 *             [--threads T] [--save-at k1,k2,...] [--start MODEL_FILE]
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "modelfile/modelfile.h"
#include "net/net.h"
#include "train/train.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_SAVES 64

typedef struct run {
    const char *dir;
    int64_t steps_wanted, taken;
    int64_t save_at[MAX_SAVES];
    int n_saves;
    int epochs_recorded;
    FILE *order;
    lsr_model grads; /* a model whose parameters hold a gradient, to save it */
    volatile int stop;
    char err[LSR_ERR_LEN];
} run;

static void on_step(void *ctx, const lsr_train_progress *p) {
    run *r = ctx;
    (void)p;
    if (++r->taken >= r->steps_wanted) r->stop = 1; /* lsr_train stops after this step */
}

static int save(const lsr_model *m, const char *dir, const char *what, int64_t k, char *err) {
    char path[4096];
    if (k >= 0) snprintf(path, sizeof path, "%s/%s_%lld.safetensors", dir, what, (long long)k);
    else snprintf(path, sizeof path, "%s/%s.safetensors", dir, what);
    lsr_metadata md;
    memset(&md, 0, sizeof md);
    return lsr_model_save(m, &md, path, err);
}

/* Called after every step (checkpoint_every = 1): st->order is the order of
 * epoch st->epoch (the next epoch's, drawn already, after an epoch's last
 * step), m->grads the gradient of the step just taken. */
static int on_checkpoint(void *ctx, const lsr_model *m, const lsr_train_state *st) {
    run *r = ctx;
    if (st->epoch > r->epochs_recorded + 1)
        return lsr_fail(r->err, "epoch %d's order was never seen (one step per epoch: give a "
                                "larger --train-limit)", r->epochs_recorded + 1);
    if (st->epoch == r->epochs_recorded + 1) {
        for (int64_t i = 0; i < st->n; i++)
            fprintf(r->order, i ? " %lld" : "%lld", (long long)st->order[i]);
        fputc('\n', r->order);
        r->epochs_recorded++;
    }
    for (int i = 0; i < r->n_saves; i++)
        if (r->save_at[i] == r->taken) {
            memcpy(r->grads.params, m->grads, m->n_params * sizeof(float));
            if (save(m, r->dir, "params", r->taken, r->err) ||
                save(&r->grads, r->dir, "grads", r->taken, r->err))
                return -1;
        }
    return 0;
}

static int flag_value(int argc, char **argv, int *i, const char **v) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "lsr_steps: %s needs a value\n", argv[*i]);
        return -1;
    }
    *v = argv[++*i];
    return 0;
}

int main(int argc, char **argv) {
    const char *data_dir = LSR_FASHION_MNIST_DIR, *model_name = "cleverhans-cnn", *save_list = NULL,
               *start = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.steps_wanted = 20;
    int64_t limit = 0;
    int threads = 1;
    lsr_train_settings s;
    memset(&s, 0, sizeof s);
    s.batch = 128;
    s.optimizer = lsr_optimizer_defaults(); /* Adam, lr 1e-3, PyTorch's betas and eps */
    s.loss = lsr_loss_options_default();
    s.loss.smoothing = 0.1f;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        const char *a = argv[i];
        if (flag_value(argc, argv, &i, &v)) return 2;
        if (!strcmp(a, "--out-dir")) r.dir = v;
        else if (!strcmp(a, "--data")) data_dir = v;
        else if (!strcmp(a, "--model")) model_name = v;
        else if (!strcmp(a, "--train-limit")) limit = atoll(v);
        else if (!strcmp(a, "--steps")) r.steps_wanted = atoll(v);
        else if (!strcmp(a, "--seed")) s.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--batch")) s.batch = atoi(v);
        else if (!strcmp(a, "--lr")) s.optimizer.lr = strtof(v, NULL);
        else if (!strcmp(a, "--smoothing")) s.loss.smoothing = strtof(v, NULL);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--save-at")) save_list = v;
        else if (!strcmp(a, "--start")) start = v;
        else {
            fprintf(stderr, "lsr_steps: unknown flag %s\n", a);
            return 2;
        }
    }
    if (!r.dir || r.steps_wanted < 1 || s.batch < 1 || threads < 1) {
        fprintf(stderr, "usage: lsr_steps --out-dir D [--data DIR] [--model M] [--train-limit N] "
                        "[--steps K>0] [--seed S] [--batch B] [--lr LR] [--smoothing EPS] "
                        "[--threads T] [--save-at k1,k2,...] [--start MODEL_FILE]\n");
        return 2;
    }
    if (save_list) {
        for (const char *p = save_list; *p && r.n_saves < MAX_SAVES;) {
            char *end;
            r.save_at[r.n_saves++] = strtoll(p, &end, 10);
            p = *end == ',' ? end + 1 : end + strlen(end);
        }
    } else {
        r.save_at[r.n_saves++] = 1;
        r.save_at[r.n_saves++] = r.steps_wanted;
    }
    if (mkdir(r.dir, 0777) != 0 && errno != EEXIST) {
        perror(r.dir);
        return 1;
    }
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    s.loss.threads = threads;
    s.init = lsr_model_default_init(model_name);

    int status = 1;
    lsr_dataset all = {0}, train = {0}, val = {0};
    lsr_model m;
    memset(&m, 0, sizeof m);
    float *trace = NULL;
    char path[4096];
    FILE *tsv = NULL;
    lsr_train_state resume_state, *resume = NULL;
    memset(&resume_state, 0, sizeof resume_state);
    if (lsr_data_load_dir(&all, NULL, data_dir, r.err) ||
        lsr_dataset_split(&train, &val, &all, limit, 0, s.seed, r.err))
        goto out;
    const lsr_shape input = {all.h, all.w, all.c};
    const int64_t per_epoch = (train.n + s.batch - 1) / s.batch;
    s.epochs = (int)((r.steps_wanted + per_epoch - 1) / per_epoch);
    s.checkpoint_every = 1;

    if (start) { /* a given model, a fresh optimizer, a seeded first order */
        if (lsr_model_load(&m, NULL, start, r.err)) goto out;
        resume_state.epoch = 1;
        resume_state.n = train.n;
        lsr_rng_seed(&resume_state.rng, s.seed ^ 0x5eed5eed5eed5eedull);
        if (lsr_optimizer_init(&resume_state.opt, &s.optimizer, m.n_params, r.err)) goto out;
        if (!(resume_state.order = malloc((size_t)train.n * sizeof *resume_state.order))) goto out;
        for (int64_t i = 0; i < train.n; i++) resume_state.order[i] = i;
        lsr_rng_shuffle(&resume_state.rng, resume_state.order, train.n);
        resume = &resume_state;
        if (save(&m, r.dir, "init", -1, r.err)) goto out;
        goto init_done;
    }
    /* the initial parameters: lsr_train's own initialisation, with 0 epochs */
    if (lsr_model_init(&m, model_name, input, all.classes, r.err)) goto out;
    lsr_train_settings zero = s;
    zero.epochs = 0;
    if (lsr_train(&m, &train, &zero, NULL, NULL, NULL, r.err) < 0 || save(&m, r.dir, "init", -1, r.err))
        goto out;
    lsr_model_free(&m);
    if (lsr_model_init(&m, model_name, input, all.classes, r.err)) goto out;
init_done:
    for (int i = 0; i < m.n_layers; i++)
        if (m.layers[i].kind == LSR_LAYER_DROPOUT && m.layers[i].rate > 0) {
            fprintf(stderr, "lsr_steps: %s has dropout, whose masks PyTorch cannot replay\n",
                    m.spec);
            goto out_quiet;
        }
    if (lsr_model_init(&r.grads, m.spec, input, all.classes, r.err)) goto out;
    snprintf(path, sizeof path, "%s/order.txt", r.dir);
    if (!(r.order = fopen(path, "w"))) {
        perror(path);
        goto out_quiet;
    }
    trace = calloc((size_t)(s.epochs * per_epoch), sizeof *trace);
    if (!trace) goto out;
    lsr_train_callbacks cb = {&r, on_step, NULL, on_checkpoint, &r.stop};
    if (lsr_train(&m, &train, &s, &cb, resume, trace, r.err) < 0) goto out;
    if (fclose(r.order) != 0) {
        r.order = NULL;
        perror(path);
        goto out_quiet;
    }
    r.order = NULL;
    snprintf(path, sizeof path, "%s/steps.tsv", r.dir);
    if (!(tsv = fopen(path, "w"))) {
        perror(path);
        goto out_quiet;
    }
    fprintf(tsv, "step\tepoch\tbatch\tloss\n");
    for (int64_t k = 0; k < r.taken; k++) {
        const int64_t first = (k % per_epoch) * s.batch;
        const int64_t b = train.n - first < s.batch ? train.n - first : s.batch;
        fprintf(tsv, "%lld\t%lld\t%lld\t%.9g\n", (long long)k + 1, (long long)(k / per_epoch) + 1,
                (long long)b, (double)trace[k]);
    }
    if (fclose(tsv) != 0) {
        perror(path);
        goto out_quiet;
    }
    fprintf(stderr, "lsr_steps: %lld steps on %lld examples (%lld per epoch), written to %s\n",
            (long long)r.taken, (long long)train.n, (long long)per_epoch, r.dir);
    status = 0;
    goto out_quiet;
out:
    fprintf(stderr, "lsr_steps: %s\n", r.err[0] ? r.err : "out of memory");
out_quiet:
    lsr_train_state_free(&resume_state);
    if (r.order) fclose(r.order);
    free(trace);
    lsr_model_free(&m);
    lsr_model_free(&r.grads);
    lsr_dataset_free(&all);
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    return status;
}
