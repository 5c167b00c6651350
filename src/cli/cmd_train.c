/* lsr train: flags (train_flags.c), a resume's stored flags (train_resume.c),
 * data, the run (train_job.c), the model file, and the test evaluation at the
 * end; SIGINT and SIGTERM stop the run after a checkpoint. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../data/dataset.h"
#include "../modelfile/modelfile.h"
#include "../train/train.h"
#include "cli.h"
#include "cmd.h"
#include "progress.h"
#include "train_flags.h"
#include "train_job.h"
#include "train_resume.h"

static volatile int stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

int lsr_cmd_train(int argc, char **argv) {
    train_job j;
    train_job_defaults(&j);
    lsr_dataset all = {0}, test = {0}, val_set = {0};
    lsr_model model = {0};
    float *logits = NULL;
    int status = 1;
    int parsed = train_job_parse(&j, argc, argv);
    if (!parsed && j.resume_path) parsed = train_job_resume_flags(&j, argc, argv);
    if (parsed) {
        if (parsed == TRAIN_JOB_HELP) status = 0; /* --help: the usage is printed */
        goto out;
    }
    if (j.resume_path) {
        /* the checkpoint's epoch, for the metrics file (the state is read later) */
        lsr_safetensors f;
        if (lsr_safetensors_open(&f, j.resume_path, "lsr-checkpoint-1", j.err) == 0) {
            const char *e = lsr_metadata_get(&f.md, "epoch");
            progress_metrics_reload(j.metrics_path, e ? atoi(e) : 1, &j.metrics_text,
                                    &j.metrics_len);
            lsr_safetensors_close(&f);
        }
    } else if (!(j.command_json = train_job_command(argc, argv, NULL))) {
        snprintf(j.err, sizeof j.err, "out of memory");
        goto out;
    }
    if (j.out && lsr_check_writable(j.out, "--out", j.err)) goto out;
    cli_set_threads((int)j.threads);
    stop_signal = 0;
    j.stop = &stop_signal;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (lsr_data_load_dir(&all, &test, j.data_dir, j.err)) goto out;
    const int classes = all.classes > test.classes ? all.classes : test.classes;
    const int trained = train_job_run(&j, &all, classes, &model, &val_set);
    if (trained < 0) goto out;
    if (trained == 1) { /* stopped by a signal after a checkpoint */
        if (j.checkpoint_path)
            fprintf(stderr,
                    "lsr train: %s: stopped at epoch %d, step %lld; the checkpoint %s holds "
                    "the run: resume with 'lsr train --resume %s'\n",
                    strsignal(stop_signal), j.stopped_epoch, j.stopped_step, j.checkpoint_path,
                    j.checkpoint_path);
        else
            fprintf(stderr,
                    "lsr train: %s: stopped at epoch %d, step %lld; no --checkpoint was "
                    "given, so the run cannot be resumed\n",
                    strsignal(stop_signal), j.stopped_epoch, j.stopped_step);
        status = 128 + stop_signal; /* not an error message: the run is safe */
        goto out;
    }
    if (j.out) {
        if (train_job_save(&j, &model, j.out, 0.0, j.err)) goto out;
        if (!j.quiet) fprintf(stderr, "model written to %s\n", j.out);
    }
    if (test.n > 0) {
        logits = malloc((size_t)test.n * classes * sizeof(float));
        if (!logits) {
            snprintf(j.err, sizeof j.err, "out of memory");
            goto out;
        }
        if (lsr_predict(&model, &test, logits, CLI_PREDICT_BATCH, j.err)) goto out;
        lsr_metrics mt;
        lsr_metrics_compute(&mt, logits, test.y, test.n, classes, 1.0);
        cli_print_metrics(&mt, 0, "test evaluation");
    }
    status = 0;
out:
    if (status == 1) cli_error("train", j.err);
    free(logits);
    free(j.metrics_text);
    free(j.command_json);
    cJSON_Delete(j.resume_command);
    lsr_model_free(&model);
    lsr_dataset_free(&all);
    lsr_dataset_free(&test);
    lsr_dataset_free(&val_set);
    return status;
}
