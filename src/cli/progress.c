/* A training run's progress on stderr and in the --metrics file. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "progress.h"

void progress_draw(const char *prefix, double *last_draw, const lsr_train_progress *p) {
    const double now = lsr_now();
    if (p->step != p->steps_per_epoch && now - *last_draw < 0.1) return;
    *last_draw = now;
    const double rate = p->samples / (p->seconds > 0 ? p->seconds : 1e-9);
    const double eta = (double)(p->steps_per_epoch - p->step) * p->seconds / (double)p->step;
    const int width = 24, filled = (int)(width * p->step / p->steps_per_epoch);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr,
            "\r%sepoch %d/%d [%s] %lld/%lld loss %.4f H(q,p) %.4f H(u,p) %.4f %.0f samples/s "
            "ETA %.0fs ",
            prefix, p->epoch, p->epochs, bar, (long long)p->step, (long long)p->steps_per_epoch,
            p->loss, p->label_ce, p->prior_ce, rate, eta);
    fflush(stderr);
}

void progress_end_bar(void) { fputc('\n', stderr); }

void progress_epoch_line(const char *prefix, const lsr_train_progress *p, double val_acc) {
    char val[96] = "";
    if (!isnan(val_acc)) snprintf(val, sizeof val, "  val acc %.4f", val_acc);
    if (p->skipped)
        snprintf(val + strlen(val), sizeof val - strlen(val), "  %lld batches skipped (non-finite)",
                 (long long)p->skipped);
    fprintf(stderr,
            "%sepoch %d/%d: loss %.4f  H(q,p) %.4f  H(u,p) %.4f  train acc %.4f%s  %.1fs  "
            "%.0f samples/s\n",
            prefix, p->epoch, p->epochs, p->loss, p->label_ce, p->prior_ce, p->accuracy, val,
            p->seconds, p->samples / p->seconds);
}

lsr_status progress_metrics_append(const char *path, char **text, size_t *len,
                                   const lsr_train_progress *p, double val_acc, double step_sd) {
    char line[512], val[32] = "null", sd[32] = "null";
    if (!isnan(val_acc)) snprintf(val, sizeof val, "%.6f", val_acc);
    if (!isnan(step_sd)) snprintf(sd, sizeof sd, "%.6f", step_sd);
    const int n = snprintf(line, sizeof line,
                           "{\"epoch\": %d, \"steps\": %lld, \"loss\": %.6f, \"label_ce\": %.6f, "
                           "\"prior_ce\": %.6f, \"train_accuracy\": %.6f, \"val_accuracy\": %s, "
                           "\"step_loss_sd\": %s, \"seconds\": %.3f, \"samples_per_second\": "
                           "%.1f}\n",
                           p->epoch, (long long)p->step, p->loss, p->label_ce, p->prior_ce,
                           p->accuracy, val, sd, p->seconds, p->samples / p->seconds);
    char *grown = realloc(*text, *len + (size_t)n + 1);
    if (!grown) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "--metrics %s: out of memory", path);
    *text = grown;
    memcpy(*text + *len, line, (size_t)n + 1);
    *len += (size_t)n;
    lsr_atomic_file af;
    LSR_TRY(lsr_atomic_open(&af, path));
    fputs(*text, af.f);
    return lsr_atomic_commit(&af);
}

void progress_metrics_reload(const char *path, int before_epoch, char **text, size_t *len) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        int epoch;
        if (sscanf(line, "{\"epoch\": %d", &epoch) != 1 || epoch >= before_epoch) continue;
        const size_t n = strlen(line);
        char *grown = realloc(*text, *len + n + 1);
        if (!grown) break;
        *text = grown;
        memcpy(*text + *len, line, n + 1);
        *len += n;
    }
    fclose(f);
}
