/* lsr train's job: defaults, the note of its files, and the run (split,
 * model, the library's training loop with the progress display). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "../net/net.h"
#include "../train/train.h"
#include "cli.h"
#include "progress.h"
#include "train_job.h"

void train_job_defaults(train_job *j) {
    memset(j, 0, sizeof *j);
    j->s = lsr_train_settings_default();
    snprintf(j->s.data, sizeof j->s.data, "%s", LSR_FASHION_MNIST_DIR);
    j->s.epochs = TRAIN_DEFAULT_EPOCHS;
    j->s.batch = TRAIN_DEFAULT_BATCH;
    j->model_name = "cleverhans-cnn";
    j->micro_batches = TRAIN_DEFAULT_MICRO_BATCHES;
    j->prefix = "";
    j->tty = isatty(fileno(stderr));
}

lsr_status train_job_make_note(train_job *j, const char *sweep_run) {
    cJSON *o = cJSON_CreateObject();
    const char *keys[3] = {"out", "metrics", "checkpoint"};
    const char *values[3] = {j->out, j->metrics_path, j->checkpoint_path};
    for (int i = 0; o && i < 3; i++)
        if (!cJSON_AddItemToObject(o, keys[i],
                                   values[i] ? cJSON_CreateString(values[i]) : cJSON_CreateNull()))
            break;
    if (o && j->checkpoint_path)
        cJSON_AddNumberToObject(o, "checkpoint_every", (double)j->checkpoint_every);
    if (o && !sweep_run &&
        cli_train_parallel(1, 0)) /* the parts decide the bits: a resume keeps them */
        cJSON_AddNumberToObject(o, "micro_batches", (double)j->micro_batches);
    if (o && sweep_run) { /* the sweep matches its runs' checkpoints by their model too */
        cJSON_AddStringToObject(o, "sweep", sweep_run);
        cJSON_AddStringToObject(o, "model", j->model_name);
    }
    free(j->note);
    j->note = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!j->note) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    if (j->checkpoint_path && strlen(j->note) >= LSR_TEXT_MAX)
        return lsr__fail(LSR_ERROR_OPTION,
                         "the paths of --out, --metrics and --checkpoint are "
                         "too long to store in a checkpoint (%d bytes in all)",
                         LSR_TEXT_MAX - 1);
    return LSR_OK;
}

static lsr_status draw_progress(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (!isnan(p->step_loss)) { /* for the spread of the loss across the epoch's steps */
        j->step_sum += p->step_loss;
        j->step_sum2 += p->step_loss * p->step_loss;
        j->step_count++;
    }
    if (!j->quiet && j->tty) progress_draw(j->prefix, &j->last_draw, p);
    return LSR_OK;
}

static lsr_status epoch_done(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (j->tty && !j->quiet) progress_end_bar();
    double val_acc = NAN;
    if (j->val_set && j->val_set->n > 0) {
        lsr_metrics mt;
        LSR_TRY(lsr_model_evaluate(&mt, j->model, j->val_set, 1.0));
        val_acc = mt.accuracy;
    }
    if (!j->quiet) progress_epoch_line(j->prefix, p, val_acc);
    const double sd = cli_sample_sd((double)j->step_count, j->step_sum, j->step_sum2);
    j->step_sum = j->step_sum2 = 0;
    j->step_count = 0;
    if (j->metrics_path && (cli_rank() == 0 || j->single_process)) /* rank 0 writes them */
        return progress_metrics_append(j->metrics_path, &j->metrics_text, &j->metrics_len, p,
                                       val_acc, sd);
    return LSR_OK;
}

static lsr_status save_checkpoint(void *ctx, const lsr_model *m, const lsr_train_state *st) {
    train_job *j = ctx;
    j->stopped_epoch = lsr_train_state_epoch(st);
    j->stopped_step = lsr_train_state_step(st);
    if (!j->checkpoint_path || (cli_rank() != 0 && !j->single_process)) return LSR_OK;
    return lsr_checkpoint_save(j->checkpoint_path, m, st, j->note);
}

// for the run's header line: the processes under mpirun
static const char *parallel_words(const train_job *j) {
    static char words[128];
    words[0] = '\0';
    if (!j->single_process && (cli_ranks() > 1 || cli_train_parallel(1, 0)))
        snprintf(words, sizeof words, " x %d process%s (data parallel, %lld micro-batches, %s)",
                 cli_ranks(), cli_ranks() > 1 ? "es" : "", j->micro_batches,
                 j->allreduce ? "MPI_Allreduce: bits depend on P" : "exact");
    return words;
}

// for the run's header line
static const char *precision_words(lsr_precision precision, const lsr_model *m) {
    if (precision == LSR_PRECISION_FP32) return "fp32";
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LSR_LAYER_CONV2D && !lsr_conv2d_is_dense(&m->layers[i]))
            return "bf16 convolutions";
    return "fp32 (bf16 asked, but the model has no convolution it applies to)";
}

static void print_header(const train_job *j, const lsr_dataset *train, const lsr_dataset *val,
                         int classes, const lsr_model *m) {
    const lsr_train_settings *s = &j->s;
    const char *prior = s->prior_source == LSR_PRIOR_DATA ? "data" : s->prior_file;
    fprintf(stderr,
            "%slsr train: %s, %lld training / %lld validation samples of %dx%dx%d, "
            "%d classes\nmodel %s (%zu parameters), eps %g (%s%s%s), %d epochs, batch %d, "
            "%d threads%s, %s, GEMMs by %s\n",
            j->prefix, s->data, (long long)train->n, (long long)val->n, train->h, train->w,
            train->c, classes, lsr_model_spec(m), lsr_model_param_count(m),
            (double)s->loss.smoothing, s->prior_source != LSR_PRIOR_UNIFORM ? "prior " : "",
            s->prior_source != LSR_PRIOR_UNIFORM      ? prior
            : s->loss.convention == LSR_SMOOTHING_ALL ? "all"
                                                      : "others",
            s->smoothing_mode == LSR_SMOOTHING_SAMPLE && s->loss.smoothing > 0
                ? ", labels resampled"
                : "",
            s->epochs, s->batch, cli_threads(), parallel_words(j), precision_words(s->precision, m),
            lsr_gemm_backend());
}

lsr_status train_job_run(train_job *j, const lsr_dataset *all, int classes, lsr_model **model,
                         lsr_dataset *val_set) {
    lsr_dataset train_set = {0};
    lsr_train_state *resume = NULL;
    *model = NULL;
    const int64_t limit = j->s.train_limit, n = limit > 0 && limit < all->n ? limit : all->n;
    if (j->s.val_samples >= n)
        return lsr__fail(LSR_ERROR_OPTION, "--val %lld: leaves no training examples of %lld",
                         (long long)j->s.val_samples, (long long)n);
    LSR_TRY(lsr_train_split(&train_set, val_set, all, &j->s));
    lsr_status st;
    if (j->s.prior_source == LSR_PRIOR_FILE) { /* read now, to name the flag */
        float *prior = malloc((size_t)classes * sizeof *prior);
        st = prior ? lsr_prior_read(prior, j->s.prior_file, classes)
                   : lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        free(prior);
        if (st != LSR_OK) {
            lsr__fail(st, "--smoothing-prior %s", lsr_last_error());
            goto out;
        }
    }
    if (j->s.teacher[0]) { /* read now, to name the flag: the run loads it again */
        lsr_model *teacher = NULL;
        st = lsr_model_load(&teacher, j->s.teacher);
        if (st == LSR_OK && lsr_model_classes(teacher) != classes)
            st = lsr__fail(LSR_ERROR_MISMATCH, "the teacher has %d classes, the data %d",
                           lsr_model_classes(teacher), classes);
        else if (st == LSR_OK)
            st = lsr_check_model_data(teacher, &train_set, "the training data");
        lsr_model_free(teacher);
        if (st != LSR_OK) {
            lsr__fail(st, "--teacher %s: %s", j->s.teacher, lsr_last_error());
            goto out;
        }
    }
    if (j->resume_path)
        st = lsr_checkpoint_load(model, &resume, NULL, NULL, j->resume_path);
    else
        st = lsr_model_create(model, j->model_name, all->h, all->w, all->c, classes);
    if (st != LSR_OK) goto out;
    /* the names: --class-names, else a checkpoint's own, else the data's */
    const char *const *data_names = cli_data_class_names(j->s.data, classes);
    if (j->class_names_path)
        st = cli_read_class_names(*model, j->class_names_path);
    else if (data_names && !lsr_model_class_name(*model, 0))
        st = lsr_model_set_class_names(*model, data_names);
    if (st != LSR_OK) goto out;
    if (cli_rank() != 0 && !j->single_process) j->quiet = 1; /* under mpirun, rank 0 reports */
    if (!j->quiet) print_header(j, &train_set, val_set, classes, *model);
    if (!j->quiet && !j->single_process && cli_train_parallel(1, 0) && cli_threads() > cli_cores())
        fprintf(stderr,
                "%swarning: %d threads a process, but this process may run on %d core%s only "
                "(mpirun binds each rank to a core by default: --bind-to none, or "
                "--map-by slot:PE=%d)\n",
                j->prefix, cli_threads(), cli_cores(), cli_cores() > 1 ? "s" : "", cli_threads());
    if (resume && !j->quiet)
        fprintf(stderr, "%sresuming at epoch %d, step %lld\n", j->prefix,
                lsr_train_state_epoch(resume), (long long)lsr_train_state_step(resume));
    j->model = *model;
    j->val_set = val_set;
    lsr_train_callbacks cb = {
        j,
        draw_progress,
        epoch_done,
        save_checkpoint,
        j->stop,
        j->checkpoint_path ? j->checkpoint_every : 0,
        j->single_process ? NULL : cli_train_parallel((int)j->micro_batches, j->allreduce)};
    if (!j->single_process && (st = cli_mpi_begin_collective()) != LSR_OK) goto out;
    const double t0 = lsr_now();
    st = lsr_train(*model, &train_set, &j->s, &cb, resume);
    resume = NULL; /* taken over */
    j->train_seconds = lsr_now() - t0;
    if (st == LSR_ERROR_NONFINITE)
        lsr__fail(st, "%s (the run diverged; try a lower --lr, or --on-nonfinite skip)",
                  lsr_last_error());
out:
    lsr_train_state_free(resume);
    lsr_dataset_free(&train_set);
    if (st != LSR_OK && st != LSR_STOPPED) {
        lsr_model_free(*model);
        *model = NULL;
        lsr_dataset_free(val_set);
    }
    return st;
}
