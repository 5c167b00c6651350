/* lsr sweep: train every (eps, seed), evaluate each (accuracy, top-5, NLL,
 * ECE, MCE, Brier, FGSM, transfer FGSM from the eps = 0 model, and all of it
 * after temperature scaling), and write results.csv and a self-contained
 * report.html with inline SVG plots.  Finished runs are kept in
 * OUT/runs/NAME.json, so an interrupted sweep resumes where it stopped.
 * The runs' files: sweep_results.c; the report: sweep_report.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/common.h"
#include "../metrics/metrics.h"
#include "cli.h"
#include "cmd.h"
#include "sweep.h"
#include "sweep_report.h"
#include "sweep_results.h"
#include "train_flags.h"
#include "train_job.h"

#define SWEEP_MAX_SEEDS 64 /* the most --seeds takes */
/* lsr sweep's defaults (also in its usage text) */
#define SWEEP_DEFAULT_EPS "0,0.05,0.1,0.2"
#define SWEEP_DEFAULT_SEEDS 3
#define SWEEP_DEFAULT_ATTACK_EPS 0.3
#define SWEEP_DEFAULT_ATTACK_LIMIT 2000
/* without --val: this percentage of the training examples, at most SWEEP_VAL_MAX */
#define SWEEP_VAL_PERCENT 10
#define SWEEP_VAL_MAX 5000
/* the report's penultimate layer: on Fashion-MNIST, Mueller et al.'s choice of
 * two similar classes and a different one; else the first three */
#define SWEEP_DEFAULT_PROJECT_FASHION "Shirt,T-shirt/top,Sneaker"
#define SWEEP_DEFAULT_PROJECT "0,1,2"
#define SWEEP_PROJECT_PER_CLASS 300

static void run_name(char *buf, size_t size, double eps, int seed) {
    snprintf(buf, size, "eps%g-seed%d", eps, seed);
}

/* FGSM accuracy of model on the first n test samples, crafted on crafter;
 * NAN when it failed. */
static double fgsm_accuracy(lsr_model *model, lsr_model *crafter, const lsr_dataset *test,
                            int64_t n, float eps, float *adv, float *logits) {
    if (lsr_fgsm_generate(adv, crafter, test->x, NULL, n, eps) ||
        lsr_model_predict(logits, model, adv, n))
        return NAN;
    return (double)lsr_top1(logits, test->y, n, lsr_model_classes(model), NULL) / (double)n;
}

static void sweep_projection_free(sweep_projection *p) {
    projection_points_free(&p->points);
    for (int k = 0; k < SWEEP_MAX_PANELS; k++) {
        free(p->panels[k].xy);
        p->panels[k].xy = NULL;
    }
}

/* The report's penultimate-layer section (p): every run's tightness in the
 * plane of the classes of arg (names: the runs' own, else data_names, which
 * may be NULL), and the panels of the first seed's runs.  1:
 * measured; 0: left out (a run's model has no templates, or the default
 * classes do not fit the data; said on stderr); -1: failed (arg was given:
 * lsr_last_error() says why). */
static int sweep_project(sweep_projection *p, run_result *r, int nr, const double *eps, int ne,
                         int base_seed, const char *runs, const lsr_dataset *test,
                         const char *const *data_names, const char *arg, int asked) {
    char path[4300], name[64];
    int shown[SWEEP_MAX_PANELS], cls[3];
    p->np = ne < SWEEP_MAX_PANELS ? ne : SWEEP_MAX_PANELS;
    for (int k = 0; k < p->np; k++) /* eps[0], the last, and evenly between */
        shown[k] = p->np == 1 ? 0 : (int)lround((double)k * (ne - 1) / (p->np - 1));
    lsr_model *m = NULL;
    for (int i = 0; i < nr; i++) {
        run_name(name, sizeof name, r[i].eps, r[i].seed);
        snprintf(path, sizeof path, "%s/%s.safetensors", runs, name);
        if (lsr_model_load(&m, path)) goto fail;
        if (i == 0) { /* the classes by the first run's names */
            if (projection_parse_model_classes(cls, arg, m, data_names, test->classes) ||
                projection_pick(&p->points, test, cls, SWEEP_PROJECT_PER_CLASS))
                goto fail;
            for (int g = 0; g < 3; g++)
                cli_class_label(p->labels[g], sizeof p->labels[g], m, data_names, cls[g]);
        }
        projection_panel panel;
        memset(&panel, 0, sizeof panel);
        if (projection_compute(&panel, m, &p->points)) {
            lsr__fail(lsr__failed(), "%s: %s", path, lsr_last_error());
            goto fail;
        }
        r[i].tightness = panel.tightness;
        int k = 0;
        while (k < p->np && !(r[i].seed == base_seed && r[i].eps == eps[shown[k]]))
            k++;
        if (k < p->np) {
            snprintf(panel.title, sizeof panel.title, "eps %g (seed %d)", r[i].eps, r[i].seed);
            p->panels[k] = panel;
        } else {
            free(panel.xy);
        }
        lsr_model_free(m);
        m = NULL;
    }
    return 1;
fail:
    lsr_model_free(m);
    sweep_projection_free(p);
    for (int i = 0; i < nr; i++)
        r[i].tightness = NAN;
    if (asked) {
        lsr__fail(lsr__failed(), "--project-classes %s: %s", arg, lsr_last_error());
        return -1;
    }
    fprintf(stderr, "lsr sweep: the report has no penultimate-layer section: %s\n",
            lsr_last_error());
    return 0;
}

/* the defaults: the constants above */
// clang-format off
static void sweep_usage(void) {
    printf("usage: lsr sweep --out DIR [--smoothing LIST] [--seeds N] [--attack-eps E]\n"
           "       [--attack-limit N] [any lsr train flag]\n"
           "  trains every (eps, seed) (default eps " SWEEP_DEFAULT_EPS
           " and " CLI_STR(SWEEP_DEFAULT_SEEDS) " seeds), evaluates each\n"
           "  on the test split (accuracy, top-5, NLL, ECE, MCE, Brier, FGSM and transfer FGSM\n"
           "  from the eps = 0 model, before and after temperature scaling on --val N held-out\n"
           "  examples, default " CLI_STR(SWEEP_VAL_PERCENT) " %% of the training set,"
           " at most " CLI_STR(SWEEP_VAL_MAX) "), and writes\n"
           "  DIR/results.csv and DIR/report.html.\n"
           "  --seed S: the runs take seeds S, S+1, ..., S+N-1 (default 0).\n"
           "  Finished runs are kept in DIR/runs: run the same command again to resume.\n"
           "  --checkpoint F: each run keeps its own checkpoint, F with -eps<E>-seed<S> before\n"
           "  the extension, and the same command run again goes on from it (--resume is not\n"
           "  taken).\n"
           "  --project-classes A,B,C: the report's picture of the penultimate layer, three\n"
           "  classes by index or name (default on Fashion-MNIST "
           SWEEP_DEFAULT_PROJECT_FASHION ",\n  else " SWEEP_DEFAULT_PROJECT ").\n");
}
// clang-format on

int lsr_cmd_sweep(int argc, char **argv) {
    const char *out_dir = NULL, *eps_arg = SWEEP_DEFAULT_EPS, *project_arg = NULL;
    long long seeds = SWEEP_DEFAULT_SEEDS, attack_limit = SWEEP_DEFAULT_ATTACK_LIMIT;
    double attack_eps = SWEEP_DEFAULT_ATTACK_EPS;
    /* lsr sweep's own flags; everything else goes to lsr train's parser */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    if (!rest) return cli_error("sweep", "out of memory");
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--help")) {
            sweep_usage();
            free(rest);
            return 0;
        }
        /* the sweep's own flags, as "--flag VALUE" or "--flag=VALUE" */
        static const char *const own[] = {"--out",        "--smoothing",    "--seeds",
                                          "--attack-eps", "--attack-limit", "--project-classes"};
        int which = -1;
        const char *value = NULL;
        for (int f = 0; f < (int)(sizeof own / sizeof own[0]) && which < 0; f++) {
            const size_t len = strlen(own[f]);
            if (!strcmp(a, own[f]))
                which = f, value = has_value ? argv[++i] : NULL;
            else if (!strncmp(a, own[f], len) && a[len] == '=')
                which = f, value = a + len + 1;
        }
        if (which >= 0 && !value) {
            lsr__fail(LSR_ERROR_OPTION, "%s: needs a value", a);
            free(rest);
            return cli_error("sweep", lsr_last_error());
        }
        int bad = 0;
        switch (which) {
        case 0:
            out_dir = value;
            break;
        case 1:
            eps_arg = value;
            break;
        case 2:
            bad = cli_int("--seeds", value, 1, SWEEP_MAX_SEEDS, &seeds);
            break;
        case 3:
            bad = cli_float("--attack-eps", value, 0, 1, &attack_eps);
            break;
        case 4:
            bad = cli_int("--attack-limit", value, 1, INT64_MAX, &attack_limit);
            break;
        case 5:
            project_arg = value;
            break;
        default:
            rest[nrest++] = argv[i];
        }
        if (bad) {
            free(rest);
            return cli_error("sweep", lsr_last_error());
        }
    }
    double eps[SWEEP_MAX_EPS];
    int ne;
    train_job j;
    train_job_defaults(&j);
    if (lsr_parse_number_list(eps_arg, "--smoothing", 0.0, 1.0, eps, SWEEP_MAX_EPS, &ne) ||
        (!out_dir && lsr__fail(LSR_ERROR_OPTION, "--out DIR is required"))) {
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    int parsed = train_job_parse(&j, nrest, rest);
    if (parsed == TRAIN_JOB_HELP) { /* --help in a spelling getopt takes, e.g. --hel */
        free(rest);
        return 0;
    }
    if (!parsed && j.resume_path)
        parsed = lsr__fail(LSR_ERROR_OPTION,
                           "--resume is not taken: run the same lsr sweep command again (with "
                           "--checkpoint F, each unfinished run goes on from its own checkpoint)");
    if (!parsed && j.s.seed > (uint64_t)(INT_MAX - SWEEP_MAX_SEEDS))
        parsed = lsr__fail(LSR_ERROR_OPTION,
                           "--seed %llu: at most %d in a sweep (its runs take seeds S to S+N-1)",
                           (unsigned long long)j.s.seed, INT_MAX - SWEEP_MAX_SEEDS);
    const int val_given = j.val_given;
    if (!parsed && val_given && j.s.val_samples <= 0)
        parsed =
            lsr__fail(LSR_ERROR_OPTION, "--val must hold out examples for temperature scaling");
    if (!parsed && (j.out || j.metrics_path))
        parsed =
            lsr__fail(LSR_ERROR_OPTION, "--out is the sweep's directory; --metrics is not taken");
    if (parsed) {
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    const int base_seed = (int)j.s.seed;
    const char *checkpoint_base = j.checkpoint_path;
    char runs[4200], path[4300], name[64];
    snprintf(runs, sizeof runs, "%s/runs", out_dir);
    if ((mkdir(out_dir, 0777) != 0 && errno != EEXIST) ||
        (mkdir(runs, 0777) != 0 && errno != EEXIST)) {
        lsr__fail(LSR_ERROR_IO, "--out %s: cannot create the directory: %s", out_dir,
                  strerror(errno));
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    snprintf(path, sizeof path, "%s/probe", runs);
    if (lsr_check_writable(path, "--out")) {
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    cli_set_threads((int)j.threads);

    lsr_dataset all, test;
    if (cli_load_data(&all, &test, j.s.data)) {
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    const int classes = all.classes > test.classes ? all.classes : test.classes; /* the runs' */
    int cls[3];
    /* --class-names and --project-classes are checked now, not at the first
     * run or after the runs, the latter by the runs' names: --class-names,
     * else the data's */
    const char **named = NULL;
    lsr_status named_st = LSR_OK;
    if (j.class_names_path) named_st = cli_load_class_names(&named, j.class_names_path, classes);
    if (named_st ||
        (project_arg &&
         projection_parse_classes(cls, project_arg,
                                  named ? named : cli_data_class_names(j.s.data, test.classes),
                                  test.classes))) {
        if (!named_st)
            lsr__fail(lsr__failed(), "--project-classes %s: %s", project_arg, lsr_last_error());
        free(named);
        lsr_dataset_free(&all);
        lsr_dataset_free(&test);
        free(rest);
        return cli_error("sweep", lsr_last_error());
    }
    free(named);
    if (!val_given) { /* fits any training set */
        const int64_t limit = j.s.train_limit;
        const int64_t n = limit > 0 && limit < all.n ? limit : all.n;
        const int64_t part = n * SWEEP_VAL_PERCENT / 100;
        j.s.val_samples = part < SWEEP_VAL_MAX ? (part > 0 ? part : 1) : SWEEP_VAL_MAX;
        fprintf(stderr,
                "lsr sweep: holding out %lld of the %lld training examples for temperature "
                "scaling (--val N; by default %d %%, at most %d)\n",
                (long long)j.s.val_samples, (long long)n, SWEEP_VAL_PERCENT, SWEEP_VAL_MAX);
    }
    const int64_t n_attack = attack_limit < test.n ? attack_limit : test.n;
    const int total = ne * (int)seeds;
    run_result *results = calloc((size_t)total, sizeof *results);
    const int64_t n_val = j.s.val_samples;
    float *logits = malloc((size_t)(test.n > n_val ? test.n : n_val) * classes * sizeof(float));
    float *adv = malloc((size_t)n_attack * (size_t)all.h * all.w * all.c * sizeof(float));
    char checkpoint[4300];
    int status = 1, done = 0, trained = 0;
    double trained_seconds = 0.0; /* for the sweep's ETA */
    if (!results || !logits || !adv) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    /* Under mpirun -np P the runs are shared out, each a one-process run as
     * without mpirun: first every seed's eps = 0 run (the other runs' transfer
     * attacks read its model), then the rest, the k-th run of each phase on
     * rank k % P; rank 0 gathers the results from the runs' files. */
    const int rank = cli_rank(), ranks = cli_ranks();
    const int phases = ranks > 1 && eps[0] == 0.0 && ne > 1 ? 2 : 1;
    if (ranks > 1 && cli_mpi_begin_collective()) goto out;
    j.single_process = 1;
    for (int phase = 0; phase < phases; phase++) {
        int k = 0;
        for (int seed = base_seed; seed < base_seed + seeds; seed++)
            for (int e = 0; e < ne; e++) {
                if (phases == 2 && (e == 0) != (phase == 0)) continue;
                if (ranks > 1 && k++ % ranks != rank) continue;
                run_result *r = &results[(seed - base_seed) * ne + e];
                run_name(name, sizeof name, eps[e], seed);
                snprintf(path, sizeof path, "%s/%s.json", runs, name);
                if (sweep_result_load(path, r) && r->eps == eps[e] && r->seed == seed) {
                    done++;
                    fprintf(stderr, "[%d/%d] %s: done before, kept\n", done, total, name);
                    continue;
                }
                char prefix[128], eta[48] = "";
                if (trained) {
                    const double left = trained_seconds / trained * (total - done);
                    snprintf(eta, sizeof eta,
                             left < 90 ? ", sweep ETA %.0f s" : ", sweep ETA %.0f min",
                             left < 90 ? left : left / 60.0);
                }
                snprintf(prefix, sizeof prefix, "[%d/%d %s%s] ", done + 1, total, name, eta);
                const double run_start = lsr_now();
                j.prefix = prefix;
                j.s.loss.smoothing = (float)eps[e];
                j.s.seed = (uint64_t)seed;
                j.resume_path = NULL;
                j.checkpoint_path = NULL;
                if (checkpoint_base) {
                    sweep_run_checkpoint(checkpoint, sizeof checkpoint, checkpoint_base, name);
                    j.checkpoint_path = checkpoint;
                }
                if (train_job_make_note(&j, name)) goto out;
                if (checkpoint_base) {
                    const int found = sweep_checkpoint_matches(checkpoint, &j.s, j.note);
                    if (found < 0) goto out;
                    if (found) j.resume_path = checkpoint;
                }
                lsr_model *model = NULL;
                lsr_dataset val_set = {0};
                if (train_job_run(&j, &all, classes, &model, &val_set)) {
                    lsr__fail(lsr__failed(), "%s: %.400s", name, lsr_last_error());
                    goto out;
                }
                r->eps = eps[e];
                r->seed = seed;
                r->seconds = j.train_seconds;
                int failed =
                    lsr_model_predict(logits, model, val_set.x, val_set.n) ||
                    lsr_temperature_fit(&r->temperature, logits, val_set.y, val_set.n, classes);
                lsr_dataset_free(&val_set);
                failed = failed || lsr_model_predict(logits, model, test.x, test.n) ||
                         lsr_metrics_compute(&r->plain, logits, test.y, test.n, classes, 1.0) ||
                         lsr_metrics_compute(&r->scaled, logits, test.y, test.n, classes,
                                             r->temperature);
                if (!failed) {
                    r->fgsm = fgsm_accuracy(model, model, &test, n_attack, (float)attack_eps, adv,
                                            logits);
                    failed = isnan(r->fgsm);
                }
                r->transfer = NAN;
                r->tightness = NAN;
                if (!failed && eps[0] == 0.0) { /* crafted on this seed's eps = 0 model */
                    lsr_model *source = NULL;
                    char source_path[4300];
                    run_name(name, sizeof name, 0.0, seed);
                    snprintf(source_path, sizeof source_path, "%s/%s.safetensors", runs, name);
                    if (lsr_model_load(&source, source_path) == LSR_OK) {
                        r->transfer = fgsm_accuracy(model, source, &test, n_attack,
                                                    (float)attack_eps, adv, logits);
                        failed = isnan(r->transfer);
                        lsr_model_free(source);
                    } else if (eps[e] != 0.0) {
                        failed = 1;
                    }
                }
                run_name(name, sizeof name, eps[e], seed);
                snprintf(path, sizeof path, "%s/%s.safetensors", runs, name);
                failed = failed || lsr_model_set_temperature(model, r->temperature) ||
                         lsr_model_save(model, path);
                snprintf(path, sizeof path, "%s/%s.json", runs, name);
                failed = failed || sweep_result_save(path, r);
                lsr_model_free(model);
                if (failed) goto out;
                done++;
                trained++;
                trained_seconds += lsr_now() - run_start;
                fprintf(stderr,
                        "%saccuracy %.4f  ECE %.4f -> %.4f (T %.3f)  FGSM %.4f  transfer %.4f\n",
                        prefix, r->plain.accuracy, r->plain.ece, r->scaled.ece, r->temperature,
                        r->fgsm, r->transfer);
            }
        if (ranks > 1 && cli_mpi_barrier()) goto out;
    }
    if (rank != 0) { /* rank 0 writes the sweep's files */
        status = 0;
        goto out;
    }
    for (int i = 0; ranks > 1 && i < total; i++) { /* the other ranks' runs, from their files */
        const double e = eps[i % ne];
        const int seed = base_seed + i / ne;
        run_name(name, sizeof name, e, seed);
        snprintf(path, sizeof path, "%s/%s.json", runs, name);
        if (!sweep_result_load(path, &results[i]) || results[i].eps != e ||
            results[i].seed != seed) {
            lsr__fail(LSR_ERROR_IO, "%s: the result of run %s is missing", path, name);
            goto out;
        }
    }
    if (sweep_results_csv(out_dir, results, total)) goto out; /* kept whatever follows */
    sweep_projection proj;
    memset(&proj, 0, sizeof proj);
    const char *const *data_names = cli_data_class_names(j.s.data, test.classes);
    const int projected =
        sweep_project(&proj, results, total, eps, ne, base_seed, runs, &test, data_names,
                      project_arg  ? project_arg
                      : data_names ? SWEEP_DEFAULT_PROJECT_FASHION
                                   : SWEEP_DEFAULT_PROJECT,
                      project_arg != NULL);
    if (projected < 0) goto out;
    char title[512];
    snprintf(title, sizeof title,
             "%.200s on %.200s, %d epochs, batch %d, %lld seeds, FGSM eps %g on %lld test samples",
             j.model_name, j.s.data, j.s.epochs, j.s.batch, seeds, attack_eps, (long long)n_attack);
    if (sweep_results_csv(out_dir, results, total) ||
        sweep_report(out_dir, results, total, eps, ne, title, projected ? &proj : NULL)) {
        sweep_projection_free(&proj);
        goto out;
    }
    sweep_projection_free(&proj);
    printf("%d runs; %s/results.csv and %s/report.html written\n", total, out_dir, out_dir);
    status = 0;
out:
    if (status) cli_error("sweep", lsr_last_error());
    free(results);
    free(logits);
    free(adv);
    free(rest);
    free(j.note);
    free(j.metrics_text);
    lsr_dataset_free(&all);
    lsr_dataset_free(&test);
    return status;
}
