/* lsr train --resume: the checkpoint's stored flags, and the flags given
 * with --resume compared with them. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../modelfile/modelfile.h"
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
        path = j->data_dir;
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
        word = s->init == LSR_INIT_HE ? "he" : s->init == LSR_INIT_GLOROT ? "glorot" : "cleverhans";
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
        if (!j->prior_arg || !strcmp(j->prior_arg, "uniform") || !strcmp(j->prior_arg, "data"))
            word = j->prior_arg ? j->prior_arg : "uniform";
        else
            path = j->prior_arg;
        break;
    case OPT_ZLOSS:
        real = s->loss.z_loss;
        break;
    case OPT_LIMIT:
        integer = j->train_limit;
        break;
    case OPT_VAL:
        integer = j->val;
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
        real = j->imbalance > 1 ? j->imbalance : 1.0;
        break;
    case OPT_ADV:
        word = j->adv ? "fgsm" : "none";
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
        integer = s->checkpoint_every;
        break;
    case OPT_NONFINITE:
        word = s->skip_nonfinite ? "skip" : "stop";
        break;
    case OPT_PRECISION:
        word = j->precision == LSR_PRECISION_BF16 ? "bf16" : "fp32";
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
        snprintf(buf, size, exact ? "%.9g" : "%g", real);
    else
        snprintf(buf, size, "%lld", integer);
}

int train_job_resume_flags(train_job *j, int argc, char **argv) {
    const train_job given = *j;
    const char *path = j->resume_path;
    lsr_model m;
    lsr_train_state st;
    char *command = NULL;
    if (lsr_checkpoint_load(path, &m, &st, NULL, -1, &command, j->err)) return -1;
    lsr_model_free(&m);
    cJSON *a = cJSON_Parse(command);
    free(command);
    const int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    const cJSON *first = n > 0 ? cJSON_GetArrayItem(a, 0) : NULL;
    if (cJSON_IsString(first) && strncmp(first->valuestring, "--", 2) != 0) {
        /* a run of lsr sweep (its own settings and outputs): the sweep resumes it */
        const char *run = first->valuestring;
        if (!strncmp(run, "sweep:", 6)) run += 6;
        lsr_fail(j->err,
                 "--resume %s: the checkpoint of lsr sweep's run %.100s: run the same "
                 "lsr sweep command again to resume it",
                 path, run);
        cJSON_Delete(a);
        return -1;
    }
    char **args = n >= 0 ? calloc((size_t)n + 2, sizeof *args) : NULL;
    if (!args) {
        cJSON_Delete(a);
        return lsr_fail(j->err, "--resume %s: the stored command line is malformed", path);
    }
    args[0] = "train";
    int ok = 1;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(v))
            ok = 0;
        else
            args[i + 1] = v->valuestring;
    }
    train_job_defaults(j);
    int r = ok ? train_job_parse(j, n + 1, args)
               : lsr_fail(j->err, "--resume %s: malformed command", path);
    free(args);
    /* every flag given with --resume: the value the stored run has */
    opterr = 0;
    optind = 0;
    int c;
    while (!r && (c = getopt_long(argc, argv, ":", train_opts, NULL)) != -1) {
        if (c == OPT_THREADS || c == OPT_QUIET || c == OPT_RESUME) continue;
        char here[4200], there[4200];
        flag_value(&given, c, 1, here, sizeof here);
        flag_value(j, c, 1, there, sizeof there);
        if (strcmp(here, there) != 0) {
            flag_value(&given, c, 0, here, sizeof here);
            flag_value(j, c, 0, there, sizeof there);
            r = lsr_fail(j->err,
                         "--resume %s: %s is %.200s here but %.200s in the checkpoint's "
                         "run (leave it out to keep the run's value)",
                         path, train_opt_name(c), here, there);
        }
    }
    if (r) {
        cJSON_Delete(a);
        return r == TRAIN_JOB_HELP ? TRAIN_JOB_HELP : -1;
    }
    j->command_json = cJSON_PrintUnformatted(a);
    j->resume_command = a; /* j's strings point into it */
    j->resume_path = path;
    j->threads = given.threads;
    j->quiet = given.quiet;
    return 0;
}
