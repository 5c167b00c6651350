/* lsr train's flags: the table, the usage text, the parser, and the run's
 * command line for its checkpoints. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "../net/net.h"
#include "cli.h"
#include "train_flags.h"

/* the defaults: the constants of train_job.h */
// clang-format off
static void train_usage(FILE *f) {
    fprintf(f,
        "usage: lsr train [flags]\n"
        "  --data DIR              MNIST-layout IDX files (.gz or not) or train.csv/test.csv\n"
        "                          (default: Debian's Fashion-MNIST, " LSR_FASHION_MNIST_DIR ")\n"
        "  --model NAME|SPEC       cleverhans-cnn (default), mlp, lenet5, or a spec such as\n"
        "                          'flatten,dense:256,relu,dense:10'\n"
        "  --epochs E (" CLI_STR(TRAIN_DEFAULT_EPOCHS) ")"
        "  --batch B (" CLI_STR(TRAIN_DEFAULT_BATCH) ")"
        "  --seed S (0)  --threads T (0: all cores)\n"
        "  --optimizer adam|adamw|sgd (adam)  --lr LR (1e-3)  --momentum M (0.9, sgd)\n"
        "  --nesterov  --weight-decay WD (0)  --init cleverhans|he|glorot\n"
        "  --schedule constant|step|cosine  --step-size STEPS  --gamma G (0.1)  --warmup STEPS\n"
        "  --smoothing EPS (0)  --smoothing-convention all|others (all)\n"
        "  --smoothing-prior uniform|data|FILE   data: the training class frequencies;\n"
        "                          FILE: K numbers (one distribution)\n"
        "  --smoothing-mode expected|sample  expected (default): the loss against the smoothed\n"
        "                          target; sample: each use of a label is replaced with\n"
        "                          probability eps by a draw from u, plain cross-entropy on it\n"
        "  --z-loss LAMBDA (0)\n"
        "  --teacher MODEL         knowledge distillation from a model file (same classes and\n"
        "                          input): A T^2 H(teacher's softmax at T, ours at T) + (1 - A)\n"
        "                          the label loss; --distill-temperature T (1)\n"
        "                          --distill-weight A (0.5)\n"
        "  --precision fp32|bf16   the convolutions' arithmetic (fp32): bf16 multiplies\n"
        "                          bf16-rounded inputs, weights and gradients with fp32\n"
        "                          sums (oneDNN; needs AVX512_BF16), about twice as fast;\n"
        "                          parameters, the loss and evaluation stay fp32\n"
        "  --train-limit N         use the first N training examples\n"
        "  --val N                 hold out N training examples (seeded) for validation\n"
        "                          (lsr calibrate fits its temperature on them)\n"
        "  --imbalance RATIO       keep ratio^(-c/(K-1)) of class c's training examples\n"
        "  --adv fgsm --adv-eps E (" CLI_STR(TRAIN_DEFAULT_ADV_EPS) ")"
        " --adv-weight W (" CLI_STR(TRAIN_DEFAULT_ADV_WEIGHT) ")\n"
        "                          adversarial training: (1-W) CE(x) + W CE(FGSM(x)), the\n"
        "                          examples made against the current model at every step\n"
        "  --out FILE              the model file (safetensors), written atomically\n"
        "  --metrics FILE          one JSON line per epoch\n"
        "  --class-names FILE      the classes' names, one a line, kept in the model file for\n"
        "                          eval, attack, project and sweep reports (Debian's\n"
        "                          Fashion-MNIST has its own)\n"
        "  --quiet                 no progress display\n"
        "  --checkpoint FILE       keep the whole training state in FILE (atomically), every\n"
        "  --checkpoint-every N    N steps (default " CLI_STR(TRAIN_DEFAULT_CHECKPOINT_EVERY) ")"
        " and when interrupted (SIGINT, SIGTERM)\n"
        "  --resume FILE           go on from a checkpoint with the run's own settings: alone,\n"
        "                          or added to the run's command (every flag given must have\n"
        "                          the run's value; --threads and --quiet may differ)\n"
        "  --on-nonfinite stop|skip  a NaN or infinite loss or gradient stops the run (default)\n"
        "                          or skips the batch\n"
        "under mpirun -np P (data parallel, the same model bits for any P):\n"
        "  --micro-batches M (" CLI_STR(TRAIN_DEFAULT_MICRO_BATCHES) ")"
        "  each batch's parts, shared out over the processes; the\n"
        "                          model depends on M (a resume must keep it), not on P\n"
        "  --exchange exact|allreduce  exact (default): every part's gradient to every\n"
        "                          process, summed in part order; allreduce: MPI_Allreduce of\n"
        "                          each process's sum, faster, but the bits depend on P\n");
}
// clang-format on

const struct option train_opts[] = {
    {"data", required_argument, 0, OPT_DATA},
    {"model", required_argument, 0, OPT_MODEL},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, OPT_SEED},
    {"threads", required_argument, 0, OPT_THREADS},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"nesterov", no_argument, 0, OPT_NESTEROV},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"init", required_argument, 0, OPT_INIT},
    {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"step-size", required_argument, 0, OPT_STEP_SIZE},
    {"gamma", required_argument, 0, OPT_GAMMA},
    {"warmup", required_argument, 0, OPT_WARMUP},
    {"smoothing", required_argument, 0, OPT_SMOOTHING},
    {"smoothing-convention", required_argument, 0, OPT_CONVENTION},
    {"smoothing-prior", required_argument, 0, OPT_PRIOR},
    {"z-loss", required_argument, 0, OPT_ZLOSS},
    {"train-limit", required_argument, 0, OPT_LIMIT},
    {"val", required_argument, 0, OPT_VAL},
    {"out", required_argument, 0, OPT_OUT},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"imbalance", required_argument, 0, OPT_IMBALANCE},
    {"adv", required_argument, 0, OPT_ADV},
    {"adv-eps", required_argument, 0, OPT_ADV_EPS},
    {"adv-weight", required_argument, 0, OPT_ADV_WEIGHT},
    {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
    {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
    {"resume", required_argument, 0, OPT_RESUME},
    {"micro-batches", required_argument, 0, OPT_MICRO_BATCHES},
    {"exchange", required_argument, 0, OPT_EXCHANGE},
    {"smoothing-mode", required_argument, 0, OPT_SMOOTHING_MODE},
    {"teacher", required_argument, 0, OPT_TEACHER},
    {"distill-temperature", required_argument, 0, OPT_DISTILL_T},
    {"distill-weight", required_argument, 0, OPT_DISTILL_W},
    {"class-names", required_argument, 0, OPT_CLASS_NAMES},
    {"on-nonfinite", required_argument, 0, OPT_NONFINITE},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"help", no_argument, 0, OPT_HELP},
    {0, 0, 0, 0}};

static const struct option *find_opt(int c) {
    for (const struct option *o = train_opts; o->name; o++)
        if (o->val == c) return o;
    return NULL;
}

const char *train_opt_name(int c) {
    static char name[64];
    const struct option *o = find_opt(c);
    snprintf(name, sizeof name, "%s%s", o ? "--" : "", o ? o->name : "");
    return name;
}

/* --smoothing-prior uniform|data|FILE into the settings */
static int train_prior(train_job *j) {
    lsr_train_settings *s = &j->s;
    if (!j->prior_arg || !strcmp(j->prior_arg, "uniform")) {
        s->prior_source = LSR_PRIOR_UNIFORM;
    } else if (!strcmp(j->prior_arg, "data")) {
        s->prior_source = LSR_PRIOR_DATA;
    } else {
        if (strlen(j->prior_arg) >= sizeof s->prior_file)
            return lsr__fail(LSR_ERROR_OPTION, "--smoothing-prior: longer than %d characters",
                             LSR_TEXT_MAX - 1);
        s->prior_source = LSR_PRIOR_FILE;
        strcpy(s->prior_file, j->prior_arg);
    }
    return 0;
}

int train_job_parse(train_job *j, int argc, char **argv) {
    lsr_train_settings *s = &j->s;
    long long v;
    double d;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", train_opts, NULL)) != -1) {
        const char *name = train_opt_name(c);
        switch (c) {
        case OPT_DATA:
            if (strlen(optarg) >= sizeof s->data)
                return lsr__fail(LSR_ERROR_OPTION, "--data: longer than %d characters",
                                 LSR_TEXT_MAX - 1);
            strcpy(s->data, optarg);
            break;
        case OPT_MODEL:
            j->model_name = optarg;
            break;
        case OPT_EPOCHS:
            if (cli_int(name, optarg, 1, 100000, &v)) return -1;
            s->epochs = (int)v;
            break;
        case OPT_BATCH:
            if (cli_int(name, optarg, 1, 65536, &v)) return -1;
            s->batch = (int)v;
            break;
        case OPT_SEED:
            if (cli_int(name, optarg, 0, INT64_MAX, &v)) return -1;
            s->seed = (uint64_t)v;
            break;
        case OPT_THREADS:
            if (cli_int(name, optarg, 0, CLI_MAX_THREADS, &j->threads)) return -1;
            break;
        case OPT_MICRO_BATCHES:
            if (cli_int(name, optarg, 1, 4096, &j->micro_batches)) return -1;
            break;
        case OPT_EXCHANGE:
            if (strcmp(optarg, "exact") && strcmp(optarg, "allreduce")) {
                lsr__fail(LSR_ERROR_OPTION, "--exchange %s: exact or allreduce", optarg);
                return -1;
            }
            j->allreduce = !strcmp(optarg, "allreduce");
            break;
        case OPT_OPTIMIZER:
            j->optimizer_name = optarg;
            break;
        case OPT_LR:
            if (cli_float(name, optarg, 1e-12, 1e4, &d)) return -1;
            s->optimizer.lr = (float)d;
            break;
        case OPT_MOMENTUM:
            if (cli_float(name, optarg, 0, 0.9999, &d)) return -1;
            s->optimizer.momentum = (float)d;
            break;
        case OPT_NESTEROV:
            s->optimizer.nesterov = 1;
            break;
        case OPT_WD:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->optimizer.weight_decay = (float)d;
            break;
        case OPT_INIT:
            j->init_name = optarg;
            break;
        case OPT_SCHEDULE:
            j->schedule_name = optarg;
            break;
        case OPT_STEP_SIZE:
            if (cli_int(name, optarg, 1, INT64_MAX, &v)) return -1;
            s->optimizer.step_size = v;
            break;
        case OPT_GAMMA:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->optimizer.gamma = (float)d;
            break;
        case OPT_WARMUP:
            if (cli_int(name, optarg, 0, INT64_MAX, &v)) return -1;
            s->optimizer.warmup = v;
            break;
        case OPT_SMOOTHING:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->loss.smoothing = (float)d;
            break;
        case OPT_CONVENTION:
            j->convention_name = optarg;
            break;
        case OPT_PRIOR:
            j->prior_arg = optarg;
            break;
        case OPT_ZLOSS:
            if (cli_float(name, optarg, 0, 1e3, &d)) return -1;
            s->loss.z_loss = (float)d;
            break;
        case OPT_LIMIT:
            if (cli_int(name, optarg, 1, INT64_MAX, &v)) return -1;
            s->train_limit = v;
            break;
        case OPT_VAL:
            if (cli_int(name, optarg, 0, INT64_MAX, &v)) return -1;
            s->val_samples = v;
            j->val_given = 1;
            break;
        case OPT_OUT:
            j->out = optarg;
            break;
        case OPT_METRICS:
            j->metrics_path = optarg;
            break;
        case OPT_CLASS_NAMES:
            j->class_names_path = optarg;
            break;
        case OPT_QUIET:
            j->quiet = 1;
            break;
        case OPT_IMBALANCE:
            if (cli_float(name, optarg, 1, 1e6, &s->imbalance)) return -1;
            break;
        case OPT_ADV:
            if (strcmp(optarg, "fgsm") != 0)
                return lsr__fail(LSR_ERROR_OPTION, "--adv: '%s' is not fgsm", optarg);
            j->adv = optarg;
            break;
        case OPT_ADV_EPS:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->adv_eps = (float)d;
            break;
        case OPT_ADV_WEIGHT:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->adv_weight = (float)d;
            break;
        case OPT_CHECKPOINT:
            j->checkpoint_path = optarg;
            break;
        case OPT_CHECKPOINT_EVERY:
            if (cli_int(name, optarg, 1, INT64_MAX, &v)) return -1;
            j->checkpoint_every = v;
            break;
        case OPT_RESUME:
            j->resume_path = optarg;
            break;
        case OPT_TEACHER:
            if (strlen(optarg) >= sizeof s->teacher)
                return lsr__fail(LSR_ERROR_OPTION, "--teacher: a path of at most %zu bytes",
                                 sizeof s->teacher - 1);
            strcpy(s->teacher, optarg);
            break;
        case OPT_DISTILL_T:
            if (cli_float(name, optarg, 1e-3, 100, &d)) return -1;
            s->distill_temperature = (float)d;
            break;
        case OPT_DISTILL_W:
            if (cli_float(name, optarg, 0, 1, &d)) return -1;
            s->distill_weight = (float)d;
            break;
        case OPT_SMOOTHING_MODE:
            if (!strcmp(optarg, "expected"))
                s->smoothing_mode = LSR_SMOOTHING_EXPECTED;
            else if (!strcmp(optarg, "sample"))
                s->smoothing_mode = LSR_SMOOTHING_SAMPLE;
            else
                return lsr__fail(LSR_ERROR_OPTION,
                                 "--smoothing-mode: '%s' is not expected or sample", optarg);
            break;
        case OPT_NONFINITE:
            if (!strcmp(optarg, "stop"))
                s->skip_nonfinite = 0;
            else if (!strcmp(optarg, "skip"))
                s->skip_nonfinite = 1;
            else
                return lsr__fail(LSR_ERROR_OPTION, "--on-nonfinite: '%s' is not stop or skip",
                                 optarg);
            break;
        case OPT_PRECISION:
            if (!strcmp(optarg, "fp32")) {
                s->precision = LSR_PRECISION_FP32;
            } else if (!strcmp(optarg, "bf16")) {
                if (lsr_precision_available(LSR_PRECISION_BF16))
                    return lsr__fail(LSR_ERROR_UNSUPPORTED, "--precision bf16: %s",
                                     lsr_last_error());
                s->precision = LSR_PRECISION_BF16;
            } else {
                return lsr__fail(LSR_ERROR_OPTION, "--precision: '%s' is not fp32 or bf16", optarg);
            }
            break;
        case OPT_HELP:
            train_usage(stdout);
            return TRAIN_JOB_HELP;
        case ':':
            return lsr__fail(LSR_ERROR_OPTION, "%s: needs a value", argv[optind - 1]);
        default:
            return lsr__fail(LSR_ERROR_OPTION, "unknown flag '%s' (lsr train --help)",
                             argv[optind - 1]);
        }
    }
    if (optind < argc) return lsr__fail(LSR_ERROR_OPTION, "unexpected argument '%s'", argv[optind]);
    if (j->checkpoint_path) {
        if (!j->checkpoint_every) j->checkpoint_every = TRAIN_DEFAULT_CHECKPOINT_EVERY;
        if (lsr_check_writable(j->checkpoint_path, "--checkpoint")) return -1;
    } else if (j->checkpoint_every) {
        return lsr__fail(LSR_ERROR_OPTION, "--checkpoint-every needs --checkpoint FILE");
    }
    if (j->adv) {
        if (s->adv_eps == 0) s->adv_eps = (float)TRAIN_DEFAULT_ADV_EPS;
        if (s->adv_weight == 0) s->adv_weight = (float)TRAIN_DEFAULT_ADV_WEIGHT;
    } else if (s->adv_eps > 0 || s->adv_weight > 0) {
        return lsr__fail(LSR_ERROR_OPTION, "--adv-eps and --adv-weight need --adv fgsm");
    }
    if (j->optimizer_name) {
        if (!strcmp(j->optimizer_name, "adam"))
            s->optimizer.kind = LSR_OPTIMIZER_ADAM;
        else if (!strcmp(j->optimizer_name, "adamw"))
            s->optimizer.kind = LSR_OPTIMIZER_ADAMW;
        else if (!strcmp(j->optimizer_name, "sgd"))
            s->optimizer.kind = LSR_OPTIMIZER_SGD;
        else
            return lsr__fail(LSR_ERROR_OPTION, "--optimizer: '%s' is not adam, adamw or sgd",
                             j->optimizer_name);
    }
    if (j->schedule_name) {
        if (!strcmp(j->schedule_name, "constant"))
            s->optimizer.schedule = LSR_SCHEDULE_CONSTANT;
        else if (!strcmp(j->schedule_name, "step"))
            s->optimizer.schedule = LSR_SCHEDULE_STEP;
        else if (!strcmp(j->schedule_name, "cosine"))
            s->optimizer.schedule = LSR_SCHEDULE_COSINE;
        else
            return lsr__fail(LSR_ERROR_OPTION, "--schedule: '%s' is not constant, step or cosine",
                             j->schedule_name);
        if (s->optimizer.schedule == LSR_SCHEDULE_STEP && s->optimizer.step_size == 0)
            return lsr__fail(LSR_ERROR_OPTION, "--schedule step needs --step-size");
    }
    if (j->convention_name) {
        if (!strcmp(j->convention_name, "all"))
            s->loss.convention = LSR_SMOOTHING_ALL;
        else if (!strcmp(j->convention_name, "others"))
            s->loss.convention = LSR_SMOOTHING_OTHERS;
        else
            return lsr__fail(LSR_ERROR_OPTION, "--smoothing-convention: '%s' is not all or others",
                             j->convention_name);
    }
    if (j->init_name) {
        if (!strcmp(j->init_name, "cleverhans"))
            s->init = LSR_INIT_CLEVERHANS;
        else if (!strcmp(j->init_name, "he"))
            s->init = LSR_INIT_HE;
        else if (!strcmp(j->init_name, "glorot"))
            s->init = LSR_INIT_GLOROT;
        else
            return lsr__fail(LSR_ERROR_OPTION, "--init: '%s' is not cleverhans, he or glorot",
                             j->init_name);
    }
    if (j->metrics_path && lsr_check_writable(j->metrics_path, "--metrics")) return -1;
    const lsr_train_settings defaults = lsr_train_settings_default();
    if (!s->teacher[0] && (s->distill_temperature != defaults.distill_temperature ||
                           s->distill_weight != defaults.distill_weight))
        return lsr__fail(LSR_ERROR_OPTION,
                         "--distill-temperature, --distill-weight: need --teacher MODEL");
    if (s->teacher[0]) { /* an absolute path: a resume from elsewhere finds the same file */
        char *real = realpath(s->teacher, NULL);
        if (real && strlen(real) < sizeof s->teacher) strcpy(s->teacher, real);
        free(real);
    }
    return train_prior(j);
}
