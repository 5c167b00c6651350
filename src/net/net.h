/* The network: layers that each have a forward and a backward next to each
 * other, and a sequential model whose parameters and gradients each live in
 * one contiguous block.  Activations are (B, H, W, C), channels last. */
#ifndef LSR_NET_H
#define LSR_NET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../common/common.h"
#include "../loss/bf16.h"
#include "lsr/train.h"

#define LSR_MAX_LAYERS 32
/* Samples per forward pass in prediction, evaluation and FGSM. */
#define LSR_PREDICT_BATCH 256
#define LSR_SPEC_LEN 1024
#define LSR_MAX_PARAMS ((size_t)1 << 30) /* 4 GiB of weights */

typedef enum lsr_layer_kind {
    LSR_LAYER_DENSE,
    LSR_LAYER_CONV2D,
    LSR_LAYER_MAXPOOL,
    LSR_LAYER_RELU,
    LSR_LAYER_DROPOUT,
    LSR_LAYER_FLATTEN,
} lsr_layer_kind;

typedef struct lsr_shape {
    int h, w, c;
} lsr_shape;

static inline size_t lsr_shape_size(lsr_shape s) { return (size_t)s.h * (size_t)s.w * (size_t)s.c; }

typedef struct lsr_layer {
    lsr_layer_kind kind;
    lsr_shape in, out;                  /* per sample */
    int units;                          /* dense: outputs; conv: filters */
    int kernel, stride;                 /* conv, maxpool (square) */
    int same;                           /* conv: TensorFlow SAME padding, else VALID */
    int pad_top, pad_left;              /* conv: derived from SAME */
    float rate;                         /* dropout: probability of dropping */
    size_t weight_offset, weight_count; /* into the model's parameter block */
    size_t bias_offset, bias_count;
} lsr_layer;

/* lsr_precision (lsr/train.h): fp32 convolutions are im2col + sgemm
 * (conv2d.c); bf16 ones the same products on bf16-rounded patches, weights
 * and gradients with fp32 sums, by oneDNN (conv2d_onednn.c); parameters and
 * everything else stay fp32. */
typedef struct lsr_conv_fast lsr_conv_fast;

/* lsr_model of lsr/train.h */
struct lsr_model {
    int n_layers;
    lsr_layer layers[LSR_MAX_LAYERS];
    lsr_shape input;
    int classes;
    char spec[LSR_SPEC_LEN]; /* the architecture, as a spec string */
    size_t n_params;
    float *params; /* (n_params) all weights and biases */
    float *grads;  /* (n_params) their gradients, accumulated */
    /* per-batch buffers, sized by lsr_model_reserve */
    int batch_capacity;
    float *acts[LSR_MAX_LAYERS + 1];     /* acts[i] (B, layers[i].in), acts[n] the logits */
    float *dacts[LSR_MAX_LAYERS + 1];    /* their gradients */
    int32_t *pool_index[LSR_MAX_LAYERS]; /* maxpool: flat input index of each max */
    uint8_t *dropout_mask[LSR_MAX_LAYERS];
    float *col[LSR_MAX_LAYERS]; /* conv: the forward's im2col matrix, reused by the backward */
    float *dcol;                /* conv backward scratch, shared */
    lsr_conv_fast *conv_fast[LSR_MAX_LAYERS]; /* conv in bf16: oneDNN state, else NULL */
    uint8_t conv_fast_used[LSR_MAX_LAYERS];   /* the last forward of layer i went through it */
    int forward_training;                     /* the last forward ran in training mode */
    /* what the model was trained with (lsr_train, or its file) */
    int has_settings;
    lsr_train_settings settings;
    int64_t training_samples;
    double temperature;                      /* fitted by lsr calibrate, or 0: none */
    char (*class_names)[LSR_CLASS_NAME_MAX]; /* (classes) names, malloc'd, or NULL */
    lsr_init default_init; /* LSR_INIT_DEFAULT's: the preset's (He for a spec string) */
    /* the metadata of the file the model was loaded from (lsr_metadata,
     * malloc'd), written back as it was unless the model is trained again */
    void *file_metadata;
};

/* "cleverhans-cnn", "mlp" and "lenet5" expand to a spec; anything else is
 * taken as a spec string: comma-separated layers
 *   conv:FILTERS:KERNEL:STRIDE:same|valid   maxpool:KERNEL:STRIDE
 *   dense:UNITS   relu   dropout:RATE   flatten
 * whose last layer must be dense with as many units as classes. */
lsr_status lsr_model_init(lsr_model *m, const char *name_or_spec, lsr_shape input, int classes);
/* Initialises the parameters; LSR_INIT_DEFAULT is the preset's: cleverhans
 * for cleverhans-cnn's architecture, He otherwise. */
void lsr_model_init_params(lsr_model *m, lsr_init init, lsr_rng *rng);
/* Chooses the convolutions' arithmetic; fails with a message when this
 * build or CPU cannot do it.  Call it before lsr_model_reserve, which then
 * builds the bf16 kernels for the batch size and reports their failure. */
lsr_status lsr_model_set_precision(lsr_model *m, lsr_precision precision);
/* Sizes the batch buffers for batches of up to batch samples. */
lsr_status lsr_model_reserve(lsr_model *m, int batch);
/* Frees what lsr_model_init allocated (not m itself) and zeroes m. */
void lsr_model_clear(lsr_model *m);
/* Drops the loaded file's metadata (the model has been trained again). */
void lsr_model_forget_file_metadata(lsr_model *m);

/* x (B, input) -> logits (B, classes), returned (owned by the model).
 * training enables dropout, drawing its masks from rng. */
const float *lsr_model_forward(lsr_model *m, const float *x, int batch, int training, lsr_rng *rng);
/* What lsr_model_backward computes. */
enum {
    LSR_GRAD_PARAMS = 1, /* add the parameter gradients into m->grads */
    LSR_GRAD_INPUT = 2,  /* leave the gradient w.r.t. the input in m->dacts[0] */
};
/* dlogits (B, classes), for the batch of the last forward. */
void lsr_model_backward(lsr_model *m, const float *dlogits, int batch, int what);
void lsr_model_zero_grads(lsr_model *m);

/* ---- matrix products (gemm.c) ---- */
/* The fixed tiles of C that lsr_gemm and lsr_gemm_bf16 compute one at a time. */
enum { LSR_GEMM_TILE_M = 128, LSR_GEMM_TILE_N = 256 };
/* The sgemm lsr_gemm runs, in words (for --version and logs). */
const char *lsr_gemm_backend(void);
/* C (M, N) = alpha op(A) op(B) + beta C, row-major, like cblas_sgemm.  C is
 * computed in fixed tiles, one single-threaded sgemm call each, K never
 * split: the result is bit-identical for any thread count. */
void lsr_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* The same product, each element summed over k in double: the specification
 * that tests hold lsr_gemm to. */
void lsr_gemm_reference(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- bf16 products with float sums (gemm_bf16.c) ---- */
/* LSR_OK where lsr_gemm_bf16 can run: lsr built with oneDNN, a CPU with
 * AVX512_BF16; else LSR_ERROR_UNSUPPORTED and why (lsr_last_error). */
lsr_status lsr_gemm_bf16_available(void);
/* oneDNN's primitives for the tile shapes of a caller's products, kept
 * between its calls of lsr_gemm_bf16 (NULL: out of memory, or no oneDNN). */
typedef struct lsr_gemm_bf16_cache lsr_gemm_bf16_cache;
lsr_gemm_bf16_cache *lsr_gemm_bf16_cache_new(void);
void lsr_gemm_bf16_cache_free(lsr_gemm_bf16_cache *c);
/* C (M, N) = op(A) op(B) (+ C when accumulate), A and B bf16, C and the sums
 * float, row-major; in lsr_gemm's fixed tiles, one single-threaded oneDNN
 * matmul each: bit-identical for any thread count. */
lsr_status lsr_gemm_bf16(lsr_gemm_bf16_cache *c, int trans_a, int trans_b, int M, int N, int K,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, int accumulate,
                         float *C, int ldc);
/* The same product, each element summed in double: the specification. */
void lsr_gemm_bf16_reference(int trans_a, int trans_b, int M, int N, int K, const uint16_t *A,
                             int lda, const uint16_t *B, int ldb, int accumulate, float *C,
                             int ldc);
/* dst = src rounded to bf16 as the CPU's conversion rounds (nearest even,
 * subnormals to zero); dst may be (uint16_t *)src, the values packed into
 * the first half of src's bytes. */
void lsr_round_bf16(uint16_t *dst, const float *src, size_t n);

/* ---- the layers ---- */
void lsr_dense_forward(float *out, const float *in, const float *weight, const float *bias,
                       int batch, int in_size, int out_size);
void lsr_dense_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, int batch, int in_size, int out_size);

/* col (B*OH*OW, K*K*C) is filled by the forward and read by the backward;
 * dcol has the same size and is scratch. */
void lsr_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                        float *col, const lsr_layer *l, int batch);
/* dbias (F) += the column sums of dout (rows, F) */
void lsr_bias_grad(float *dbias, const float *dout, int rows, int F);
/* A convolution whose kernel covers its whole unpadded input: a dense layer,
 * whose im2col matrix is its input itself. */
int lsr_conv2d_is_dense(const lsr_layer *l);
/* col (B*OH*OW, K*K*C): the patches of in, as the forward computes them */
void lsr_conv2d_im2col(float *col, const float *in, const lsr_layer *l, int batch);
/* dst (K*K*C) = row r of that matrix: the patch of one output position */
void lsr_conv2d_patch(float *dst, const float *in, const lsr_layer *l, int64_t r);

/* bf16 values: lsr_bf16_from_float and lsr_bf16_to_float (loss/bf16.h).  The
 * fast convolution path converts with the CPU's instruction, which also
 * flushes denormals to zero. */

void lsr_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                         const float *col, const float *weight, float *dcol, const lsr_layer *l,
                         int batch);

/* The same convolution by oneDNN (conv2d_onednn.c).  forward/backward
 * return -1 when oneDNN fails (the caller then uses the im2col path);
 * backward needs the forward of the same batch just before. */
lsr_status lsr_conv_fast_available(lsr_precision precision);
lsr_status lsr_conv_fast_create(lsr_conv_fast **c, lsr_precision precision);
void lsr_conv_fast_free(lsr_conv_fast *c);
/* Builds its kernels for batches of batch samples now, so that a failure is reported. */
lsr_status lsr_conv_fast_prepare(lsr_conv_fast *c, const lsr_layer *l, int batch);
int lsr_conv_fast_forward(lsr_conv_fast *c, float *out, const float *in, const float *weight,
                          const float *bias, const lsr_layer *l, int batch);
int lsr_conv_fast_backward(lsr_conv_fast *c, float *din, float *dweight, float *dbias,
                           const float *dout, const float *weight, const lsr_layer *l, int batch);

void lsr_maxpool_forward(float *out, int32_t *index, const float *in, const lsr_layer *l,
                         int batch);
void lsr_maxpool_backward(float *din, const float *dout, const int32_t *index, const lsr_layer *l,
                          int batch);

void lsr_relu_forward(float *out, const float *in, size_t n);
void lsr_relu_backward(float *din, const float *dout, const float *out, size_t n);

void lsr_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float rate,
                         int training, lsr_rng *rng);
void lsr_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n, float rate);

#endif
