/* lsr train: flags (train_flags.c), a resume's stored settings
 * (train_resume.c), data, the run (train_job.c), the model file, and the
 * test evaluation at the end; SIGINT and SIGTERM stop the run after a
 * checkpoint. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "cli.h"
#include "cmd.h"
#include "progress.h"
#include "train_flags.h"
#include "train_job.h"
#include "train_resume.h"

static volatile int stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

/* The message of a run stopped by a signal (not an error: the run is safe). */
static void report_stop(const train_job *j) {
    if (cli_rank() != 0) return; /* under mpirun, rank 0 says it */
    /* under mpirun the signal may have reached another process only */
    const char *why = stop_signal ? strsignal(stop_signal) : "a signal to another process";
    if (j->checkpoint_path)
        fprintf(stderr,
                "lsr train: %s: stopped at epoch %d, step %lld; the checkpoint %s holds "
                "the run: resume with 'lsr train --resume %s'\n",
                why, j->stopped_epoch, j->stopped_step, j->checkpoint_path, j->checkpoint_path);
    else
        fprintf(stderr,
                "lsr train: %s: stopped at epoch %d, step %lld; no --checkpoint was "
                "given, so the run cannot be resumed\n",
                why, j->stopped_epoch, j->stopped_step);
}

int lsr_cmd_train(int argc, char **argv) {
    train_job j;
    train_job_defaults(&j);
    lsr_dataset all = {0}, test = {0}, val_set = {0};
    lsr_model *model = NULL;
    int status = 1;
    int parsed = train_job_parse(&j, argc, argv);
    if (!parsed && j.resume_path)
        parsed = train_job_resume_flags(&j, argc, argv);
    else if (!parsed)
        parsed = train_job_make_note(&j, NULL) ? -1 : 0;
    if (parsed) {
        if (parsed == TRAIN_JOB_HELP) status = 0; /* --help: the usage is printed */
        goto out;
    }
    if (j.resume_path) /* the metrics file keeps the lines of the epochs before the
                          checkpoint's */
        progress_metrics_reload(j.metrics_path, j.resume_epoch, &j.metrics_text, &j.metrics_len);
    if (j.out && lsr_check_writable(j.out, "--out")) goto out;
    cli_set_threads((int)j.threads);
    stop_signal = 0;
    j.stop = &stop_signal;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (cli_load_data(&all, &test, j.s.data)) goto out;
    const int classes = all.classes > test.classes ? all.classes : test.classes;
    const lsr_status trained = train_job_run(&j, &all, classes, &model, &val_set);
    /* ended alike on every rank under mpirun: no rank waits for another now */
    if (trained == LSR_OK || trained == LSR_STOPPED) cli_mpi_collective_ended();
    if (trained == LSR_STOPPED) { /* by a signal, after a checkpoint */
        report_stop(&j);
        status = 128 + (stop_signal ? stop_signal : SIGTERM);
        goto out;
    }
    if (trained != LSR_OK) goto out;
    if (cli_rank() != 0) { /* under mpirun, rank 0 writes and reports */
        status = 0;
        goto out;
    }
    if (j.out) {
        if (lsr_model_save(model, j.out)) goto out;
        if (!j.quiet) fprintf(stderr, "model written to %s\n", j.out);
    }
    if (test.n > 0) {
        lsr_metrics mt;
        if (lsr_model_evaluate(&mt, model, &test, 1.0)) goto out;
        cli_print_metrics(&mt, 0, "test evaluation");
    }
    status = 0;
out:
    if (status == 1) cli_error("train", lsr_last_error());
    free(j.metrics_text);
    free(j.note);
    cJSON_Delete(j.resume_note);
    lsr_model_free(model);
    lsr_dataset_free(&all);
    lsr_dataset_free(&test);
    lsr_dataset_free(&val_set);
    return status;
}
