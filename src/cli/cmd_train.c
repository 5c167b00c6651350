/* lsr train: flags, data, the training loop with a progress display, the
 * model file, and the test evaluation at the end. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/dataset.h"
#include "../modelfile/modelfile.h"
#include <cjson/cJSON.h>
#include <signal.h>
#include "../train/train.h"
#include "cli.h"
#include "train_job.h"

static void train_usage(FILE *f) {
    fprintf(f,
        "usage: lsr train [flags]\n"
        "  --data DIR              MNIST-layout IDX files (.gz or not) or train.csv/test.csv\n"
        "                          (default: Debian's Fashion-MNIST, " LSR_FASHION_MNIST_DIR ")\n"
        "  --model NAME|SPEC       cleverhans-cnn (default), mlp, lenet5, or a spec such as\n"
        "                          'flatten,dense:256,relu,dense:10'\n"
        "  --epochs E (6)  --batch B (128)  --seed S (0)  --threads T (0: all cores)\n"
        "  --optimizer adam|adamw|sgd (adam)  --lr LR (1e-3)  --momentum M (0.9, sgd)\n"
        "  --nesterov  --weight-decay WD (0)  --init cleverhans|he|glorot\n"
        "  --schedule constant|step|cosine  --step-size STEPS  --gamma G (0.1)  --warmup STEPS\n"
        "  --smoothing EPS (0)  --smoothing-convention all|others (all)\n"
        "  --smoothing-prior uniform|data|FILE   data: the training class frequencies;\n"
        "                          FILE: K numbers (one distribution)\n"
        "  --z-loss LAMBDA (0)\n"
        "  --precision fp32|bf16   the convolutions' arithmetic (fp32): bf16 multiplies\n"
        "                          bf16-rounded inputs, weights and gradients with fp32\n"
        "                          sums (oneDNN; needs AVX512_BF16), about twice as fast;\n"
        "                          parameters, the loss and evaluation stay fp32\n"
        "  --train-limit N         use the first N training examples\n"
        "  --val N                 hold out N training examples (seeded) for validation\n"
        "                          (lsr calibrate fits its temperature on them)\n"
        "  --imbalance RATIO       keep ratio^(-c/(K-1)) of class c's training examples\n"
        "  --adv fgsm --adv-eps E (0.3) --adv-weight W (0.5)\n"
        "                          adversarial training: (1-W) CE(x) + W CE(FGSM(x)), the\n"
        "                          examples made against the current model at every step\n"
        "  --out FILE              the model file (safetensors), written atomically\n"
        "  --metrics FILE          one JSON line per epoch\n"
        "  --quiet                 no progress display\n"
        "  --checkpoint FILE       keep the whole training state in FILE (atomically), every\n"
        "  --checkpoint-every N    N steps (default 200) and when interrupted (SIGINT, SIGTERM)\n"
        "  --resume FILE           go on from a checkpoint with the run's own settings: alone,\n"
        "                          or added to the run's command (every flag given must have\n"
        "                          the run's value; --threads and --quiet may differ)\n"
        "  --on-nonfinite stop|skip  a NaN or infinite loss or gradient stops the run (default)\n"
        "                          or skips the batch\n");
}

enum {
    OPT_DATA = 256, OPT_MODEL, OPT_EPOCHS, OPT_BATCH, OPT_SEED, OPT_THREADS, OPT_OPTIMIZER, OPT_LR,
    OPT_MOMENTUM, OPT_NESTEROV, OPT_WD, OPT_INIT, OPT_SCHEDULE, OPT_STEP_SIZE, OPT_GAMMA,
    OPT_WARMUP, OPT_SMOOTHING, OPT_CONVENTION, OPT_PRIOR, OPT_ZLOSS, OPT_LIMIT, OPT_VAL, OPT_OUT,
    OPT_METRICS, OPT_QUIET, OPT_IMBALANCE, OPT_ADV, OPT_ADV_EPS, OPT_ADV_WEIGHT, OPT_CHECKPOINT,
    OPT_CHECKPOINT_EVERY, OPT_RESUME, OPT_NONFINITE, OPT_PRECISION, OPT_HELP
};


static void draw_progress(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (j->quiet || !j->tty) return;
    const double now = lsr_now();
    if (p->step != p->steps_per_epoch && now - j->last_draw < 0.1) return;
    j->last_draw = now;
    const double rate = p->samples / (p->seconds > 0 ? p->seconds : 1e-9);
    const double eta = (double)(p->steps_per_epoch - p->step) * p->seconds / (double)p->step;
    const int width = 24, filled = (int)(width * p->step / p->steps_per_epoch);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r%sepoch %d/%d [%s] %lld/%lld loss %.4f H(q,p) %.4f H(u,p) %.4f %.0f samples/s ETA %.0fs ",
            j->prefix, p->epoch, j->s.epochs, bar, (long long)p->step, (long long)p->steps_per_epoch, p->loss,
            p->label_ce, p->prior_ce, rate, eta);
    fflush(stderr);
}

static int epoch_done(void *ctx, const lsr_train_progress *p) {
    train_job *j = ctx;
    if (j->tty && !j->quiet) fputc('\n', stderr);
    double val_acc = NAN;
    /* a failure here stops the run with j->err set: an error, not a stop on
     * request (lsr_train returns 1 for both) */
    if (j->val_set && j->val_set->n > 0) {
        float *logits = malloc((size_t)j->val_set->n * j->model->classes * sizeof(float));
        if (!logits) return lsr_fail(j->err, "out of memory for the validation logits");
        lsr_metrics mt;
        const int failed = lsr_predict(j->model, j->val_set, logits, 256, j->err);
        if (!failed) {
            lsr_metrics_compute(&mt, logits, j->val_set->y, j->val_set->n, j->model->classes, 1.0);
            val_acc = mt.accuracy;
        }
        free(logits);
        if (failed) return -1;
    }
    if (!j->quiet)
    {
        char val[96] = "";
        if (!isnan(val_acc)) snprintf(val, sizeof val, "  val acc %.4f", val_acc);
        if (p->skipped)
            snprintf(val + strlen(val), sizeof val - strlen(val), "  %lld batches skipped (non-finite)",
                     (long long)p->skipped);
        fprintf(stderr, "%sepoch %d/%d: loss %.4f  H(q,p) %.4f  H(u,p) %.4f  train acc %.4f%s  %.1fs  %.0f samples/s\n",
                j->prefix, p->epoch, j->s.epochs, p->loss, p->label_ce, p->prior_ce, p->accuracy, val,
                p->seconds, p->samples / p->seconds);
    }
    if (j->metrics_path) {
        char line[512], val[32] = "null";
        if (!isnan(val_acc)) snprintf(val, sizeof val, "%.6f", val_acc);
        const int len = snprintf(line, sizeof line,
                                 "{\"epoch\": %d, \"steps\": %lld, \"loss\": %.6f, \"label_ce\": %.6f, "
                                 "\"prior_ce\": %.6f, \"train_accuracy\": %.6f, \"val_accuracy\": %s, "
                                 "\"seconds\": %.3f, \"samples_per_second\": %.1f}\n",
                                 p->epoch, (long long)p->step, p->loss, p->label_ce, p->prior_ce,
                                 p->accuracy, val, p->seconds, p->samples / p->seconds);
        char *grown = realloc(j->metrics_text, j->metrics_len + (size_t)len + 1);
        if (!grown) return lsr_fail(j->err, "--metrics %s: out of memory", j->metrics_path);
        j->metrics_text = grown;
        memcpy(j->metrics_text + j->metrics_len, line, (size_t)len + 1);
        j->metrics_len += (size_t)len;
        lsr_atomic_file af;
        if (lsr_atomic_open(&af, j->metrics_path, j->err)) return 1;
        fputs(j->metrics_text, af.f);
        if (lsr_atomic_commit(&af, j->err)) return 1;
    }
    return 0;
}

static int save_checkpoint(void *ctx, const lsr_model *m, const lsr_train_state *st) {
    train_job *j = ctx;
    j->stopped_epoch = st->epoch;
    j->stopped_step = st->step;
    if (!j->checkpoint_path) return 0;
    return lsr_checkpoint_save(j->checkpoint_path, m, st, j->command_json, j->err);
}


static const struct option opts[] = {
    {"data", required_argument, 0, OPT_DATA}, {"model", required_argument, 0, OPT_MODEL},
    {"epochs", required_argument, 0, OPT_EPOCHS}, {"batch", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, OPT_SEED}, {"threads", required_argument, 0, OPT_THREADS},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER}, {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM}, {"nesterov", no_argument, 0, OPT_NESTEROV},
    {"weight-decay", required_argument, 0, OPT_WD}, {"init", required_argument, 0, OPT_INIT},
    {"schedule", required_argument, 0, OPT_SCHEDULE}, {"step-size", required_argument, 0, OPT_STEP_SIZE},
    {"gamma", required_argument, 0, OPT_GAMMA}, {"warmup", required_argument, 0, OPT_WARMUP},
    {"smoothing", required_argument, 0, OPT_SMOOTHING},
    {"smoothing-convention", required_argument, 0, OPT_CONVENTION},
    {"smoothing-prior", required_argument, 0, OPT_PRIOR}, {"z-loss", required_argument, 0, OPT_ZLOSS},
    {"train-limit", required_argument, 0, OPT_LIMIT}, {"val", required_argument, 0, OPT_VAL},
    {"out", required_argument, 0, OPT_OUT}, {"metrics", required_argument, 0, OPT_METRICS},
    {"quiet", no_argument, 0, OPT_QUIET}, {"imbalance", required_argument, 0, OPT_IMBALANCE},
    {"adv", required_argument, 0, OPT_ADV}, {"adv-eps", required_argument, 0, OPT_ADV_EPS},
    {"adv-weight", required_argument, 0, OPT_ADV_WEIGHT},
    {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
    {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
    {"resume", required_argument, 0, OPT_RESUME}, {"on-nonfinite", required_argument, 0, OPT_NONFINITE},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"help", no_argument, 0, OPT_HELP}, {0, 0, 0, 0}};

static const struct option *find_opt(int c) {
    for (const struct option *o = opts; o->name; o++)
        if (o->val == c) return o;
    return NULL;
}

/* "--name" of an option of opts, "" for others */
static const char *opt_name(int c) {
    static char name[64];
    const struct option *o = find_opt(c);
    snprintf(name, sizeof name, "%s%s", o ? "--" : "", o ? o->name : "");
    return name;
}

int train_job_parse(train_job *j, int argc, char **argv) {
    lsr_train_settings *s = &j->s;
    long long v;
    double d;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *name = opt_name(c);
        switch (c) {
        case OPT_DATA: j->data_dir = optarg; break;
        case OPT_MODEL: j->model_name = optarg; break;
        case OPT_EPOCHS: if (cli_int(name, optarg, 1, 100000, &v, j->err)) return -1; s->epochs = (int)v; break;
        case OPT_BATCH: if (cli_int(name, optarg, 1, 65536, &v, j->err)) return -1; s->batch = (int)v; break;
        case OPT_SEED: if (cli_int(name, optarg, 0, INT64_MAX, &v, j->err)) return -1; s->seed = (uint64_t)v; break;
        case OPT_THREADS: if (cli_int(name, optarg, 0, 1024, &j->threads, j->err)) return -1; break;
        case OPT_OPTIMIZER: j->optimizer_name = optarg; break;
        case OPT_LR: if (cli_float(name, optarg, 1e-12, 1e4, &d, j->err)) return -1; s->optimizer.lr = (float)d; break;
        case OPT_MOMENTUM: if (cli_float(name, optarg, 0, 0.9999, &d, j->err)) return -1; s->optimizer.momentum = (float)d; break;
        case OPT_NESTEROV: s->optimizer.nesterov = 1; break;
        case OPT_WD: if (cli_float(name, optarg, 0, 1, &d, j->err)) return -1; s->optimizer.weight_decay = (float)d; break;
        case OPT_INIT: j->init_name = optarg; break;
        case OPT_SCHEDULE: j->schedule_name = optarg; break;
        case OPT_STEP_SIZE: if (cli_int(name, optarg, 1, INT64_MAX, &v, j->err)) return -1; s->optimizer.step_size = v; break;
        case OPT_GAMMA: if (cli_float(name, optarg, 0, 1, &d, j->err)) return -1; s->optimizer.gamma = (float)d; break;
        case OPT_WARMUP: if (cli_int(name, optarg, 0, INT64_MAX, &v, j->err)) return -1; s->optimizer.warmup = v; break;
        case OPT_SMOOTHING: if (cli_float(name, optarg, 0, 1, &d, j->err)) return -1; s->loss.smoothing = (float)d; break;
        case OPT_CONVENTION: j->convention_name = optarg; break;
        case OPT_PRIOR: j->prior_arg = optarg; break;
        case OPT_ZLOSS: if (cli_float(name, optarg, 0, 1e3, &d, j->err)) return -1; s->loss.z_loss = (float)d; break;
        case OPT_LIMIT: if (cli_int(name, optarg, 1, INT64_MAX, &j->train_limit, j->err)) return -1; break;
        case OPT_VAL: if (cli_int(name, optarg, 0, INT64_MAX, &j->val, j->err)) return -1; j->val_given = 1; break;
        case OPT_OUT: j->out = optarg; break;
        case OPT_METRICS: j->metrics_path = optarg; break;
        case OPT_QUIET: j->quiet = 1; break;
        case OPT_IMBALANCE: if (cli_float(name, optarg, 1, 1e6, &j->imbalance, j->err)) return -1; break;
        case OPT_ADV:
            if (strcmp(optarg, "fgsm") != 0) return lsr_fail(j->err, "--adv: '%s' is not fgsm", optarg);
            j->adv = optarg;
            break;
        case OPT_ADV_EPS: if (cli_float(name, optarg, 0, 1, &d, j->err)) return -1; s->adv_eps = (float)d; break;
        case OPT_ADV_WEIGHT: if (cli_float(name, optarg, 0, 1, &d, j->err)) return -1; s->adv_weight = (float)d; break;
        case OPT_CHECKPOINT: j->checkpoint_path = optarg; break;
        case OPT_CHECKPOINT_EVERY: if (cli_int(name, optarg, 1, INT64_MAX, &v, j->err)) return -1; s->checkpoint_every = v; break;
        case OPT_RESUME: j->resume_path = optarg; break;
        case OPT_NONFINITE:
            if (!strcmp(optarg, "stop")) s->skip_nonfinite = 0;
            else if (!strcmp(optarg, "skip")) s->skip_nonfinite = 1;
            else return lsr_fail(j->err, "--on-nonfinite: '%s' is not stop or skip", optarg);
            break;
        case OPT_PRECISION:
            if (!strcmp(optarg, "fp32")) {
                j->precision = LSR_PRECISION_FP32;
            } else if (!strcmp(optarg, "bf16")) {
                char why[LSR_ERR_LEN];
                if (lsr_conv_fast_available(LSR_PRECISION_BF16, why))
                    return lsr_fail(j->err, "--precision bf16: %s", why);
                j->precision = LSR_PRECISION_BF16;
            } else {
                return lsr_fail(j->err, "--precision: '%s' is not fp32 or bf16", optarg);
            }
            break;
        case OPT_HELP: train_usage(stdout); exit(0);
        case ':': return lsr_fail(j->err, "%s: needs a value", argv[optind - 1]);
        default: return lsr_fail(j->err, "unknown flag '%s' (lsr train --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) return lsr_fail(j->err, "unexpected argument '%s'", argv[optind]);
    if (j->checkpoint_path) {
        if (!s->checkpoint_every) s->checkpoint_every = 200;
        if (lsr_check_writable(j->checkpoint_path, "--checkpoint", j->err)) return -1;
    } else if (s->checkpoint_every) {
        return lsr_fail(j->err, "--checkpoint-every needs --checkpoint FILE");
    }
    if (j->adv) {
        if (s->adv_eps == 0) s->adv_eps = 0.3f;
        if (s->adv_weight == 0) s->adv_weight = 0.5f;
    } else if (s->adv_eps > 0 || s->adv_weight > 0) {
        return lsr_fail(j->err, "--adv-eps and --adv-weight need --adv fgsm");
    }
    if (j->optimizer_name) {
        if (!strcmp(j->optimizer_name, "adam")) s->optimizer.kind = LSR_OPTIMIZER_ADAM;
        else if (!strcmp(j->optimizer_name, "adamw")) s->optimizer.kind = LSR_OPTIMIZER_ADAMW;
        else if (!strcmp(j->optimizer_name, "sgd")) s->optimizer.kind = LSR_OPTIMIZER_SGD;
        else return lsr_fail(j->err, "--optimizer: '%s' is not adam, adamw or sgd", j->optimizer_name);
    }
    if (j->schedule_name) {
        if (!strcmp(j->schedule_name, "constant")) s->optimizer.schedule = LSR_SCHEDULE_CONSTANT;
        else if (!strcmp(j->schedule_name, "step")) s->optimizer.schedule = LSR_SCHEDULE_STEP;
        else if (!strcmp(j->schedule_name, "cosine")) s->optimizer.schedule = LSR_SCHEDULE_COSINE;
        else return lsr_fail(j->err, "--schedule: '%s' is not constant, step or cosine", j->schedule_name);
        if (s->optimizer.schedule == LSR_SCHEDULE_STEP && s->optimizer.step_size == 0)
            return lsr_fail(j->err, "--schedule step needs --step-size");
    }
    if (j->convention_name) {
        if (!strcmp(j->convention_name, "all")) s->loss.convention = LSR_SMOOTHING_ALL;
        else if (!strcmp(j->convention_name, "others")) s->loss.convention = LSR_SMOOTHING_OTHERS;
        else return lsr_fail(j->err, "--smoothing-convention: '%s' is not all or others", j->convention_name);
    }
    s->init = lsr_model_default_init(j->model_name);
    if (j->init_name) {
        if (!strcmp(j->init_name, "cleverhans")) s->init = LSR_INIT_CLEVERHANS;
        else if (!strcmp(j->init_name, "he")) s->init = LSR_INIT_HE;
        else if (!strcmp(j->init_name, "glorot")) s->init = LSR_INIT_GLOROT;
        else return lsr_fail(j->err, "--init: '%s' is not cleverhans, he or glorot", j->init_name);
    }
    if (j->metrics_path && lsr_check_writable(j->metrics_path, "--metrics", j->err)) return -1;
    return 0;
}

void train_job_defaults(train_job *j) {
    memset(j, 0, sizeof *j);
    j->data_dir = LSR_FASHION_MNIST_DIR;
    j->model_name = "cleverhans-cnn";
    j->prefix = "";
    j->s.epochs = 6;
    j->s.batch = 128;
    j->s.optimizer = lsr_optimizer_defaults();
    j->s.loss = lsr_loss_options_default();
    j->tty = isatty(fileno(stderr));
}

// for the run's header line
static const char *precision_words(lsr_precision precision, const lsr_model *m) {
    if (precision == LSR_PRECISION_FP32) return "fp32";
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LSR_LAYER_CONV2D && !lsr_conv2d_is_dense(&m->layers[i]))
            return "bf16 convolutions";
    return "fp32 (bf16 asked, but the model has no convolution it applies to)";
}

int train_job_run(train_job *j, const lsr_dataset *all, int classes, lsr_model *model,
                  lsr_dataset *val_set) {
    lsr_dataset train_set = {0};
    float *prior = NULL;
    int status = -1;
    memset(model, 0, sizeof *model);
    if (lsr_dataset_split(&train_set, val_set, all, j->train_limit, j->val, j->s.seed, j->err)) return -1;
    if (j->imbalance > 1 && lsr_dataset_imbalance(&train_set, j->imbalance, j->s.seed, j->err)) goto out;
    const lsr_shape input = {all->h, all->w, all->c};
    if (lsr_model_init(model, j->model_name, input, classes, j->err)) goto out;
    j->s.loss.prior = NULL;
    if (j->prior_arg && strcmp(j->prior_arg, "uniform") != 0) {
        prior = malloc((size_t)classes * sizeof(float));
        if (!prior) { snprintf(j->err, sizeof j->err, "out of memory"); goto out; }
        if (!strcmp(j->prior_arg, "data")) {
            /* counted in integers: summing 1/n in float drifts past the loss's
             * 1e-4 tolerance on the sum from about 30,000 examples */
            int64_t *count = calloc((size_t)classes, sizeof *count);
            if (!count) { snprintf(j->err, sizeof j->err, "out of memory"); goto out; }
            for (int64_t i = 0; i < train_set.n; i++) count[train_set.y[i]]++;
            for (int k = 0; k < classes; k++)
                prior[k] = (float)((double)count[k] / (double)(train_set.n ? train_set.n : 1));
            free(count);
        } else if (lsr_prior_read(j->prior_arg, classes, prior, j->err)) {
            goto out;
        }
        j->s.loss.prior = prior;
    }
    j->s.loss.threads = cli_threads();
    if (!j->quiet)
        fprintf(stderr, "%slsr train: %s, %lld training / %lld validation samples of %dx%dx%d, %d classes\n"
                        "model %s (%zu parameters), eps %g (%s%s), %d epochs, batch %d, %d threads, %s, GEMMs by %s\n",
                j->prefix, j->data_dir, (long long)train_set.n, (long long)val_set->n, input.h,
                input.w, input.c, classes, model->spec, model->n_params, (double)j->s.loss.smoothing,
                j->s.loss.prior ? "prior " : "", j->s.loss.prior ? j->prior_arg
                : (j->s.loss.convention == LSR_SMOOTHING_ALL ? "all" : "others"),
                j->s.epochs, j->s.batch, cli_threads(),
                precision_words(j->precision, model), lsr_gemm_backend());
    j->model = model;
    j->val_set = val_set;
    j->training_samples = train_set.n;
    lsr_train_state resume_state, *resume = NULL;
    if (j->s.optimizer.schedule == LSR_SCHEDULE_COSINE && j->s.optimizer.total_steps == 0)
        j->s.optimizer.total_steps = (train_set.n + j->s.batch - 1) / j->s.batch * j->s.epochs;
    if (j->resume_path) {
        char *command = NULL;
        lsr_model_free(model);
        if (lsr_checkpoint_load(j->resume_path, model, &resume_state, &j->s.optimizer, train_set.n,
                                &command, j->err))
            goto out;
        free(command);
        resume = &resume_state;
        if (!j->quiet)
            fprintf(stderr, "%sresuming at epoch %d, step %lld\n", j->prefix, resume_state.epoch,
                    (long long)resume_state.step);
    }
    if (lsr_model_set_precision(model, j->precision, j->err)) goto out;
    lsr_train_callbacks cb = {j, draw_progress, epoch_done, save_checkpoint, j->stop};
    const double t0 = lsr_now();
    const int r = lsr_train(model, &train_set, &j->s, &cb, resume, NULL, j->err);
    if (r < 0 || j->err[0]) goto out; /* j->err: a metrics write failed */
    /* the final evaluation computes what lsr eval will: in fp32 */
    if (lsr_model_set_precision(model, LSR_PRECISION_FP32, j->err)) goto out;
    j->train_seconds = lsr_now() - t0;
    status = r; /* 1: stopped on request */
out:
    j->s.loss.prior = NULL;
    free(prior);
    lsr_dataset_free(&train_set);
    if (status) {
        lsr_model_free(model);
        lsr_dataset_free(val_set);
    }
    return status;
}

int train_job_save(const train_job *j, const lsr_model *model, const char *path, double temperature,
                   char *err) {
    lsr_metadata md = {0};
    lsr_metadata_set(&md, "smoothing", "%g", (double)j->s.loss.smoothing);
    lsr_metadata_set(&md, "smoothing_convention", "%s", j->s.loss.convention == LSR_SMOOTHING_ALL ? "all" : "others");
    lsr_metadata_set(&md, "smoothing_prior", "%s", j->prior_arg ? j->prior_arg : "uniform");
    lsr_metadata_set(&md, "z_loss", "%g", (double)j->s.loss.z_loss);
    lsr_metadata_set(&md, "epochs", "%d", j->s.epochs);
    lsr_metadata_set(&md, "batch", "%d", j->s.batch);
    lsr_metadata_set(&md, "optimizer", "%s", j->optimizer_name ? j->optimizer_name : "adam");
    lsr_metadata_set(&md, "lr", "%g", (double)j->s.optimizer.lr);
    lsr_metadata_set(&md, "weight_decay", "%g", (double)j->s.optimizer.weight_decay);
    lsr_metadata_set(&md, "seed", "%llu", (unsigned long long)j->s.seed);
    lsr_metadata_set(&md, "training_samples", "%lld", (long long)j->training_samples);
    lsr_metadata_set(&md, "train_limit", "%lld", j->train_limit);
    lsr_metadata_set(&md, "val_samples", "%lld", j->val);
    lsr_metadata_set(&md, "imbalance", "%g", j->imbalance > 1 ? j->imbalance : 1.0);
    lsr_metadata_set(&md, "adv", "%s", j->adv ? "fgsm" : "none");
    lsr_metadata_set(&md, "adv_eps", "%g", (double)j->s.adv_eps);
    lsr_metadata_set(&md, "adv_weight", "%g", (double)j->s.adv_weight);
    lsr_metadata_set(&md, "data", "%s", j->data_dir);
    lsr_metadata_set(&md, "precision", "%s", j->precision == LSR_PRECISION_BF16 ? "bf16" : "fp32");
    if (temperature > 0) lsr_metadata_set(&md, "temperature", "%.6f", temperature);
    return lsr_model_save(model, &md, path, err);
}

static volatile int stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

char *train_job_command(int argc, char **argv, const char *tag) {
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    if (tag) cJSON_AddItemToArray(a, cJSON_CreateString(tag));
    opterr = 0;
    optind = 0; /* a full restart of getopt: this argv may have been parsed before */
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const struct option *o = find_opt(c);
        if (!o || c == OPT_THREADS || c == OPT_QUIET || c == OPT_RESUME) continue;
        cJSON_AddItemToArray(a, cJSON_CreateString(opt_name(c)));
        if (o->has_arg) cJSON_AddItemToArray(a, cJSON_CreateString(optarg));
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* path made absolute (of a file that need not exist yet: through its
 * directory), so that data and data/.. spellings of one file compare equal */
static void absolute_path(const char *path, char *buf, size_t size) {
    char *real = realpath(path, NULL);
    if (!real) {
        char dir[4096] = ".";
        const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        if (slash) snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        char *real_dir = realpath(dir, NULL);
        if (real_dir) snprintf(buf, size, "%s/%s", real_dir, base);
        else snprintf(buf, size, "%s", path);
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
    case OPT_DATA: path = j->data_dir; break;
    case OPT_MODEL: word = j->model_name; break;
    case OPT_EPOCHS: integer = s->epochs; break;
    case OPT_BATCH: integer = s->batch; break;
    case OPT_SEED: integer = (long long)s->seed; break;
    case OPT_OPTIMIZER:
        word = s->optimizer.kind == LSR_OPTIMIZER_SGD ? "sgd"
               : s->optimizer.kind == LSR_OPTIMIZER_ADAMW ? "adamw" : "adam";
        break;
    case OPT_LR: real = s->optimizer.lr; break;
    case OPT_MOMENTUM: real = s->optimizer.momentum; break;
    case OPT_NESTEROV: word = s->optimizer.nesterov ? "given" : "not given"; break;
    case OPT_WD: real = s->optimizer.weight_decay; break;
    case OPT_INIT:
        word = s->init == LSR_INIT_HE ? "he" : s->init == LSR_INIT_GLOROT ? "glorot" : "cleverhans";
        break;
    case OPT_SCHEDULE:
        word = s->optimizer.schedule == LSR_SCHEDULE_STEP ? "step"
               : s->optimizer.schedule == LSR_SCHEDULE_COSINE ? "cosine" : "constant";
        break;
    case OPT_STEP_SIZE: integer = s->optimizer.step_size; break;
    case OPT_GAMMA: real = s->optimizer.gamma; break;
    case OPT_WARMUP: integer = s->optimizer.warmup; break;
    case OPT_SMOOTHING: real = s->loss.smoothing; break;
    case OPT_CONVENTION: word = s->loss.convention == LSR_SMOOTHING_ALL ? "all" : "others"; break;
    case OPT_PRIOR:
        if (!j->prior_arg || !strcmp(j->prior_arg, "uniform") || !strcmp(j->prior_arg, "data"))
            word = j->prior_arg ? j->prior_arg : "uniform";
        else
            path = j->prior_arg;
        break;
    case OPT_ZLOSS: real = s->loss.z_loss; break;
    case OPT_LIMIT: integer = j->train_limit; break;
    case OPT_VAL: integer = j->val; break;
    case OPT_OUT: path = j->out; word = "none"; break;
    case OPT_METRICS: path = j->metrics_path; word = "none"; break;
    case OPT_IMBALANCE: real = j->imbalance > 1 ? j->imbalance : 1.0; break;
    case OPT_ADV: word = j->adv ? "fgsm" : "none"; break;
    case OPT_ADV_EPS: real = s->adv_eps; break;
    case OPT_ADV_WEIGHT: real = s->adv_weight; break;
    case OPT_CHECKPOINT: path = j->checkpoint_path; word = "none"; break;
    case OPT_CHECKPOINT_EVERY: integer = s->checkpoint_every; break;
    case OPT_NONFINITE: word = s->skip_nonfinite ? "skip" : "stop"; break;
    case OPT_PRECISION: word = j->precision == LSR_PRECISION_BF16 ? "bf16" : "fp32"; break;
    default: word = ""; break;
    }
    if (path && exact) absolute_path(path, buf, size);
    else if (path || word) snprintf(buf, size, "%s", path ? path : word);
    else if (!isnan(real)) snprintf(buf, size, exact ? "%.9g" : "%g", real);
    else snprintf(buf, size, "%lld", integer);
}

/* lsr train --resume FILE [the run's flags]: the stored flags; any flag
 * given as well must have the stored run's value, except --threads and
 * --quiet, which a resume may change. */
static int resume_flags(train_job *j, int argc, char **argv) {
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
        lsr_fail(j->err, "--resume %s: the checkpoint of lsr sweep's run %.100s: run the same "
                         "lsr sweep command again to resume it", path, run);
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
        if (!cJSON_IsString(v)) ok = 0;
        else args[i + 1] = v->valuestring;
    }
    train_job_defaults(j);
    int r = ok ? train_job_parse(j, n + 1, args) : lsr_fail(j->err, "--resume %s: malformed command", path);
    free(args);
    /* every flag given with --resume: the value the stored run has */
    opterr = 0;
    optind = 0;
    int c;
    while (!r && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == OPT_THREADS || c == OPT_QUIET || c == OPT_RESUME) continue;
        char here[4200], there[4200];
        flag_value(&given, c, 1, here, sizeof here);
        flag_value(j, c, 1, there, sizeof there);
        if (strcmp(here, there) != 0) {
            flag_value(&given, c, 0, here, sizeof here);
            flag_value(j, c, 0, there, sizeof there);
            r = lsr_fail(j->err, "--resume %s: %s is %.200s here but %.200s in the checkpoint's run "
                                 "(leave it out to keep the run's value)", path, opt_name(c), here, there);
        }
    }
    if (r) {
        cJSON_Delete(a);
        return -1;
    }
    j->command_json = cJSON_PrintUnformatted(a);
    j->resume_command = a; /* j's strings point into it */
    j->resume_path = path;
    j->threads = given.threads;
    j->quiet = given.quiet;
    return 0;
}

/* On resume, the metrics file keeps the lines of the epochs before the
 * checkpoint's. */
static void reload_metrics(train_job *j, int before_epoch) {
    FILE *f = j->metrics_path ? fopen(j->metrics_path, "r") : NULL;
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        int epoch;
        if (sscanf(line, "{\"epoch\": %d", &epoch) != 1 || epoch >= before_epoch) continue;
        const size_t len = strlen(line);
        char *grown = realloc(j->metrics_text, j->metrics_len + len + 1);
        if (!grown) break;
        j->metrics_text = grown;
        memcpy(j->metrics_text + j->metrics_len, line, len + 1);
        j->metrics_len += len;
    }
    fclose(f);
}

int lsr_cmd_train(int argc, char **argv) {
    train_job j;
    train_job_defaults(&j);
    lsr_dataset all = {0}, test = {0}, val_set = {0};
    lsr_model model = {0};
    float *logits = NULL;
    int status = 1;
    if (train_job_parse(&j, argc, argv)) goto out;
    if (j.resume_path) {
        if (resume_flags(&j, argc, argv)) goto out;
        /* the checkpoint's epoch, for the metrics file (the state is read later) */
        lsr_safetensors f;
        if (lsr_safetensors_open(&f, j.resume_path, "lsr-checkpoint-1", j.err) == 0) {
            const char *e = lsr_metadata_get(&f.md, "epoch");
            reload_metrics(&j, e ? atoi(e) : 1);
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
            fprintf(stderr, "lsr train: %s: stopped at epoch %d, step %lld; the checkpoint %s holds "
                            "the run: resume with 'lsr train --resume %s'\n",
                    strsignal(stop_signal), j.stopped_epoch, j.stopped_step, j.checkpoint_path,
                    j.checkpoint_path);
        else
            fprintf(stderr, "lsr train: %s: stopped at epoch %d, step %lld; no --checkpoint was "
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
        if (!logits) { snprintf(j.err, sizeof j.err, "out of memory"); goto out; }
        if (lsr_predict(&model, &test, logits, 256, j.err)) goto out;
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
