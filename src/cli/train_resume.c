/* lsr train --resume: the checkpoint's stored settings, and the flags given
 * with --resume compared with them. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "../net/net.h"
#include "train_flags.h"
#include "train_resume.h"

/* path made absolute (of a file that need not exist yet: through its
 * directory), so that data and data/.. spellings of one file compare equal */
static void absolute_path(const char *path, char *buf, size_t size) {
    char *real = realpath(path, NULL);
    if (!real) {
        char dir[4096] = ".";
        const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        if (slash) snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        char *real_dir = realpath(dir, NULL);
        if (real_dir)
            snprintf(buf, size, "%s/%s", real_dir, base);
        else
            snprintf(buf, size, "%s", path);
        free(real_dir);
        return;
    }
    snprintf(buf, size, "%s", real);
    free(real);
}

/* The value a flag has in j, after defaults: exact (absolute paths, every
 * digit of a float) to compare, else as a person would write it. */
static void flag_value(const train_job *j, int c, int exact, char *buf, size_t size) {
    const lsr_train_settings *s = &j->s;
    const char *path = NULL, *word = NULL;
    double real = NAN;
    long long integer = 0;
    switch (c) {
    case OPT_DATA:
        path = s->data;
        break;
    case OPT_MODEL:
        word = j->model_name;
        break;
    case OPT_EPOCHS:
        integer = s->epochs;
        break;
    case OPT_BATCH:
        integer = s->batch;
        break;
    case OPT_SEED:
        integer = (long long)s->seed;
        break;
    case OPT_OPTIMIZER:
        word = s->optimizer.kind == LSR_OPTIMIZER_SGD     ? "sgd"
               : s->optimizer.kind == LSR_OPTIMIZER_ADAMW ? "adamw"
                                                          : "adam";
        break;
    case OPT_LR:
        real = s->optimizer.lr;
        break;
    case OPT_MOMENTUM:
        real = s->optimizer.momentum;
        break;
    case OPT_NESTEROV:
        word = s->optimizer.nesterov ? "given" : "not given";
        break;
    case OPT_WD:
        real = s->optimizer.weight_decay;
        break;
    case OPT_INIT:
        word = s->init == LSR_INIT_HE           ? "he"
               : s->init == LSR_INIT_GLOROT     ? "glorot"
               : s->init == LSR_INIT_CLEVERHANS ? "cleverhans"
                                                : "the model's default";
        break;
    case OPT_SCHEDULE:
        word = s->optimizer.schedule == LSR_SCHEDULE_STEP     ? "step"
               : s->optimizer.schedule == LSR_SCHEDULE_COSINE ? "cosine"
                                                              : "constant";
        break;
    case OPT_STEP_SIZE:
        integer = s->optimizer.step_size;
        break;
    case OPT_GAMMA:
        real = s->optimizer.gamma;
        break;
    case OPT_WARMUP:
        integer = s->optimizer.warmup;
        break;
    case OPT_SMOOTHING:
        real = s->loss.smoothing;
        break;
    case OPT_CONVENTION:
        word = s->loss.convention == LSR_SMOOTHING_ALL ? "all" : "others";
        break;
    case OPT_PRIOR:
        if (s->prior_source == LSR_PRIOR_FILE)
            path = s->prior_file;
        else
            word = s->prior_source == LSR_PRIOR_DATA ? "data" : "uniform";
        break;
    case OPT_ZLOSS:
        real = s->loss.z_loss;
        break;
    case OPT_LIMIT:
        integer = s->train_limit;
        break;
    case OPT_VAL:
        integer = s->val_samples;
        break;
    case OPT_OUT:
        path = j->out;
        word = "none";
        break;
    case OPT_METRICS:
        path = j->metrics_path;
        word = "none";
        break;
    case OPT_IMBALANCE:
        real = s->imbalance;
        break;
    case OPT_ADV:
        word = s->adv_eps > 0 ? "fgsm" : "none";
        break;
    case OPT_ADV_EPS:
        real = s->adv_eps;
        break;
    case OPT_ADV_WEIGHT:
        real = s->adv_weight;
        break;
    case OPT_CHECKPOINT:
        path = j->checkpoint_path;
        word = "none";
        break;
    case OPT_CHECKPOINT_EVERY:
        integer = j->checkpoint_every;
        break;
    case OPT_NONFINITE:
        word = s->skip_nonfinite ? "skip" : "stop";
        break;
    case OPT_SMOOTHING_MODE:
        word = s->smoothing_mode == LSR_SMOOTHING_SAMPLE ? "sample" : "expected";
        break;
    case OPT_TEACHER:
        path = s->teacher[0] ? s->teacher : NULL;
        word = "none";
        break;
    case OPT_DISTILL_T:
        real = s->distill_temperature;
        break;
    case OPT_DISTILL_W:
        real = s->distill_weight;
        break;
    case OPT_PRECISION:
        word = s->precision == LSR_PRECISION_BF16 ? "bf16" : "fp32";
        break;
    default:
        word = "";
        break;
    }
    if (path && exact)
        absolute_path(path, buf, size);
    else if (path || word)
        snprintf(buf, size, "%s", path ? path : word);
    else if (!isnan(real))
        snprintf(buf, size, exact ? "%.17g" : "%g", real);
    else
        snprintf(buf, size, "%lld", integer);
}

/* The checkpoint's note: its run's files (paths into the parsed note, which
 * j keeps), or a refusal of a sweep's run. */
static int take_note(train_job *j, const char *note, const char *path) {
    cJSON *o = cJSON_Parse(note);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return lsr__fail(LSR_ERROR_FORMAT,
                         "--resume %s: the checkpoint's note is not what lsr "
                         "train stores",
                         path);
    }
    j->resume_note = o;
    const cJSON *sweep = cJSON_GetObjectItemCaseSensitive(o, "sweep");
    if (cJSON_IsString(sweep)) /* a run of lsr sweep (its own settings and outputs) */
        return lsr__fail(LSR_ERROR_OPTION,
                         "--resume %s: the checkpoint of lsr sweep's run "
                         "%.100s: run the same lsr sweep command again to resume it",
                         path, sweep->valuestring);
    const char *keys[3] = {"out", "metrics", "checkpoint"};
    const char **values[3] = {&j->out, &j->metrics_path, &j->checkpoint_path};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        *values[i] = cJSON_IsString(v) ? v->valuestring : NULL;
    }
    const cJSON *every = cJSON_GetObjectItemCaseSensitive(o, "checkpoint_every");
    j->checkpoint_every = cJSON_IsNumber(every) ? (long long)every->valuedouble : 0;
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(o, "micro_batches");
    j->micro_batches = cJSON_IsNumber(parts) && parts->valuedouble >= 1
                           ? (long long)parts->valuedouble
                           : 0; /* 0: not stored */
    return 0;
}

int train_job_resume_flags(train_job *j, int argc, char **argv) {
    const train_job given = *j;
    const char *path = j->resume_path;
    lsr_model *m = NULL;
    lsr_train_state *st = NULL;
    lsr_train_settings stored;
    char *note = NULL;
    if (lsr_checkpoint_load(&m, &st, &stored, &note, path)) return -1;
    train_job_defaults(j);
    j->s = stored;
    j->resume_path = path;
    j->resume_epoch = lsr_train_state_epoch(st);
    lsr_train_state_free(st);
    /* the model: the checkpoint's architecture, and --model given here
     * made a spec on the same input to compare */
    char given_spec[LSR_SPEC_LEN] = "", stored_spec[LSR_SPEC_LEN];
    snprintf(stored_spec, sizeof stored_spec, "%s", lsr_model_spec(m));
    j->model_name = NULL; /* the checkpoint's model is the run's */
    lsr_model *g = NULL;
    int h, w, ch;
    lsr_model_input_shape(m, &h, &w, &ch);
    if (lsr_model_create(&g, given.model_name, h, w, ch, lsr_model_classes(m)) == LSR_OK)
        snprintf(given_spec, sizeof given_spec, "%s", lsr_model_spec(g));
    lsr_model_free(g);
    lsr_model_free(m);
    int r = take_note(j, note, path); /* after the model, whose failure is no error here */
    free(note);
    train_job here = given, there = *j;
    if (given_spec[0]) here.model_name = given_spec;
    there.model_name = stored_spec;
    /* every flag given with --resume: the value the stored run has */
    opterr = 0;
    optind = 0;
    int c;
    while (!r && (c = getopt_long(argc, argv, ":", train_opts, NULL)) != -1) {
        if (c == OPT_THREADS || c == OPT_QUIET || c == OPT_RESUME || c == OPT_MICRO_BATCHES ||
            c == OPT_EXCHANGE || c == OPT_CLASS_NAMES) /* names: the checkpoint's, or these */
            continue;
        char mine[4200], theirs[4200];
        flag_value(&here, c, 1, mine, sizeof mine);
        flag_value(&there, c, 1, theirs, sizeof theirs);
        if (strcmp(mine, theirs) != 0) {
            flag_value(c == OPT_MODEL ? &given : &here, c, 0, mine, sizeof mine);
            flag_value(&there, c, 0, theirs, sizeof theirs);
            r = lsr__fail(LSR_ERROR_OPTION,
                          "--resume %s: %s is %.200s here but %.200s in the checkpoint's "
                          "run (leave it out to keep the run's value)",
                          path, train_opt_name(c), mine, theirs);
        }
    }
    if (r) return -1;
    /* under mpirun, the parts of each batch: the checkpoint's run's (its note
     * has them when it ran under mpirun), which a --micro-batches here must match */
    if (j->micro_batches && given.micro_batches != TRAIN_DEFAULT_MICRO_BATCHES &&
        given.micro_batches != j->micro_batches) {
        lsr__fail(LSR_ERROR_OPTION,
                  "--resume %s: --micro-batches is %lld here but %lld in the checkpoint's run "
                  "(leave it out to keep the run's value)",
                  path, given.micro_batches, j->micro_batches);
        return -1;
    }
    if (!j->micro_batches) j->micro_batches = given.micro_batches;
    if (train_job_make_note(j, NULL)) return -1; /* the stored one, as j holds its files */
    j->threads = given.threads;
    j->quiet = given.quiet;
    j->class_names_path = given.class_names_path;
    j->allreduce = given.allreduce;
    return 0;
}
