#define _POSIX_C_SOURCE 200809L
/* Checkpoints: everything a training run needs to go on exactly where it
 * stopped, in a safetensors file: the parameters (lsr's own layout), the
 * optimizer's moments, the sample order of the epoch in progress, and in
 * the metadata the epoch, step, optimizer step count, random-generator
 * state and the run's command line. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"

#define CHECKPOINT_FORMAT "lsr-checkpoint-1"

int lsr_checkpoint_save(const char *path, const lsr_model *m, const lsr_train_state *st,
                        const char *command_json, char *err) {
    /* a checkpoint without its command line could not be resumed */
    if (!command_json) return lsr_fail(err, "%s: no command line to store in the checkpoint", path);
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "format", CHECKPOINT_FORMAT);
    lsr_metadata_set(&md, "architecture", "%s", m->spec);
    lsr_metadata_set(&md, "classes", "%d", m->classes);
    lsr_metadata_set(&md, "input_shape", "%d,%d,%d", m->input.h, m->input.w, m->input.c);
    lsr_metadata_set(&md, "epoch", "%d", st->epoch);
    lsr_metadata_set(&md, "step", "%lld", (long long)st->step);
    lsr_metadata_set(&md, "optimizer_steps", "%lld", (long long)st->opt.t);
    lsr_metadata_set(&md, "skipped", "%lld", (long long)st->skipped);
    lsr_metadata_set(&md, "rng", "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
                     st->rng.s[0], st->rng.s[1], st->rng.s[2], st->rng.s[3]);
    lsr_metadata_set(&md, "command", "%s", command_json);
    if (strlen(command_json) >= LSR_META_VALUE)
        return lsr_fail(err, "%s: the command line is too long to store", path);
    const int64_t n = (int64_t)m->n_params;
    lsr_tensor t[4] = {
        {"params", "F32", 1, {n}, m->params, m->n_params * sizeof(float)},
        {"optimizer_m", "F32", 1, {n}, st->opt.m, m->n_params * sizeof(float)},
        {"order", "I64", 1, {st->n}, st->order, (size_t)st->n * sizeof(int64_t)},
        {"optimizer_v", "F32", 1, {n}, st->opt.v, m->n_params * sizeof(float)},
    };
    return lsr_safetensors_write(path, &md, t, st->opt.v ? 4 : 3, err);
}

static int parse_int64(const lsr_metadata *md, const char *key, int64_t min, int64_t *out) {
    const char *v = lsr_metadata_get(md, key);
    char *end;
    if (!v) return 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < min) return 0;
    *out = x;
    return 1;
}

int lsr_checkpoint_load(const char *path, lsr_model *m, lsr_train_state *st,
                        const lsr_optimizer_settings *opt_settings, int64_t n_samples,
                        char **command_json, char *err) {
    memset(st, 0, sizeof *st);
    memset(m, 0, sizeof *m);
    *command_json = NULL;
    lsr_safetensors f;
    if (lsr_safetensors_open(&f, path, CHECKPOINT_FORMAT, err)) return -1;
    int64_t epoch, step, t, skipped;
    const char *rng = lsr_metadata_get(&f.md, "rng"), *command = lsr_metadata_get(&f.md, "command");
    if (!parse_int64(&f.md, "epoch", 1, &epoch) || !parse_int64(&f.md, "step", 0, &step) ||
        !parse_int64(&f.md, "optimizer_steps", 0, &t) || !parse_int64(&f.md, "skipped", 0, &skipped) ||
        !rng || strlen(rng) != 64 || !command) {
        lsr_fail(err, "%s: the checkpoint's metadata is incomplete", path);
        goto fail;
    }
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, rng + 16 * i, 16);
        part[16] = '\0';
        char *end;
        st->rng.s[i] = strtoull(part, &end, 16);
        if (*end) {
            lsr_fail(err, "%s: the checkpoint's rng state is malformed", path);
            goto fail;
        }
    }
    if (lsr_model_from_metadata(m, &f.md, path, err)) goto fail;
    if (n_samples >= 0) {
        if (lsr_optimizer_init(&st->opt, opt_settings, m->n_params, err)) goto fail;
        st->opt.t = t;
        st->epoch = (int)epoch;
        st->step = step;
        st->skipped = skipped;
        st->n = n_samples;
        st->order = malloc((size_t)(n_samples ? n_samples : 1) * sizeof(int64_t));
        if (!st->order) {
            lsr_fail(err, "%s: out of memory", path);
            goto fail;
        }
        const int64_t np = (int64_t)m->n_params;
        if (lsr_safetensors_get(&f, "params", "F32", &np, 1, m->params, err) ||
            lsr_safetensors_get(&f, "optimizer_m", "F32", &np, 1, st->opt.m, err) ||
            lsr_safetensors_get(&f, "order", "I64", &n_samples, 1, st->order, err) ||
            (st->opt.v && lsr_safetensors_get(&f, "optimizer_v", "F32", &np, 1, st->opt.v, err)) ||
            lsr_safetensors_check_complete(&f, err))
            goto fail;
        for (int64_t i = 0; i < n_samples; i++)
            if (st->order[i] < 0 || st->order[i] >= n_samples) {
                lsr_fail(err, "%s: the sample order holds %lld, outside [0, %lld)", path,
                         (long long)st->order[i], (long long)n_samples);
                goto fail;
            }
    }
    *command_json = strdup(command);
    lsr_safetensors_close(&f);
    if (!*command_json) {
        lsr_fail(err, "%s: out of memory", path);
        lsr_train_state_free(st);
        lsr_model_free(m);
        return -1;
    }
    return 0;
fail:
    lsr_safetensors_close(&f);
    lsr_train_state_free(st);
    lsr_model_free(m);
    return -1;
}
