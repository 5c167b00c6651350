/* What lsr sweep keeps of its runs, read back when it resumes: each
 * finished run's JSON file and each run's checkpoint; and results.csv. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "../train/train.h"
#include "sweep_results.h"

static cJSON *number_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static void add_metrics(cJSON *o, const char *key, const lsr_metrics *m) {
    cJSON *x = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(x, "accuracy", m->accuracy);
    cJSON_AddNumberToObject(x, "top5", m->top5);
    cJSON_AddNumberToObject(x, "nll", m->nll);
    cJSON_AddNumberToObject(x, "ece", m->ece);
    cJSON_AddNumberToObject(x, "mce", m->mce);
    cJSON_AddNumberToObject(x, "brier", m->brier);
    cJSON_AddNumberToObject(x, "mean_confidence", m->mean_confidence);
    double count[LSR_CALIBRATION_BINS];
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++)
        count[b] = (double)m->bin_count[b];
    cJSON_AddItemToObject(x, "bin_count", number_array(count, LSR_CALIBRATION_BINS));
    cJSON_AddItemToObject(x, "bin_confidence",
                          number_array(m->bin_confidence, LSR_CALIBRATION_BINS));
    cJSON_AddItemToObject(x, "bin_accuracy", number_array(m->bin_accuracy, LSR_CALIBRATION_BINS));
}

static int get_number(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNull(v)) {
        *out = NAN;
        return 1;
    }
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

static int read_metrics(const cJSON *o, const char *key, lsr_metrics *m) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    memset(m, 0, sizeof *m);
    if (!cJSON_IsObject(x)) return 0;
    int ok = get_number(x, "accuracy", &m->accuracy) && get_number(x, "top5", &m->top5) &&
             get_number(x, "nll", &m->nll) && get_number(x, "ece", &m->ece) &&
             get_number(x, "mce", &m->mce) && get_number(x, "brier", &m->brier) &&
             get_number(x, "mean_confidence", &m->mean_confidence);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "bin_count");
    const cJSON *bc = cJSON_GetObjectItemCaseSensitive(x, "bin_confidence");
    const cJSON *ba = cJSON_GetObjectItemCaseSensitive(x, "bin_accuracy");
    if (!ok || cJSON_GetArraySize(c) != LSR_CALIBRATION_BINS ||
        cJSON_GetArraySize(bc) != LSR_CALIBRATION_BINS ||
        cJSON_GetArraySize(ba) != LSR_CALIBRATION_BINS)
        return 0;
    for (int b = 0; b < LSR_CALIBRATION_BINS; b++) {
        m->bin_count[b] = (int64_t)cJSON_GetArrayItem(c, b)->valuedouble;
        m->bin_confidence[b] = cJSON_GetArrayItem(bc, b)->valuedouble;
        m->bin_accuracy[b] = cJSON_GetArrayItem(ba, b)->valuedouble;
        m->n += m->bin_count[b];
    }
    return 1;
}

lsr_status sweep_result_save(const char *path, const run_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "eps", r->eps);
    cJSON_AddNumberToObject(o, "seed", r->seed);
    add_metrics(o, "plain", &r->plain);
    add_metrics(o, "temperature_scaled", &r->scaled);
    cJSON_AddNumberToObject(o, "temperature", r->temperature);
    cJSON_AddNumberToObject(o, "fgsm_accuracy", r->fgsm);
    if (isnan(r->transfer))
        cJSON_AddNullToObject(o, "transfer_fgsm_accuracy");
    else
        cJSON_AddNumberToObject(o, "transfer_fgsm_accuracy", r->transfer);
    cJSON_AddNumberToObject(o, "train_seconds", r->seconds);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    lsr_atomic_file af;
    if (!text) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    const lsr_status st = lsr_atomic_open(&af, path);
    if (st != LSR_OK) {
        free(text);
        return st;
    }
    fputs(text, af.f);
    fputc('\n', af.f);
    free(text);
    return lsr_atomic_commit(&af);
}

int sweep_result_load(const char *path, run_result *r) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    double seed = -1;
    int ok =
        cJSON_IsObject(o) && get_number(o, "eps", &r->eps) && get_number(o, "seed", &seed) &&
        read_metrics(o, "plain", &r->plain) && read_metrics(o, "temperature_scaled", &r->scaled) &&
        get_number(o, "temperature", &r->temperature) && get_number(o, "fgsm_accuracy", &r->fgsm) &&
        get_number(o, "transfer_fgsm_accuracy", &r->transfer) &&
        get_number(o, "train_seconds", &r->seconds);
    r->seed = (int)seed;
    r->tightness = NAN; /* measured by the report */
    cJSON_Delete(o);
    return ok;
}

lsr_status sweep_results_csv(const char *dir, const run_result *r, int nr) {
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    lsr_atomic_file af;
    LSR_TRY(lsr_atomic_open(&af, path));
    fprintf(af.f, "eps,seed,accuracy,top5,nll,ece,mce,brier,mean_confidence,fgsm_accuracy,"
                  "transfer_fgsm_accuracy,temperature,ts_nll,ts_ece,ts_mce,ts_brier,train_seconds,"
                  "tightness\n");
    for (int i = 0; i < nr; i++) {
        const run_result *x = &r[i];
        char transfer[32] = "", tightness[32] = "";
        if (!isnan(x->transfer)) snprintf(transfer, sizeof transfer, "%.6f", x->transfer);
        if (!isnan(x->tightness)) snprintf(tightness, sizeof tightness, "%.6f", x->tightness);
        fprintf(
            af.f,
            "%g,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.1f,%s\n",
            x->eps, x->seed, x->plain.accuracy, x->plain.top5, x->plain.nll, x->plain.ece,
            x->plain.mce, x->plain.brier, x->plain.mean_confidence, x->fgsm, transfer,
            x->temperature, x->scaled.nll, x->scaled.ece, x->scaled.mce, x->scaled.brier,
            x->seconds, tightness);
    }
    return lsr_atomic_commit(&af);
}

void sweep_run_checkpoint(char *buf, size_t size, const char *base, const char *name) {
    const char *slash = strrchr(base, '/'), *file = slash ? slash + 1 : base;
    const char *dot = strrchr(file, '.');
    if (!dot || dot == file) dot = file + strlen(file);
    snprintf(buf, size, "%.*s-%s%s", (int)(dot - base), base, name, dot);
}

int sweep_checkpoint_matches(const char *path, const lsr_train_settings *s, const char *note) {
    if (access(path, F_OK) != 0) return 0;
    lsr_train_settings stored;
    char *stored_note = NULL;
    if (lsr_checkpoint_load(NULL, NULL, &stored, &stored_note, path)) return -1;
    /* a default initialisation is resolved in the checkpoint: the model's
     * (the note holds the model, so the same model means the same init) */
    lsr_train_settings mine = *s;
    if (mine.init == LSR_INIT_DEFAULT) mine.init = stored.init;
    char why[512];
    const int differ = lsr_settings_differ(&stored, &mine, why, sizeof why);
    const int same = !differ && !strcmp(stored_note, note);
    free(stored_note);
    if (same) return 1;
    lsr__fail(LSR_ERROR_MISMATCH,
              "--checkpoint %s: holds a run with other settings (%s); remove it, or give "
              "another --checkpoint",
              path, differ ? why : "another model or other files");
    return -1;
}
