/*
 * lsr/train.h - train classifiers with label-smoothing regularization.
 *
 * The trainer of lsr as a library: datasets (IDX, CSV), sequential models
 * (dense, convolution, pooling, ReLU, dropout), SGD/Adam/AdamW, training
 * with the label-smoothed loss of lsr/loss.h, checkpoints that resume a run
 * exactly, model files in safetensors, evaluation (accuracy, top-5, NLL,
 * calibration), temperature scaling and FGSM.
 *
 * A whole run (examples/train.c):
 *
 *     lsr_dataset train, test;
 *     lsr_model *m;
 *     lsr_train_settings s = lsr_train_settings_default();
 *     s.loss.smoothing = 0.1f;
 *     if (lsr_dataset_load_dir(&train, &test, LSR_FASHION_MNIST_DIR) ||
 *         lsr_model_create(&m, "mlp", train.h, train.w, train.c, train.classes) ||
 *         lsr_train(m, &train, &s, NULL, NULL) || ...)
 *         fprintf(stderr, "%s\n", lsr_last_error());
 *
 * Errors: as in lsr/loss.h.  Every fallible function returns an lsr_status;
 * none prints, exits or aborts; after a failure lsr_last_error() names the
 * file, argument or setting and what is wrong with it.  Outputs come first
 * in every argument list.  Files are written atomically: a file appears
 * complete or not at all, and a failed write leaves the old one as it was.
 *
 * Results do not depend on the thread count (OpenMP's; set it with
 * OMP_NUM_THREADS or omp_set_num_threads): a run with the same settings and
 * data gives the same bits on 1 or 64 threads (fp32).
 *
 * Threads: a model, a dataset or a training state is used by one thread at
 * a time; different ones may be used by different threads at once, except
 * models training with bf16 convolutions (they share oneDNN's stream).
 * lsr_last_error() is per thread.  Pointers documented as outputs or inputs
 * must not be NULL unless the text says so.
 */
#ifndef LSR_TRAIN_H
#define LSR_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "lsr/loss.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where Debian's dataset-fashion-mnist package installs Fashion-MNIST. */
#define LSR_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* The longest path or spec string that settings and model files hold. */
#define LSR_TEXT_MAX 1024

/* ---- datasets ---- */

/* Samples as one float array in (H, W, C) order, and their labels.  x and y
 * are malloc'd; lsr_dataset_free frees them (a dataset filled by hand with
 * malloc'd arrays may be freed the same way). */
typedef struct lsr_dataset {
    int64_t n;   /* samples */
    int h, w, c; /* sample shape; CSV rows are 1 x features x 1 */
    int classes; /* the label range [0, classes): largest label + 1 as read; subsets
                    keep their source's */
    float *x;    /* (n, h * w * c); IDX pixels scaled to [0, 1] */
    int64_t *y;  /* (n) labels in [0, classes) */
} lsr_dataset;

/*
 * out          the dataset read
 * images_path  IDX ubyte images (3 or 4 dimensions), plain or .gz
 * labels_path  IDX ubyte labels (1 dimension, as many), plain or .gz
 * Checks magic numbers, dimensions and that each file holds exactly the
 * bytes its header announces.
 */
LSR_API lsr_status lsr_dataset_load_idx(lsr_dataset *out, const char *images_path,
                                        const char *labels_path);
/* out: the rows of a CSV file whose first column is an integer label and
 * whose other columns are numbers; a first line that does not parse is a
 * header.  Every row must have the same number of columns. */
LSR_API lsr_status lsr_dataset_load_csv(lsr_dataset *out, const char *path);
/*
 * train, test  the two splits of dir; test may be NULL
 * dir          the four MNIST files (train-images-idx3-ubyte,
 *              train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 *              t10k-labels-idx1-ubyte, each optionally .gz), or train.csv
 *              and test.csv
 */
LSR_API lsr_status lsr_dataset_load_dir(lsr_dataset *train, lsr_dataset *test, const char *dir);
/*
 * train, val  out: the first limit samples of all in an order drawn with
 *             seed (when val_count > 0; else in their order): train the
 *             first of them, val the last val_count
 * all         in
 * limit       how many samples of all to use; 0: all of them
 * The same arguments always give the same split.
 */
LSR_API lsr_status lsr_dataset_split(lsr_dataset *train, lsr_dataset *val, const lsr_dataset *all,
                                     int64_t limit, int64_t val_count, uint64_t seed);
/* out: copies of src's samples index[0..n), in that order. */
LSR_API lsr_status lsr_dataset_subset(lsr_dataset *out, const lsr_dataset *src,
                                      const int64_t *index, int64_t n);
/* Keeps ratio^(-c/(K-1)) of class c's samples of d (drawn with seed): class
 * 0 keeps all, the last class 1/ratio.  ratio >= 1. */
LSR_API lsr_status lsr_dataset_imbalance(lsr_dataset *d, double ratio, uint64_t seed);
/* Frees x and y and zeroes d; d may be zeroed already. */
LSR_API void lsr_dataset_free(lsr_dataset *d);

/* ---- smoothing priors ---- */

/* prior (k): the frequencies of labels (n, in [0, k)), counted exactly. */
LSR_API lsr_status lsr_prior_from_labels(float *prior, const int64_t *labels, int64_t n, int k);
/* prior (k): exactly k non-negative numbers read from path (separated by
 * white space, commas or semicolons), normalised to sum to 1. */
LSR_API lsr_status lsr_prior_read(float *prior, const char *path, int k);

/* ---- models ---- */

/* A sequential classifier: its layers, parameters and buffers (opaque). */
typedef struct lsr_model lsr_model;

typedef enum lsr_init {
    LSR_INIT_DEFAULT = 0, /* the preset's: cleverhans for cleverhans-cnn, He otherwise */
    LSR_INIT_CLEVERHANS,  /* N(0, 1/fan_in), zero biases (cleverhans ModelBasicCNN) */
    LSR_INIT_HE,          /* N(0, 2/fan_in) */
    LSR_INIT_GLOROT,      /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
} lsr_init;

/* The convolutions' arithmetic while training.  BF16 multiplies
 * bf16-rounded inputs, weights and gradients with fp32 sums (oneDNN, CPUs
 * with AVX512_BF16); parameters, the loss and evaluation stay fp32. */
typedef enum lsr_precision {
    LSR_PRECISION_FP32 = 0,
    LSR_PRECISION_BF16 = 1,
} lsr_precision;

/*
 * out            the new model, its parameters zero until lsr_train
 *                initialises them; free with lsr_model_free
 * name_or_spec   "cleverhans-cnn", "mlp", "lenet5", or comma-separated layers
 *                  conv:FILTERS:KERNEL:STRIDE:same|valid   maxpool:KERNEL:STRIDE
 *                  dense:UNITS   relu   dropout:RATE   flatten
 *                whose last layer is dense with `classes` units
 * h, w, c        the shape of one input sample
 * classes        K >= 1
 */
LSR_API lsr_status lsr_model_create(lsr_model **out, const char *name_or_spec, int h, int w, int c,
                                    int classes);
/* out: the model of a file written by lsr_model_save, every tensor's dtype,
 * shape and byte range checked, with its training settings and temperature. */
LSR_API lsr_status lsr_model_load(lsr_model **out, const char *path);
/* Writes m's parameters, architecture, training settings (those of the last
 * lsr_train, if any) and temperature to path, atomically (safetensors; see
 * docs/model-format.md). */
LSR_API lsr_status lsr_model_save(const lsr_model *m, const char *path);
LSR_API void lsr_model_free(lsr_model *m); /* m may be NULL */

LSR_API int lsr_model_classes(const lsr_model *m);
/* h, w, c: out, the shape of one input sample. */
LSR_API void lsr_model_input_shape(const lsr_model *m, int *h, int *w, int *c);
LSR_API size_t lsr_model_param_count(const lsr_model *m);
/* (lsr_model_param_count) all weights and biases, in lsr's own layout
 * (channels last; model files hold PyTorch's). */
LSR_API const float *lsr_model_params(const lsr_model *m);
/* The architecture as a spec string (presets expanded). */
LSR_API const char *lsr_model_spec(const lsr_model *m);
/* The temperature T of the model's calibrated probabilities softmax(z / T),
 * as lsr_model_set_temperature or the model file set it (lsr calibrate
 * fits it); 0 when none was set. */
LSR_API double lsr_model_temperature(const lsr_model *m);
LSR_API lsr_status lsr_model_set_temperature(lsr_model *m, double temperature); /* > 0 */

/* Class names: what eval, attack, project and the sweep report show instead
 * of indices.  lsr train keeps Fashion-MNIST's when it trains on Debian's
 * copy, or those of --class-names FILE. */
#define LSR_CLASS_NAME_MAX 64 /* bytes of one name, its terminating NUL included */
/* The name of class k in [0, classes), or NULL when the model has none (or
 * k is out of range). */
LSR_API const char *lsr_model_class_name(const lsr_model *m, int k);
/* names: lsr_model_classes(m) names, each non-empty, of at most
 * LSR_CLASS_NAME_MAX - 1 bytes, without control characters, all different;
 * or NULL to remove them.  The model file keeps them as one JSON array of
 * at most 1023 bytes (ten names of up to 63 bytes, or a hundred of 6): more is
 * refused here, with LSR_ERROR_OPTION, rather than cut when saved. */
LSR_API lsr_status lsr_model_set_class_names(lsr_model *m, const char *const *names);

/*
 * logits  out (n, classes): the model's logits z in evaluation mode (no
 *         dropout); not divided by the temperature
 * x       in (n, h * w * c) samples
 */
LSR_API lsr_status lsr_model_predict(float *logits, lsr_model *m, const float *x, int64_t n);
/*
 * probs        out (n, classes): softmax(z / temperature) of each sample's
 *              logits z, each row summing to 1
 * temperature  > 0: 1 for the model's own probabilities,
 *              lsr_model_temperature(m) for its calibrated ones
 */
LSR_API lsr_status lsr_model_probabilities(float *probs, lsr_model *m, const float *x, int64_t n,
                                           double temperature);

/* ---- training ---- */

typedef enum lsr_optimizer {
    LSR_OPTIMIZER_SGD = 0,   /* momentum, Nesterov, L2 weight decay */
    LSR_OPTIMIZER_ADAM = 1,  /* weight decay as L2 added to the gradient */
    LSR_OPTIMIZER_ADAMW = 2, /* decoupled weight decay */
} lsr_optimizer;

typedef enum lsr_schedule {
    LSR_SCHEDULE_CONSTANT = 0,
    LSR_SCHEDULE_STEP = 1,   /* multiply by gamma every step_size steps */
    LSR_SCHEDULE_COSINE = 2, /* decay to 0 over total_steps (0: the whole run) */
} lsr_schedule;

typedef struct lsr_optimizer_settings {
    lsr_optimizer kind;
    float lr;
    float momentum; /* SGD */
    int nesterov;   /* SGD */
    float weight_decay;
    float beta1, beta2, eps; /* Adam, AdamW */
    lsr_schedule schedule;
    int64_t step_size;   /* STEP */
    float gamma;         /* STEP */
    int64_t warmup;      /* linear warm-up over this many steps */
    int64_t total_steps; /* COSINE; 0: epochs x steps per epoch */
} lsr_optimizer_settings;

/* How the smoothing enters training (lsr_train_settings.smoothing_mode). */
typedef enum lsr_smoothing_mode {
    LSR_SMOOTHING_EXPECTED = 0, /* the loss against q' = (1 - eps) onehot + eps u */
    /* Szegedy et al.'s first description: every time a sample is used, its
     * label is replaced with probability eps by a draw from u (the
     * convention's or the prior), and the step trains plain cross-entropy on
     * the drawn labels: the same loss in expectation.  Drawn from the run's
     * random state, the step and the sample's place in the batch:
     * reproducible, resumable, the same under mpirun for any P. */
    LSR_SMOOTHING_SAMPLE = 1,
} lsr_smoothing_mode;

/* Where the smoothing distribution u comes from. */
typedef enum lsr_prior {
    LSR_PRIOR_UNIFORM = 0, /* loss.convention's: 1/K, or 1/(K-1) to the other classes */
    LSR_PRIOR_DATA = 1,    /* the class frequencies of the training data */
    LSR_PRIOR_FILE = 2,    /* K numbers read from prior_file (lsr_prior_read) */
} lsr_prior;

/*
 * Everything that decides a run's result.  lsr_train records it in the
 * model (model files) and checkpoints store it as data, so a run resumes,
 * and a model is calibrated, from what it was trained with.
 */
typedef struct lsr_train_settings {
    int epochs;    /* >= 1 */
    int batch;     /* samples per step, >= 1 */
    uint64_t seed; /* initialisation, shuffling, dropout, the split */
    lsr_init init;
    lsr_precision precision;
    lsr_optimizer_settings optimizer;
    /* smoothing, convention, z_loss, threads; prior and class_weights must
     * be NULL (the prior comes from prior_source), reduction MEAN, and
     * ignore_index and isa their defaults */
    lsr_loss_options loss;
    lsr_prior prior_source;
    char prior_file[LSR_TEXT_MAX]; /* LSR_PRIOR_FILE */
    /* adversarial training (cleverhans): loss = (1 - w) CE(x) + w CE(FGSM(x)),
     * the FGSM examples made against the current model at every step */
    float adv_eps;      /* 0: none */
    float adv_weight;   /* w in [0, 1] */
    int skip_nonfinite; /* a non-finite loss or gradient skips the step
                           (else lsr_train fails with LSR_ERROR_NONFINITE) */
    /* how the data was prepared (lsr_train_split); recorded, so that lsr
     * calibrate finds the validation split again */
    char data[LSR_TEXT_MAX];           /* where the data came from: free text, "" if untold */
    int64_t train_limit;               /* the first train_limit samples; 0: all */
    int64_t val_samples;               /* held out for validation, drawn with seed */
    double imbalance;                  /* >= 1: lsr_dataset_imbalance's ratio; 1: none */
    lsr_smoothing_mode smoothing_mode; /* expected (default) or sampled labels */
    /* Knowledge distillation: with a teacher model file (its classes and
     * input shape the student's), the loss is
     *   A T^2 H(softmax(z_teacher / T), softmax(z / T)) + (1 - A) (the label loss)
     * per sample, the teacher's logits computed in evaluation mode.  Not with
     * adversarial training. */
    char teacher[LSR_TEXT_MAX]; /* the teacher's model file; "" for none */
    uint64_t teacher_hash;      /* its parameters' hash: 0 until the run records the
                                   teacher it started with, which a resume must find */
    float distill_temperature;  /* T > 0 (default 1) */
    float distill_weight;       /* A in [0, 1] (default 0.5) */
} lsr_train_settings;

/* LSR_OK if this build and CPU can train with precision, else
 * LSR_ERROR_UNSUPPORTED and lsr_last_error() says why. */
LSR_API lsr_status lsr_precision_available(lsr_precision precision);

/* 6 epochs of batch 128, seed 0, Adam at lr 1e-3 (PyTorch's betas and eps),
 * no smoothing, the preset's initialisation, fp32, stop on non-finite. */
LSR_API lsr_train_settings lsr_train_settings_default(void);

/* train, val: all split as s says (train_limit, val_samples, seed), then
 * train imbalanced by s->imbalance. */
LSR_API lsr_status lsr_train_split(lsr_dataset *train, lsr_dataset *val, const lsr_dataset *all,
                                   const lsr_train_settings *s);

/* What one step or one epoch did: means over the samples seen this epoch. */
typedef struct lsr_train_progress {
    int epoch, epochs;             /* 1-based epoch, of epochs */
    int64_t step, steps_per_epoch; /* step within the epoch, 1-based */
    int64_t samples;               /* samples seen this epoch */
    double step_loss;              /* this step's loss (NaN when skipped) */
    double loss, label_ce, prior_ce, accuracy;
    double seconds;  /* since the epoch began */
    int64_t skipped; /* steps skipped as non-finite, in the whole run */
} lsr_train_progress;

/* Where a run stands (opaque): epoch, step, sample order, random state,
 * optimizer moments.  Given to the checkpoint callback; read back by
 * lsr_checkpoint_load to resume. */
typedef struct lsr_train_state lsr_train_state;
LSR_API void lsr_train_state_free(lsr_train_state *st); /* st may be NULL */
/* The epoch in progress (1-based) and the steps of it already taken. */
LSR_API int lsr_train_state_epoch(const lsr_train_state *st);
LSR_API int64_t lsr_train_state_step(const lsr_train_state *st);

/* Data-parallel training over several processes (lsr train under mpirun):
 * every process calls lsr_train with the same model, data, settings and
 * seed, and this in its callbacks.  Each batch of b samples is cut into M =
 * micro_batches fixed parts (part i: the batch's samples [i b / M,
 * (i + 1) b / M)); process r computes the gradients of parts
 * [r M / P, (r + 1) M / P) (each part's dropout drawn from the seed, the step
 * and the part's index), allgather brings every part's gradient to every
 * process, and each sums them in part order and takes the same optimizer
 * step.  So the model is the same bits for any process count P (and thread
 * counts), given M; it differs from a run without this, which takes each
 * batch whole.  A stop asked on any process stops all of them after the
 * same step: *stop as it stands at a step's exchange, a callback's
 * LSR_STOPPED at the next step's (one step later).  A failure on one process
 * (an error status) reaches the others in the step's exchange, and every
 * process returns an error.  The callbacks run on every process: only one
 * (rank 0) should write files. */
typedef struct lsr_train_parallel {
    int rank, size;    /* this process, of size */
    int micro_batches; /* M >= 1, the same on every process */
    /* The collective: every process passes its own bytes (mine, bytes[rank]
     * of them) and gets every process's, rank r's at all + offsets[r].
     * LSR_OK, or an error status with lsr_last_error set. */
    lsr_status (*allgather)(void *ctx, const void *mine, void *all, const int *bytes,
                            const int *offsets);
    /* Or NULL.  The faster mode that gives up the promise: each process sums
     * its own parts, then this adds the processes' sums in place, on every
     * process (MPI_Allreduce: its order, and so the model's last bits,
     * depend on P).  Used instead of allgather when given. */
    lsr_status (*allreduce)(void *ctx, float *grads, int n_grads, double *sums, int n_sums);
    void *ctx;
} lsr_train_parallel;

/* Each callback may be NULL.  A callback returns LSR_OK to go on,
 * LSR_STOPPED to stop the run, or an error status (with lsr_last_error set,
 * e.g. by the library call that failed), which lsr_train returns. */
typedef struct lsr_train_callbacks {
    void *ctx;
    lsr_status (*step)(void *ctx, const lsr_train_progress *p);  /* after every step */
    lsr_status (*epoch)(void *ctx, const lsr_train_progress *p); /* after every epoch */
    /* every checkpoint_every steps, at the end, and before stopping */
    lsr_status (*checkpoint)(void *ctx, const lsr_model *m, const lsr_train_state *st);
    /* when set (e.g. by a signal handler), the run stops after the current step */
    volatile int *stop;
    int64_t checkpoint_every;           /* steps (counted over the whole run); 0: only at the end
                                           and before stopping */
    const lsr_train_parallel *parallel; /* NULL: this process alone */
} lsr_train_callbacks;

/*
 * Trains m on data with settings s.
 *
 * resume  NULL: initialise m's parameters from s->seed and start; or a
 *         state from lsr_checkpoint_load (with m from the same call) to go
 *         on exactly where it stopped: the result is bit-identical to a run
 *         that never stopped.  The state is consumed and freed.
 *
 * Returns LSR_OK when all epochs ran, LSR_STOPPED when a callback or *stop
 * stopped it before (after the checkpoint callback), or an error:
 * LSR_ERROR_OPTION (a setting out of range, named), LSR_ERROR_SIZE (no
 * samples), LSR_ERROR_MISMATCH (data that does not fit the model, or a
 * resumed state of other settings, data (samples, labels, order) or model
 * (architecture, parameters)), LSR_ERROR_NONFINITE (the run diverged), LSR_ERROR_UNSUPPORTED (bf16
 * on a CPU without it), LSR_ERROR_IO or LSR_ERROR_FORMAT (the prior file), LSR_ERROR_OUT_OF_MEMORY,
 * or what a callback returned.  Afterwards m is in fp32 for evaluation,
 * records s, its default initialisation resolved (lsr_model_save), and has
 * no temperature (one fitted before no longer holds).
 */
LSR_API lsr_status lsr_train(lsr_model *m, const lsr_dataset *data, const lsr_train_settings *s,
                             const lsr_train_callbacks *cb, lsr_train_state *resume);

/*
 * Checkpoints: m's parameters and st (with the run's settings) atomically in
 * a safetensors file (format lsr-checkpoint-2; files of older formats are
 * refused, naming theirs).  Call it from the checkpoint callback, with the
 * model and state it is given.  note: the caller's own text, stored as it
 * is (at most LSR_TEXT_MAX - 1 bytes; NULL for none); lsr train keeps its
 * output files there.
 */
LSR_API lsr_status lsr_checkpoint_save(const char *path, const lsr_model *m,
                                       const lsr_train_state *st, const char *note);
/*
 * m     out: the run's model with the checkpoint's parameters
 * st    out: where the run stands, for lsr_train's resume argument
 * s     out: the run's settings (its initialisation resolved), to pass to
 *       lsr_train with st: a resume with other settings is refused
 * note  out: malloc'd; "" when none was stored
 * Each may be NULL when not wanted; on failure m, st and note are NULL and
 * s holds the defaults.
 */
LSR_API lsr_status lsr_checkpoint_load(lsr_model **m, lsr_train_state **st, lsr_train_settings *s,
                                       char **note, const char *path);
/* The settings recorded in a model by lsr_train or its file; NULL if none. */
LSR_API const lsr_train_settings *lsr_model_settings(const lsr_model *m);

/* ---- evaluation ---- */

#define LSR_CALIBRATION_BINS 15

/* What predictions are worth.  Calibration over 15 equal-width bins. */
typedef struct lsr_metrics {
    int64_t n;
    double accuracy, top5, nll, brier;
    double ece, mce; /* expected and maximum calibration error */
    double mean_confidence;
    double overconfidence; /* mean confidence - accuracy */
    int64_t bin_count[LSR_CALIBRATION_BINS];
    double bin_confidence[LSR_CALIBRATION_BINS], bin_accuracy[LSR_CALIBRATION_BINS];
} lsr_metrics;

/*
 * out          the metrics of softmax(logits / temperature)
 * logits       (n, k);  labels (n) in [0, k)
 * temperature  > 0
 */
LSR_API lsr_status lsr_metrics_compute(lsr_metrics *out, const float *logits, const int64_t *labels,
                                       int64_t n, int k, double temperature);
/* out: m's metrics on d, of softmax(z / temperature) (> 0; e.g. 1, or
 * lsr_model_temperature(m)). */
LSR_API lsr_status lsr_model_evaluate(lsr_metrics *out, lsr_model *m, const lsr_dataset *d,
                                      double temperature);
/* temperature: the T > 0 minimising the mean NLL of softmax(logits / T)
 * (golden-section search on log T in [1/100, 100]).  logits (n, k). */
LSR_API lsr_status lsr_temperature_fit(double *temperature, const float *logits,
                                       const int64_t *labels, int64_t n, int k);

/*
 * The fast gradient sign method (Goodfellow et al.), as the cleverhans
 * tutorial runs it: adv = clip(x + eps sign(dL/dx), 0, 1), L the plain
 * cross-entropy of m's logits (evaluation mode, temperature 1) against
 * labels or, when labels is NULL, against m's own predictions.
 *
 * adv  out (n, h * w * c); may equal x.   x  in (n, h * w * c)
 * eps  in [0, 1]
 */
LSR_API lsr_status lsr_fgsm_generate(float *adv, lsr_model *m, const float *x,
                                     const int64_t *labels, int64_t n, float eps);

#ifdef __cplusplus
}
#endif

#endif /* LSR_TRAIN_H */
