/* The training settings: their defaults, their ranges, and the settings as
 * data: one table of (key, type, field) from which model files and
 * checkpoints get their "__metadata__" entries, and from which those
 * entries are read back.  Keys a file lacks (files of earlier versions)
 * keep their defaults; a value that does not parse is refused, naming the
 * key. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../modelfile/modelfile.h"
#include "train.h"

LSR_API lsr_train_settings lsr_train_settings_default(void) {
    lsr_train_settings s;
    memset(&s, 0, sizeof s);
    s.epochs = 6;
    s.batch = 128;
    s.init = LSR_INIT_DEFAULT;
    s.precision = LSR_PRECISION_FP32;
    s.optimizer = lsr_optimizer_defaults();
    s.loss = lsr_loss_options_default();
    s.prior_source = LSR_PRIOR_UNIFORM;
    s.imbalance = 1.0;
    s.distill_temperature = 1.0f;
    s.distill_weight = 0.5f;
    return s;
}

/* a finite value in [min, max], or a message naming the setting */
static lsr_status in_range(const char *name, double v, double min, double max) {
    if (!(v >= min && v <= max))
        return lsr__fail(LSR_ERROR_OPTION, "settings.%s = %g: must be in [%g, %g]", name, v, min,
                         max);
    return LSR_OK;
}

lsr_status lsr_train_settings_check(const lsr_train_settings *s) {
    const lsr_optimizer_settings *o = &s->optimizer;
    LSR_TRY(in_range("epochs", s->epochs, 1, 1e6));
    LSR_TRY(in_range("batch", s->batch, 1, 1 << 20));
    LSR_TRY(in_range("init", s->init, LSR_INIT_DEFAULT, LSR_INIT_GLOROT));
    LSR_TRY(in_range("precision", s->precision, LSR_PRECISION_FP32, LSR_PRECISION_BF16));
    LSR_TRY(in_range("optimizer.kind", o->kind, LSR_OPTIMIZER_SGD, LSR_OPTIMIZER_ADAMW));
    LSR_TRY(in_range("optimizer.lr", o->lr, 0, 1e6));
    LSR_TRY(in_range("optimizer.momentum", o->momentum, 0, 1));
    LSR_TRY(in_range("optimizer.nesterov", o->nesterov, 0, 1));
    LSR_TRY(in_range("optimizer.weight_decay", o->weight_decay, 0, 1e6));
    if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1))
        return lsr__fail(LSR_ERROR_OPTION,
                         "settings.optimizer.beta1 = %g, beta2 = %g: each must be in [0, 1)",
                         (double)o->beta1, (double)o->beta2);
    if (!(o->eps > 0 && o->eps <= 1))
        return lsr__fail(LSR_ERROR_OPTION, "settings.optimizer.eps = %g: must be in (0, 1]",
                         (double)o->eps);
    LSR_TRY(
        in_range("optimizer.schedule", o->schedule, LSR_SCHEDULE_CONSTANT, LSR_SCHEDULE_COSINE));
    LSR_TRY(in_range("optimizer.gamma", o->gamma, 0, 1e6));
    if (o->schedule == LSR_SCHEDULE_STEP && o->step_size < 1)
        return lsr__fail(LSR_ERROR_OPTION,
                         "settings.optimizer.step_size = %lld: the step schedule "
                         "needs >= 1",
                         (long long)o->step_size);
    if (o->warmup < 0 || o->total_steps < 0 || o->step_size < 0 || s->train_limit < 0 ||
        s->val_samples < 0)
        return lsr__fail(LSR_ERROR_OPTION, "settings: a step count, train_limit or val_samples "
                                           "is negative");
    if (s->loss.prior || s->loss.class_weights || s->loss.reduction != LSR_REDUCTION_MEAN ||
        s->loss.ignore_index != LSR_IGNORE_INDEX_DEFAULT || s->loss.isa != LSR_ISA_AUTO)
        return lsr__fail(LSR_ERROR_OPTION,
                         "settings.loss: prior and class_weights must be NULL (the prior comes "
                         "from prior_source), the reduction MEAN, ignore_index and isa their "
                         "defaults (lsr_loss_options_default)");
    LSR_TRY(in_range("loss.smoothing", s->loss.smoothing, 0, 1));
    LSR_TRY(
        in_range("loss.convention", s->loss.convention, LSR_SMOOTHING_ALL, LSR_SMOOTHING_OTHERS));
    LSR_TRY(in_range("loss.z_loss", s->loss.z_loss, 0, 1e6));
    LSR_TRY(in_range("loss.threads", s->loss.threads, 0, 1 << 20));
    LSR_TRY(in_range("skip_nonfinite", s->skip_nonfinite, 0, 1));
    LSR_TRY(in_range("prior_source", s->prior_source, LSR_PRIOR_UNIFORM, LSR_PRIOR_FILE));
    if (s->prior_source == LSR_PRIOR_FILE && !memchr(s->prior_file, '\0', sizeof s->prior_file))
        return lsr__fail(LSR_ERROR_OPTION, "settings.prior_file: not a terminated string");
    if (s->prior_source == LSR_PRIOR_FILE && !s->prior_file[0])
        return lsr__fail(LSR_ERROR_OPTION, "settings.prior_file: empty, with LSR_PRIOR_FILE");
    if (!memchr(s->data, '\0', sizeof s->data))
        return lsr__fail(LSR_ERROR_OPTION, "settings.data: not a terminated string");
    LSR_TRY(in_range("adv_eps", s->adv_eps, 0, 1));
    LSR_TRY(in_range("adv_weight", s->adv_weight, 0, 1));
    LSR_TRY(in_range("imbalance", s->imbalance, 1, 1e12));
    LSR_TRY(in_range("smoothing_mode", s->smoothing_mode, LSR_SMOOTHING_EXPECTED,
                     LSR_SMOOTHING_SAMPLE));
    if (!memchr(s->teacher, '\0', sizeof s->teacher))
        return lsr__fail(LSR_ERROR_OPTION, "settings.teacher: not a terminated string");
    if (!(s->distill_temperature > 0 && s->distill_temperature <= 100))
        return lsr__fail(LSR_ERROR_OPTION, "settings.distill_temperature = %g: must be in (0, 100]",
                         (double)s->distill_temperature);
    LSR_TRY(in_range("distill_weight", s->distill_weight, 0, 1));
    if (s->teacher[0] && s->adv_eps > 0)
        return lsr__fail(LSR_ERROR_OPTION, "settings: a teacher (--teacher) and adversarial "
                                           "training (--adv) together are not taken");
    const lsr_train_settings d = lsr_train_settings_default();
    if (!s->teacher[0] &&
        (s->distill_temperature != d.distill_temperature || s->distill_weight != d.distill_weight))
        return lsr__fail(LSR_ERROR_OPTION,
                         "settings.distill_temperature, distill_weight: set without a teacher");
    return LSR_OK;
}

lsr_optimizer_settings lsr_train_optimizer_settings(const lsr_train_settings *s, int64_t n) {
    lsr_optimizer_settings o = s->optimizer;
    if (o.schedule == LSR_SCHEDULE_COSINE && o.total_steps == 0)
        o.total_steps = (n + s->batch - 1) / s->batch * s->epochs;
    return o;
}

typedef enum { INT, I64, U64, FLOAT, DOUBLE, ENUM, TEXT } field_type;

typedef struct field {
    const char *key;
    field_type type;
    size_t offset;
    const char *const *names; /* ENUM: the values' words, by value */
    int optional;             /* added after checkpoints of this version existed: a
                                 missing key keeps its default there too */
} field;

static const char *const init_names[] = {"default", "cleverhans", "he", "glorot", NULL};
static const char *const precision_names[] = {"fp32", "bf16", NULL};
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", NULL};
static const char *const convention_names[] = {"all", "others", NULL};
static const char *const nonfinite_names[] = {"stop", "skip", NULL};
static const char *const smoothing_mode_names[] = {"expected", "sample", NULL};

#define AT(member) offsetof(lsr_train_settings, member)
static const field fields[] = {
    {"epochs", INT, AT(epochs), NULL, 0},
    {"batch", INT, AT(batch), NULL, 0},
    {"seed", U64, AT(seed), NULL, 0},
    {"init", ENUM, AT(init), init_names, 0},
    {"precision", ENUM, AT(precision), precision_names, 0},
    {"optimizer", ENUM, AT(optimizer.kind), optimizer_names, 0},
    {"lr", FLOAT, AT(optimizer.lr), NULL, 0},
    {"momentum", FLOAT, AT(optimizer.momentum), NULL, 0},
    {"nesterov", INT, AT(optimizer.nesterov), NULL, 0},
    {"weight_decay", FLOAT, AT(optimizer.weight_decay), NULL, 0},
    {"adam_beta1", FLOAT, AT(optimizer.beta1), NULL, 0},
    {"adam_beta2", FLOAT, AT(optimizer.beta2), NULL, 0},
    {"adam_eps", FLOAT, AT(optimizer.eps), NULL, 0},
    {"schedule", ENUM, AT(optimizer.schedule), schedule_names, 0},
    {"step_size", I64, AT(optimizer.step_size), NULL, 0},
    {"gamma", FLOAT, AT(optimizer.gamma), NULL, 0},
    {"warmup", I64, AT(optimizer.warmup), NULL, 0},
    {"total_steps", I64, AT(optimizer.total_steps), NULL, 0},
    {"smoothing", FLOAT, AT(loss.smoothing), NULL, 0},
    {"smoothing_convention", ENUM, AT(loss.convention), convention_names, 0},
    {"z_loss", FLOAT, AT(loss.z_loss), NULL, 0},
    {"adv_eps", FLOAT, AT(adv_eps), NULL, 0},
    {"adv_weight", FLOAT, AT(adv_weight), NULL, 0},
    {"on_nonfinite", ENUM, AT(skip_nonfinite), nonfinite_names, 0},
    {"data", TEXT, AT(data), NULL, 0},
    {"train_limit", I64, AT(train_limit), NULL, 0},
    {"val_samples", I64, AT(val_samples), NULL, 0},
    {"imbalance", DOUBLE, AT(imbalance), NULL, 0},
    {"smoothing_mode", ENUM, AT(smoothing_mode), smoothing_mode_names, 1},
    {"teacher", TEXT, AT(teacher), NULL, 1},
    {"teacher_hash", U64, AT(teacher_hash), NULL, 1},
    {"distill_temperature", FLOAT, AT(distill_temperature), NULL, 1},
    {"distill_weight", FLOAT, AT(distill_weight), NULL, 1},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* The shortest decimal that reads back as the same float (or double). */
static void shortest(char *buf, size_t size, double v, int is_float) {
    for (int digits = is_float ? 6 : 15; digits <= (is_float ? 9 : 17); digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

static void put_field(lsr_metadata *md, const field *f, const lsr_train_settings *s) {
    const char *p = (const char *)s + f->offset;
    char buf[64];
    switch (f->type) {
    case INT:
        lsr_metadata_set(md, f->key, "%d", *(const int *)p);
        return;
    case I64:
        lsr_metadata_set(md, f->key, "%lld", (long long)*(const int64_t *)p);
        return;
    case U64:
        lsr_metadata_set(md, f->key, "%llu", (unsigned long long)*(const uint64_t *)p);
        return;
    case FLOAT:
        shortest(buf, sizeof buf, *(const float *)p, 1);
        break;
    case DOUBLE:
        shortest(buf, sizeof buf, *(const double *)p, 0);
        break;
    case ENUM: { /* in range after lsr_train_settings_check; else the number, which reads back
                    as an error */
        const int v = *(const int *)p;
        int count = 0;
        while (f->names[count])
            count++;
        if (v >= 0 && v < count)
            lsr_metadata_set(md, f->key, "%s", f->names[v]);
        else
            lsr_metadata_set(md, f->key, "%d", v);
        return;
    }
    case TEXT:
        lsr_metadata_set(md, f->key, "%s", p);
        return;
    }
    lsr_metadata_set(md, f->key, "%s", buf);
}

void lsr_settings_to_metadata(lsr_metadata *md, const lsr_train_settings *s) {
    lsr_metadata_set(md, "settings_version", "%d", LSR_SETTINGS_VERSION);
    for (size_t i = 0; i < N_FIELDS; i++)
        put_field(md, &fields[i], s);
    /* the prior: its source, and the file it was read from */
    lsr_metadata_set(md, "smoothing_prior", "%s",
                     s->prior_source == LSR_PRIOR_DATA   ? "data"
                     : s->prior_source == LSR_PRIOR_FILE ? "file"
                                                         : "uniform");
    lsr_metadata_set(md, "smoothing_prior_file", "%s",
                     s->prior_source == LSR_PRIOR_FILE ? s->prior_file : "");
    lsr_metadata_set(md, "adv", "%s", s->adv_eps > 0 ? "fgsm" : "none"); /* for people */
}

static lsr_status get_field(lsr_train_settings *s, const field *f, const char *v,
                            const char *path) {
    char *p = (char *)s + f->offset, *end = NULL;
    errno = 0;
    switch (f->type) {
    case INT: {
        const long x = strtol(v, &end, 10);
        if (x < -2147483647L || x > 2147483647L) errno = ERANGE;
        *(int *)p = (int)x;
        break;
    }
    case I64:
        *(int64_t *)p = strtoll(v, &end, 10);
        break;
    case U64:
        *(uint64_t *)p = strtoull(v, &end, 10);
        break;
    case FLOAT:
        *(float *)p = strtof(v, &end);
        break;
    case DOUBLE:
        *(double *)p = strtod(v, &end);
        break;
    case ENUM:
        for (int k = 0; f->names[k]; k++)
            if (!strcmp(v, f->names[k])) {
                *(int *)p = k;
                return LSR_OK;
            }
        return lsr__fail(LSR_ERROR_FORMAT, "%s: metadata %s is '%.100s', not one of its words",
                         path, f->key, v);
    case TEXT:
        if (strlen(v) >= LSR_TEXT_MAX)
            return lsr__fail(LSR_ERROR_FORMAT, "%s: metadata %s is too long", path, f->key);
        strcpy(p, v);
        return LSR_OK;
    }
    if (end == v || *end || errno)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: metadata %s is '%.100s', not a number", path,
                         f->key, v);
    return LSR_OK;
}

/* s from md; all: every setting must be there (else missing ones keep their
 * defaults, and *found tells whether there was any). */
static lsr_status from_metadata(lsr_train_settings *s, int *found, int all, const lsr_metadata *md,
                                const char *path) {
    *s = lsr_train_settings_default();
    *found = 0;
    const char *version = lsr_metadata_get(md, "settings_version");
    if (version && atoi(version) != LSR_SETTINGS_VERSION)
        return lsr__fail(LSR_ERROR_FORMAT,
                         "%s: training settings of version %.20s; this lsr reads version %d", path,
                         version, LSR_SETTINGS_VERSION);
    for (size_t i = 0; i < N_FIELDS; i++) {
        const char *v = lsr_metadata_get(md, fields[i].key);
        if (!v && all && !fields[i].optional)
            return lsr__fail(LSR_ERROR_FORMAT, "%s: the setting %s is missing", path,
                             fields[i].key);
        if (!v) continue;
        *found = 1;
        LSR_TRY(get_field(s, &fields[i], v, path));
    }
    /* the prior: "uniform", "data", or "file" with smoothing_prior_file; files
     * before settings_version 1 held the file's path itself */
    const char *prior = lsr_metadata_get(md, "smoothing_prior");
    const char *file = lsr_metadata_get(md, "smoothing_prior_file");
    if (!prior && all)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: the setting smoothing_prior is missing", path);
    if (!prior || !strcmp(prior, "uniform")) {
        s->prior_source = LSR_PRIOR_UNIFORM;
    } else if (!strcmp(prior, "data")) {
        s->prior_source = LSR_PRIOR_DATA;
    } else {
        const char *name = version ? file : prior;
        if (!name || !name[0] || (version && strcmp(prior, "file") != 0))
            return lsr__fail(LSR_ERROR_FORMAT,
                             "%s: metadata smoothing_prior is '%.100s' with "
                             "no prior file",
                             path, prior);
        if (strlen(name) >= sizeof s->prior_file)
            return lsr__fail(LSR_ERROR_FORMAT, "%s: metadata smoothing_prior_file is too long",
                             path);
        s->prior_source = LSR_PRIOR_FILE;
        strcpy(s->prior_file, name);
    }
    const lsr_status st = lsr_train_settings_check(s);
    if (st != LSR_OK) return lsr__fail(LSR_ERROR_FORMAT, "%s: %s", path, lsr_last_error());
    return LSR_OK;
}

lsr_status lsr_settings_from_metadata(lsr_train_settings *s, int *found, const lsr_metadata *md,
                                      const char *path) {
    return from_metadata(s, found, 0, md, path);
}

lsr_status lsr_settings_from_metadata_all(lsr_train_settings *s, const lsr_metadata *md,
                                          const char *path) {
    int found;
    return from_metadata(s, &found, 1, md, path);
}

int lsr_settings_differ(const lsr_train_settings *a, const lsr_train_settings *b, char *why,
                        size_t size) {
    lsr_metadata *ma = calloc(2, sizeof *ma), *mb = ma + 1; /* 140 KB: not on the stack */
    if (!ma) {
        snprintf(why, size, "out of memory to compare the settings");
        return 1;
    }
    lsr_settings_to_metadata(ma, a);
    lsr_settings_to_metadata(mb, b);
    int differ = 0;
    for (int i = 0; i < ma->n && !differ; i++) {
        const char *other = lsr_metadata_get(mb, ma->key[i]);
        if (other && strcmp(ma->value[i], other) == 0) continue;
        snprintf(why, size, "%s is %.200s, not %.200s", ma->key[i], ma->value[i],
                 other ? other : "(none)");
        differ = 1;
    }
    free(ma);
    return differ;
}
