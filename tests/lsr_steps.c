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
    float *trace;    /* every step's loss */
} run;

static lsr_status on_step(void *ctx, const lsr_train_progress *p) {
    run *r = ctx;
    r->trace[r->taken] = (float)p->step_loss;
    /* lsr_train stops after this step */
    return ++r->taken >= r->steps_wanted ? LSR_STOPPED : LSR_OK;
}

static lsr_status save(const lsr_model *m, const char *dir, const char *what, int64_t k) {
    char path[4096];
    if (k >= 0)
        snprintf(path, sizeof path, "%s/%s_%lld.safetensors", dir, what, (long long)k);
    else
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, what);
    return lsr_model_save(m, path);
}

/* Called after every step (checkpoint_every = 1): st->order is the order of
 * epoch st->epoch (the next epoch's, drawn already, after an epoch's last
 * step), m->grads the gradient of the step just taken. */
static lsr_status on_checkpoint(void *ctx, const lsr_model *m, const lsr_train_state *st) {
    run *r = ctx;
    if (st->epoch > r->epochs_recorded + 1)
        return lsr__fail(LSR_ERROR_OPTION,
                         "epoch %d's order was never seen (one step per epoch: "
                         "give a larger --train-limit)",
                         r->epochs_recorded + 1);
    if (st->epoch == r->epochs_recorded + 1) {
        for (int64_t i = 0; i < st->n; i++)
            fprintf(r->order, i ? " %lld" : "%lld", (long long)st->order[i]);
        fputc('\n', r->order);
        r->epochs_recorded++;
    }
    for (int i = 0; i < r->n_saves; i++)
        if (r->save_at[i] == r->taken) {
            memcpy(r->grads.params, m->grads, m->n_params * sizeof(float));
            LSR_TRY(save(m, r->dir, "params", r->taken));
            LSR_TRY(save(&r->grads, r->dir, "grads", r->taken));
        }
    return LSR_OK;
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
    lsr_train_settings s = lsr_train_settings_default(); /* Adam, lr 1e-3, PyTorch's betas, eps */
    s.batch = 128;
    s.loss.smoothing = 0.1f;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        const char *a = argv[i];
        if (flag_value(argc, argv, &i, &v)) return 2;
        if (!strcmp(a, "--out-dir"))
            r.dir = v;
        else if (!strcmp(a, "--data"))
            data_dir = v;
        else if (!strcmp(a, "--model"))
            model_name = v;
        else if (!strcmp(a, "--train-limit"))
            limit = atoll(v);
        else if (!strcmp(a, "--steps"))
            r.steps_wanted = atoll(v);
        else if (!strcmp(a, "--seed"))
            s.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--batch"))
            s.batch = atoi(v);
        else if (!strcmp(a, "--lr"))
            s.optimizer.lr = strtof(v, NULL);
        else if (!strcmp(a, "--smoothing"))
            s.loss.smoothing = strtof(v, NULL);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--save-at"))
            save_list = v;
        else if (!strcmp(a, "--start"))
            start = v;
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

    int status = 1;
    lsr_dataset all = {0}, train = {0}, val = {0};
    lsr_model m;
    memset(&m, 0, sizeof m);
    char path[4096];
    FILE *tsv = NULL;
    lsr_train_state *resume = NULL;
    if (lsr_dataset_load_dir(&all, NULL, data_dir) ||
        lsr_dataset_split(&train, &val, &all, limit, 0, s.seed))
        goto out;
    const lsr_shape input = {all.h, all.w, all.c};
    const int64_t per_epoch = (train.n + s.batch - 1) / s.batch;
    s.epochs = (int)((r.steps_wanted + per_epoch - 1) / per_epoch);

    if (start) { /* a given model, a fresh optimizer, a seeded first order */
        lsr_model *loaded = NULL;
        if (lsr_model_load(&loaded, start)) goto out;
        m = *loaded; /* the struct's arrays, now owned by m */
        free(loaded);
        if (!(resume = calloc(1, sizeof *resume))) goto out;
        resume->epoch = 1;
        resume->n = train.n;
        lsr_rng_seed(&resume->rng, s.seed ^ 0x5eed5eed5eed5eedull);
        if (lsr_optimizer_init(&resume->opt, &s.optimizer, m.n_params)) goto out;
        if (!(resume->order = malloc((size_t)train.n * sizeof *resume->order))) goto out;
        for (int64_t i = 0; i < train.n; i++)
            resume->order[i] = i;
        lsr_rng_shuffle(&resume->rng, resume->order, train.n);
        if (save(&m, r.dir, "init", -1)) goto out;
        goto init_done;
    }
    /* the initial parameters: lsr_train's own initialisation */
    if (lsr_model_init(&m, model_name, input, all.classes)) goto out;
    lsr_train_init_params(&m, &s);
    if (save(&m, r.dir, "init", -1)) goto out;
init_done:
    for (int i = 0; i < m.n_layers; i++)
        if (m.layers[i].kind == LSR_LAYER_DROPOUT && m.layers[i].rate > 0) {
            fprintf(stderr, "lsr_steps: %s has dropout, whose masks PyTorch cannot replay\n",
                    m.spec);
            goto out_quiet;
        }
    if (lsr_model_init(&r.grads, m.spec, input, all.classes)) goto out;
    snprintf(path, sizeof path, "%s/order.txt", r.dir);
    if (!(r.order = fopen(path, "w"))) {
        perror(path);
        goto out_quiet;
    }
    r.trace = calloc((size_t)r.steps_wanted, sizeof *r.trace);
    if (!r.trace) goto out;
    lsr_train_callbacks cb = {&r, on_step, NULL, on_checkpoint, NULL, 1, NULL};
    const lsr_status trained = lsr_train(&m, &train, &s, &cb, resume);
    resume = NULL; /* taken over */
    if (trained != LSR_OK && trained != LSR_STOPPED) goto out;
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
                (long long)b, (double)r.trace[k]);
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
    fprintf(stderr, "lsr_steps: %s\n", lsr_last_error()[0] ? lsr_last_error() : "out of memory");
out_quiet:
    lsr_train_state_free(resume);
    if (r.order) fclose(r.order);
    free(r.trace);
    lsr_model_clear(&m);
    lsr_model_clear(&r.grads);
    lsr_dataset_free(&all);
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    return status;
}
