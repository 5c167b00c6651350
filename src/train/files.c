#define _POSIX_C_SOURCE 200809L
/* A run's files.  Model files: the parameters (modelfile/), the settings
 * the model was trained with (settings.c) and its temperature.
 * Checkpoints: everything a training run needs to go on exactly where it
 * stopped, in a safetensors file: the parameters (lsr's own layout), the
 * optimizer's moments, the sample order of the epoch in progress, and in
 * the metadata the epoch, step, optimizer step count, random-generator
 * state, the run's settings and the caller's note. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../modelfile/modelfile.h"
#include "train.h"

/* Metadata records are 70 KB: not on the stack. */
static _Thread_local lsr_metadata metadata;

/* The names as a JSON array (malloc'd; NULL: out of memory), of classes
 * names or else of m's. */
static char *class_names_json(const char *const *names, int classes, const lsr_model *m) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < classes; k++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(names ? names[k] : m->class_names[k]))) {
            cJSON_Delete(a);
            a = NULL;
        }
    char *json = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return json;
}

/* Bytes of the UTF-8 sequence at s (1 to 4), or 0 when s does not start a
 * well-formed one (overlong forms and surrogates included). */
static int utf8_length(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    const int n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
                  : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                  : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                                 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* names[0..classes): each a usable name, all different, or the status bad
 * with a message (prefixed with what) naming the first that is not. */
static lsr_status check_class_names(const char *const *names, int classes, const char *what,
                                    lsr_status bad) {
    for (int k = 0; k < classes; k++) {
        const char *s = names[k];
        if (!s || !*s || strlen(s) >= LSR_CLASS_NAME_MAX)
            return lsr__fail(bad, "%s: the name of class %d is %s (1 to %d bytes)", what, k,
                             !s   ? "missing"
                             : *s ? "too long"
                                  : "empty",
                             LSR_CLASS_NAME_MAX - 1);
        for (const unsigned char *c = (const unsigned char *)s; *c; c += utf8_length(c)) {
            if (*c < 0x20 || *c == 0x7f)
                return lsr__fail(bad, "%s: the name of class %d holds a control character", what,
                                 k);
            /* the model file's header is JSON, and the plots XML: both UTF-8 */
            if (!utf8_length(c))
                return lsr__fail(bad, "%s: the name of class %d is not UTF-8", what, k);
        }
        for (int j = 0; j < k; j++)
            if (!strcmp(names[j], s))
                return lsr__fail(bad, "%s: classes %d and %d are both named '%s'", what, j, k, s);
    }
    return LSR_OK;
}

LSR_API const char *lsr_model_class_name(const lsr_model *m, int k) {
    return m && m->class_names && k >= 0 && k < m->classes ? m->class_names[k] : NULL;
}

lsr_status lsr_class_names_fit(const char *const *names, int classes, const char *what,
                               lsr_status bad) {
    if (classes > (LSR_META_VALUE - 1) / 4) /* ["a","b",...]: 4 bytes a name at least */
        return lsr__fail(
            bad, "%s for %d classes: a model file keeps at most %d bytes of them (%d names)", what,
            classes, LSR_META_VALUE - 1, (LSR_META_VALUE - 1) / 4);
    LSR_TRY(check_class_names(names, classes, what, bad));
    char *json = class_names_json(names, classes, NULL);
    if (!json) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    const size_t bytes = strlen(json);
    free(json);
    if (bytes >= LSR_META_VALUE)
        return lsr__fail(bad, "%s: %zu bytes as JSON; a model file keeps at most %d", what, bytes,
                         LSR_META_VALUE - 1);
    return LSR_OK;
}

/* m's names: names (checked by lsr_class_names_fit), or none for NULL. */
static lsr_status set_class_names(lsr_model *m, const char *const *names, const char *what,
                                  lsr_status bad) {
    if (!names) {
        free(m->class_names);
        m->class_names = NULL;
        return LSR_OK;
    }
    LSR_TRY(lsr_class_names_fit(names, m->classes, what, bad));
    char(*copy)[LSR_CLASS_NAME_MAX] = calloc((size_t)m->classes, sizeof *copy);
    if (!copy) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    for (int k = 0; k < m->classes; k++)
        snprintf(copy[k], LSR_CLASS_NAME_MAX, "%s", names[k]);
    free(m->class_names);
    m->class_names = copy;
    return LSR_OK;
}

LSR_API lsr_status lsr_model_set_class_names(lsr_model *m, const char *const *names) {
    if (!m) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_set_class_names: m is NULL");
    return set_class_names(m, names, "class names", LSR_ERROR_OPTION);
}

/* m's class names from md's class_names (a JSON array of m->classes
 * strings), if it has them. */
static lsr_status read_class_names(lsr_model *m, const lsr_metadata *md, const char *path) {
    const char *json = lsr_metadata_get(md, "class_names");
    if (!json) return LSR_OK;
    cJSON *a = cJSON_Parse(json);
    const char *names[LSR_META_VALUE / 3]; /* "", takes 3 bytes at least */
    int n = 0;
    lsr_status st = LSR_OK;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != m->classes ||
        m->classes > (int)(sizeof names / sizeof *names))
        st = lsr__fail(LSR_ERROR_FORMAT, "%s: metadata class_names is not an array of %d names",
                       path, m->classes);
    for (const cJSON *it = a ? a->child : NULL; !st && it; it = it->next)
        names[n++] = cJSON_IsString(it) ? it->valuestring : NULL;
    char what[4200];
    snprintf(what, sizeof what, "%s: metadata class_names", path);
    if (!st) st = set_class_names(m, names, what, LSR_ERROR_FORMAT);
    cJSON_Delete(a);
    return st;
}

/* md's class_names: m's names, or none. */
static lsr_status write_class_names(lsr_metadata *md, const lsr_model *m, const char *path) {
    lsr_metadata_remove(md, "class_names");
    if (!m->class_names) return LSR_OK;
    char *json = class_names_json(NULL, m->classes, m);
    if (!json) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    lsr_metadata_set(md, "class_names", "%s", json); /* fits: checked when set */
    free(json);
    return LSR_OK;
}

LSR_API lsr_status lsr_model_save(const lsr_model *m, const char *path) {
    if (!m || !path) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_save: m or path is NULL");
    lsr_metadata *md = &metadata;
    if (m->file_metadata) { /* a loaded model not trained since: its file's entries as they were */
        *md = *(const lsr_metadata *)m->file_metadata;
    } else {
        memset(md, 0, sizeof *md);
        if (m->has_settings) {
            lsr_settings_to_metadata(md, &m->settings);
            lsr_metadata_set(md, "training_samples", "%lld", (long long)m->training_samples);
        }
    }
    if (m->temperature > 0) lsr_metadata_set(md, "temperature", "%.6f", m->temperature);
    LSR_TRY(write_class_names(md, m, path));
    return lsr_model_write(m, md, path);
}

/* m's settings, training-set size and temperature from md. */
static lsr_status read_record(lsr_model *m, const lsr_metadata *md, const char *path) {
    LSR_TRY(lsr_settings_from_metadata(&m->settings, &m->has_settings, md, path));
    const char *samples = lsr_metadata_get(md, "training_samples");
    const char *temperature = lsr_metadata_get(md, "temperature");
    m->training_samples = samples ? strtoll(samples, NULL, 10) : 0;
    if (!temperature) return LSR_OK;
    char *end;
    m->temperature = strtod(temperature, &end);
    if (end == temperature || *end || !(m->temperature > 0) || !isfinite(m->temperature))
        return lsr__fail(LSR_ERROR_FORMAT, "%s: metadata temperature is '%.40s', not a number > 0",
                         path, temperature);
    return LSR_OK;
}

LSR_API lsr_status lsr_model_load(lsr_model **out, const char *path) {
    if (!out || !path)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_load: out or path is NULL");
    *out = NULL;
    lsr_model *m = calloc(1, sizeof *m);
    if (!m) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    lsr_status st = lsr_model_read(m, &metadata, path);
    if (st == LSR_OK) st = read_record(m, &metadata, path);
    if (st == LSR_OK) st = read_class_names(m, &metadata, path);
    if (st == LSR_OK && !(m->file_metadata = malloc(sizeof metadata)))
        st = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (st == LSR_OK) memcpy(m->file_metadata, &metadata, sizeof metadata);
    if (st != LSR_OK) {
        lsr_model_free(m);
        return st;
    }
    *out = m;
    return LSR_OK;
}

#define CHECKPOINT_FORMAT "lsr-checkpoint-2"

LSR_API lsr_status lsr_checkpoint_save(const char *path, const lsr_model *m,
                                       const lsr_train_state *st, const char *note) {
    if (!path || !m || !st)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_checkpoint_save: an argument is NULL");
    if (note && strlen(note) >= LSR_TEXT_MAX)
        return lsr__fail(LSR_ERROR_OPTION, "%s: the note is longer than %d bytes", path,
                         LSR_TEXT_MAX - 1);
    if (st->opt.n != m->n_params || strcmp(st->spec, m->spec) != 0)
        return lsr__fail(LSR_ERROR_MISMATCH,
                         "%s: the state is of a run of model %.300s (%zu parameters), not of "
                         "this one",
                         path, st->spec, st->opt.n);
    const lsr_train_settings *s = &st->settings;
    lsr_metadata *md = &metadata;
    memset(md, 0, sizeof *md);
    lsr_metadata_set(md, "format", CHECKPOINT_FORMAT);
    lsr_metadata_set(md, "architecture", "%s", m->spec);
    lsr_metadata_set(md, "classes", "%d", m->classes);
    lsr_metadata_set(md, "input_shape", "%d,%d,%d", m->input.h, m->input.w, m->input.c);
    lsr_settings_to_metadata(md, s);
    lsr_metadata_set(md, "epoch", "%d", st->epoch);
    lsr_metadata_set(md, "step", "%lld", (long long)st->step);
    lsr_metadata_set(md, "samples", "%lld", (long long)st->n);
    lsr_metadata_set(md, "data_hash", "%016" PRIx64, st->data_hash);
    lsr_metadata_set(md, "optimizer_steps", "%lld", (long long)st->opt.t);
    lsr_metadata_set(md, "skipped", "%lld", (long long)st->skipped);
    lsr_metadata_set(md, "rng", "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
                     st->rng.s[0], st->rng.s[1], st->rng.s[2], st->rng.s[3]);
    lsr_metadata_set(md, "note", "%s", note ? note : "");
    LSR_TRY(write_class_names(md, m, path)); /* a resume keeps them */
    const int64_t n = (int64_t)m->n_params;
    lsr_tensor t[4] = {
        {"params", "F32", 1, {n, 0, 0, 0}, m->params, m->n_params * sizeof(float)},
        {"optimizer_m", "F32", 1, {n, 0, 0, 0}, st->opt.m, m->n_params * sizeof(float)},
        {"order", "I64", 1, {st->n, 0, 0, 0}, st->order, (size_t)st->n * sizeof(int64_t)},
        {"optimizer_v", "F32", 1, {n, 0, 0, 0}, st->opt.v, m->n_params * sizeof(float)},
    };
    return lsr_safetensors_write(path, md, t, st->opt.v ? 4 : 3);
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

/* st: the state f's metadata and tensors hold, for m trained with s. */
static lsr_status read_state(lsr_train_state *st, lsr_safetensors *f, lsr_model *m,
                             const lsr_train_settings *s) {
    const char *path = f->path;
    int64_t epoch, step, t, skipped, n;
    const char *rng = lsr_metadata_get(&f->md, "rng");
    const char *data_hash = lsr_metadata_get(&f->md, "data_hash");
    char *end;
    if (!parse_int64(&f->md, "epoch", 1, &epoch) || !parse_int64(&f->md, "step", 0, &step) ||
        !parse_int64(&f->md, "optimizer_steps", 0, &t) ||
        !parse_int64(&f->md, "skipped", 0, &skipped) || !parse_int64(&f->md, "samples", 1, &n) ||
        !rng || strlen(rng) != 64 || !data_hash || strlen(data_hash) != 16 || epoch > s->epochs + 1)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: the checkpoint's metadata is incomplete", path);
    st->data_hash = strtoull(data_hash, &end, 16);
    if (*end)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: the checkpoint's data_hash is malformed", path);
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, rng + 16 * i, 16);
        part[16] = '\0';
        st->rng.s[i] = strtoull(part, &end, 16);
        if (*end)
            return lsr__fail(LSR_ERROR_FORMAT, "%s: the checkpoint's rng state is malformed", path);
    }
    const lsr_optimizer_settings os = lsr_train_optimizer_settings(s, n);
    LSR_TRY(lsr_optimizer_init(&st->opt, &os, m->n_params));
    st->opt.t = t;
    st->epoch = (int)epoch;
    st->step = step;
    st->skipped = skipped;
    st->n = n;
    st->order = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!st->order) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    const int64_t np = (int64_t)m->n_params;
    LSR_TRY(lsr_safetensors_get(f, "params", "F32", &np, 1, m->params));
    LSR_TRY(lsr_safetensors_get(f, "optimizer_m", "F32", &np, 1, st->opt.m));
    LSR_TRY(lsr_safetensors_get(f, "order", "I64", &n, 1, st->order));
    if (st->opt.v) LSR_TRY(lsr_safetensors_get(f, "optimizer_v", "F32", &np, 1, st->opt.v));
    LSR_TRY(lsr_safetensors_check_complete(f));
    for (int64_t i = 0; i < n; i++)
        if (st->order[i] < 0 || st->order[i] >= n)
            return lsr__fail(LSR_ERROR_FORMAT, "%s: the sample order holds %lld, outside [0, %lld)",
                             path, (long long)st->order[i], (long long)n);
    st->params_hash = lsr_train_params_hash(m);
    snprintf(st->spec, sizeof st->spec, "%s", m->spec);
    m->training_samples = n;
    return LSR_OK;
}

/* Opens path as a checkpoint; one of an older format is named as such. */
static lsr_status open_checkpoint(lsr_safetensors *f, const char *path) {
    const lsr_status st = lsr_safetensors_open(f, path, CHECKPOINT_FORMAT);
    if (st == LSR_OK || !strstr(lsr_last_error(), "'lsr-checkpoint-1'")) return st;
    return lsr__fail(LSR_ERROR_FORMAT,
                     "%s: a checkpoint of format lsr-checkpoint-1 (an older lsr, whose settings "
                     "were a command line); this lsr reads " CHECKPOINT_FORMAT
                     ": remove it and start the run again",
                     path);
}

LSR_API lsr_status lsr_checkpoint_load(lsr_model **m_out, lsr_train_state **st_out,
                                       lsr_train_settings *s_out, char **note_out,
                                       const char *path) {
    if (m_out) *m_out = NULL;
    if (st_out) *st_out = NULL;
    if (note_out) *note_out = NULL;
    if (s_out) *s_out = lsr_train_settings_default();
    if (!path) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_checkpoint_load: path is NULL");
    lsr_safetensors *f = malloc(sizeof *f); /* 70 KB: not on the stack */
    if (!f) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    const lsr_status opened = open_checkpoint(f, path);
    if (opened != LSR_OK) {
        free(f);
        return opened;
    }
    lsr_train_settings s;
    lsr_model *m = calloc(1, sizeof *m);
    lsr_train_state *st = m_out || st_out ? calloc(1, sizeof *st) : NULL; /* m's parameters */
    const char *note = lsr_metadata_get(&f->md, "note");
    char *note_copy = note_out ? strdup(note ? note : "") : NULL;
    lsr_status status = LSR_OK;
    if (!m || ((m_out || st_out) && !st) || (note_out && !note_copy))
        status = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (!status) status = lsr_settings_from_metadata_all(&s, &f->md, path);
    if (!status) status = lsr_model_from_metadata(m, &f->md, path);
    if (!status) status = read_class_names(m, &f->md, path);
    if (!status && st) status = read_state(st, f, m, &s);
    lsr_safetensors_close(f);
    free(f);
    if (!status) {
        m->settings = s;
        m->has_settings = 1;
        if (st) st->settings = s;
    }
    if (status) {
        lsr_model_free(m);
        lsr_train_state_free(st);
        free(note_copy);
        return status;
    }
    if (s_out) *s_out = s;
    if (st_out)
        *st_out = st;
    else
        lsr_train_state_free(st);
    if (note_out) *note_out = note_copy;
    if (m_out)
        *m_out = m;
    else
        lsr_model_free(m);
    return LSR_OK;
}
