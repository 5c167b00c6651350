/* 2-D convolution in bf16 with fp32 sums, by oneDNN.  The im2col path of
 * conv2d.c is the reference this one is tested against; this one exists for
 * speed: on a CPU with AVX512_BF16 it does about twice the multiply-adds per
 * cycle of fp32.  The same algorithm as the reference, in lower precision:
 *   forward          col = im2col(in) rounded to bf16 (kept for the backward),
 *                    out = col w^T + bias               (oneDNN matmul)
 *   weight gradient  dweight += dout^T col              (matmul, summing)
 *   input gradient   din from dout and w                (oneDNN convolution)
 * What is rounded to bf16 (nearest even): the layer's input patches, its
 * weights as each product reads them, and the incoming gradient.  What stays
 * fp32: the sums, the parameters, their gradients, the layer's output and
 * the gradient it passes down.
 *
 * Primitives are built for one batch size and rebuilt when it changes (the
 * last, shorter batch of an epoch; evaluation batches); oneDNN's own
 * primitive cache makes a rebuild to a shape seen before cheap. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../loss/loss_internal.h"
#include "net.h"

#ifndef LSR_HAVE_ONEDNN

lsr_status lsr_conv_fast_available(lsr_precision precision) {
    (void)precision;
    return lsr__fail(LSR_ERROR_UNSUPPORTED,
                     "bf16 convolutions need oneDNN, and this lsr was built without it");
}
lsr_status lsr_conv_fast_create(lsr_conv_fast **c, lsr_precision precision) {
    *c = NULL;
    return lsr_conv_fast_available(precision);
}
void lsr_conv_fast_free(lsr_conv_fast *c) { (void)c; }
lsr_status lsr_conv_fast_prepare(lsr_conv_fast *c, const lsr_layer *l, int batch) {
    (void)c, (void)l, (void)batch;
    return lsr__fail(LSR_ERROR_UNSUPPORTED, "this lsr was built without oneDNN");
}
int lsr_conv_fast_forward(lsr_conv_fast *c, float *out, const float *in, const float *weight,
                          const float *bias, const lsr_layer *l, int batch) {
    (void)c, (void)out, (void)in, (void)weight, (void)bias, (void)l, (void)batch;
    return -1;
}
int lsr_conv_fast_backward(lsr_conv_fast *c, float *din, float *dweight, float *dbias,
                           const float *dout, const float *weight, const lsr_layer *l, int batch) {
    (void)c, (void)din, (void)dweight, (void)dbias, (void)dout, (void)weight, (void)l, (void)batch;
    return -1;
}

#else

#include "onednn.h"

static dnnl_engine_t engine;
static dnnl_stream_t stream;

struct lsr_conv_fast {
    int batch;                    /* the primitives below are for this batch size; 0: none */
    dnnl_primitive_t fwd;         /* out = col w^T + bias (matmul) */
    dnnl_primitive_t bwd_weights; /* dweight += dout^T col (matmul, summing) */
    dnnl_primitive_t bwd_data;    /* din from dout and w (convolution) */
    dnnl_primitive_t to_bwd_weights;
    dnnl_memory_t col, w_low, bias, out;        /* forward */
    dnnl_memory_t dout_t, dweight;              /* backward weights: dout_low seen as (F, rows) */
    dnnl_memory_t dout_low, w_user, w_bwd, din; /* backward data */
    uint16_t *col_data, *w_low_data, *dout_low_data;
    int have_col; /* col holds the last forward's patches */
};

static void release(lsr_conv_fast *c) {
    dnnl_primitive_t *p[] = {&c->fwd, &c->bwd_weights, &c->bwd_data, &c->to_bwd_weights};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) {
        if (*p[i]) dnnl_primitive_destroy(*p[i]);
        *p[i] = NULL;
    }
    dnnl_memory_t *m[] = {&c->col,     &c->w_low,    &c->bias,   &c->out,   &c->dout_t,
                          &c->dweight, &c->dout_low, &c->w_user, &c->w_bwd, &c->din};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        if (*m[i]) dnnl_memory_destroy(*m[i]);
        *m[i] = NULL;
    }
    free(c->col_data);
    free(c->w_low_data);
    free(c->dout_low_data);
    c->col_data = c->w_low_data = c->dout_low_data = NULL;
    c->batch = 0;
    c->have_col = 0;
}

static int engine_made; /* 1: engine and stream exist; -1: they could not be made */

static void make_engine(void) {
    engine_made =
        dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
                dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success
            ? 1
            : -1;
}

/* The one CPU engine and stream, made once whichever thread asks first. */
static lsr_status init_engine(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_engine);
    if (engine_made < 0)
        return lsr__fail(LSR_ERROR_UNSUPPORTED, "oneDNN: cannot create a CPU engine");
    return LSR_OK;
}

dnnl_engine_t lsr__onednn_engine(void) { return init_engine() == LSR_OK ? engine : NULL; }

/* the im2col matrix of a batch: rows (output positions) by patch (K K C) */
static int rows_of(const lsr_layer *l, int batch) { return batch * l->out.h * l->out.w; }
static int patch_of(const lsr_layer *l) { return l->kernel * l->kernel * l->in.c; }

static int md2(dnnl_memory_desc_t *md, int64_t a, int64_t b, dnnl_data_type_t dt,
               dnnl_format_tag_t tag) {
    const dnnl_dims_t dims = {a, b};
    return dnnl_memory_desc_init_by_tag(md, 2, dims, dt, tag) != dnnl_success;
}

static int matmul(dnnl_primitive_t *p, const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b,
                  const dnnl_memory_desc_t *bias, const dnnl_memory_desc_t *dst, int accumulate) {
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int bad = dnnl_matmul_desc_init(&desc, a, b, bias, dst) != dnnl_success ||
              dnnl_primitive_attr_create(&attr) != dnnl_success;
    if (!bad && accumulate)
        bad = dnnl_post_ops_create(&ops) != dnnl_success ||
              dnnl_post_ops_append_sum(ops, 1.0f) != dnnl_success ||
              dnnl_primitive_attr_set_post_ops(attr, ops) != dnnl_success;
    if (!bad) bad = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) != dnnl_success;
    if (!bad) bad = dnnl_primitive_create(p, pd) != dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return bad ? -1 : 0;
}

static int wrap(dnnl_memory_t *m, const dnnl_memory_desc_t *md, void *data) {
    return dnnl_memory_create(m, md, engine, data ? data : DNNL_MEMORY_NONE) != dnnl_success;
}

// builds every primitive and buffer for batches of exactly batch samples
static lsr_status build(lsr_conv_fast *c, const lsr_layer *l, int batch) {
    release(c);
    const int F = l->units, rows = rows_of(l, batch), patch = patch_of(l);
    const int pad_bottom = (l->out.h - 1) * l->stride + l->kernel - l->in.h - l->pad_top;
    const int pad_right = (l->out.w - 1) * l->stride + l->kernel - l->in.w - l->pad_left;
    const dnnl_dims_t src_dims = {batch, l->in.c, l->in.h, l->in.w};
    const dnnl_dims_t w_dims = {F, l->in.c, l->kernel, l->kernel};
    const dnnl_dims_t dst_dims = {batch, F, l->out.h, l->out.w};
    const dnnl_dims_t strides = {l->stride, l->stride};
    const dnnl_dims_t pad_l = {l->pad_top, l->pad_left};
    const dnnl_dims_t pad_r = {pad_bottom > 0 ? pad_bottom : 0, pad_right > 0 ? pad_right : 0};
    dnnl_memory_desc_t col, w_low, bias, out, dout_t, dweight;
    dnnl_memory_desc_t src4, w_user4, w_any4, dst4, dst4_low;
    dnnl_primitive_desc_t fwd_hint = NULL, bwd_data_pd = NULL, reorder_pd = NULL;
    dnnl_convolution_desc_t desc;
    const char *what = "allocate its buffers";
    c->col_data = malloc((size_t)rows * patch * sizeof(uint16_t));
    c->w_low_data = malloc((size_t)F * patch * sizeof(uint16_t));
    c->dout_low_data = malloc((size_t)rows * F * sizeof(uint16_t));
    if (!c->col_data || !c->w_low_data || !c->dout_low_data) goto fail;
    what = "describe the convolution";
    if (md2(&col, rows, patch, dnnl_bf16, dnnl_ab) ||
        md2(&w_low, patch, F, dnnl_bf16, dnnl_ba) || /* w (F, patch) as its transpose */
        md2(&bias, 1, F, dnnl_f32, dnnl_ab) || md2(&out, rows, F, dnnl_f32, dnnl_ab) ||
        md2(&dout_t, F, rows, dnnl_bf16, dnnl_ba) || /* dout (rows, F), transposed */
        md2(&dweight, F, patch, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&src4, 4, src_dims, dnnl_f32, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&w_user4, 4, w_dims, dnnl_f32, dnnl_ohwi) ||
        dnnl_memory_desc_init_by_tag(&w_any4, 4, w_dims, dnnl_bf16, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dst4, 4, dst_dims, dnnl_f32, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&dst4_low, 4, dst_dims, dnnl_bf16, dnnl_nhwc))
        goto fail;
    what = "create the forward product";
    if (matmul(&c->fwd, &col, &w_low, &bias, &out, 0)) goto fail;
    what = "create the weight-gradient product";
    if (matmul(&c->bwd_weights, &dout_t, &col, NULL, &dweight, 1)) goto fail;
    what = "create the backward-data convolution";
    dnnl_memory_desc_t src4_low = src4;
    src4_low.data_type = dnnl_bf16;
    if (dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct,
                                           &src4_low, &w_any4, NULL, &dst4, strides, pad_l,
                                           pad_r) ||
        dnnl_primitive_desc_create(&fwd_hint, &desc, NULL, engine, NULL) ||
        dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &src4, &w_any4,
                                                 &dst4_low, strides, pad_l, pad_r) ||
        dnnl_primitive_desc_create(&bwd_data_pd, &desc, NULL, engine, fwd_hint) ||
        dnnl_primitive_create(&c->bwd_data, bwd_data_pd))
        goto fail;
    const dnnl_memory_desc_t *w_bwd =
        dnnl_primitive_desc_query_md(bwd_data_pd, dnnl_query_weights_md, 0);
    what = "create the weight reorder";
    if (dnnl_reorder_primitive_desc_create(&reorder_pd, &w_user4, engine, w_bwd, engine, NULL) ||
        dnnl_primitive_create(&c->to_bwd_weights, reorder_pd))
        goto fail;
    what = "allocate its buffers";
    if (wrap(&c->col, &col, c->col_data) || wrap(&c->w_low, &w_low, c->w_low_data) ||
        wrap(&c->bias, &bias, NULL) || wrap(&c->out, &out, NULL) ||
        wrap(&c->dout_t, &dout_t, c->dout_low_data) || wrap(&c->dweight, &dweight, NULL) ||
        wrap(&c->dout_low, &dst4_low, c->dout_low_data) || wrap(&c->w_user, &w_user4, NULL) ||
        wrap(&c->din, &src4, NULL) ||
        dnnl_memory_create(&c->w_bwd, w_bwd, engine, DNNL_MEMORY_ALLOCATE))
        goto fail;
    dnnl_primitive_desc_destroy(fwd_hint);
    dnnl_primitive_desc_destroy(bwd_data_pd);
    dnnl_primitive_desc_destroy(reorder_pd);
    c->batch = batch;
    return 0;
fail:
    if (fwd_hint) dnnl_primitive_desc_destroy(fwd_hint);
    if (bwd_data_pd) dnnl_primitive_desc_destroy(bwd_data_pd);
    if (reorder_pd) dnnl_primitive_desc_destroy(reorder_pd);
    release(c);
    return lsr__fail(LSR_ERROR_UNSUPPORTED,
                     "oneDNN: cannot %s (bf16, %dx%dx%d -> %d filters %dx%d stride %d, batch %d)",
                     what, l->in.h, l->in.w, l->in.c, F, l->kernel, l->kernel, l->stride, batch);
}

lsr_status lsr_conv_fast_prepare(lsr_conv_fast *c, const lsr_layer *l, int batch) {
    return c->batch == batch ? 0 : build(c, l, batch);
}

lsr_status lsr_conv_fast_create(lsr_conv_fast **out, lsr_precision precision) {
    *out = NULL;
    if (lsr_conv_fast_available(precision)) return lsr__failed();
    lsr_conv_fast *c = calloc(1, sizeof *c);
    if (!c) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory");
    *out = c;
    return 0;
}

lsr_status lsr_conv_fast_available(lsr_precision precision) {
    if (precision != LSR_PRECISION_BF16)
        return lsr__fail(LSR_ERROR_UNSUPPORTED, "oneDNN convolutions are bf16 only");
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(); /* sets of bits */
    if ((isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) !=
            (unsigned)dnnl_cpu_isa_avx512_core_bf16 ||
        !lsr__cpu_has_avx512_bf16())
        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                         "bf16 convolutions need a CPU with AVX512_BF16, and this one has not");
    return init_engine();
}

void lsr_conv_fast_free(lsr_conv_fast *c) {
    if (!c) return;
    release(c);
    free(c);
}

static int run(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args) {
    return dnnl_primitive_execute(p, stream, n, args) == dnnl_success &&
                   dnnl_stream_wait(stream) == dnnl_success
               ? 0
               : -1;
}

/* col = im2col(in) rounded: each patch is built in fp32 (conv2d.c's
 * lsr_conv2d_patch) in a per-thread row, then rounded into col; -1 when
 * out of memory */
static int im2col_bf16(uint16_t *col, const float *in, const lsr_layer *l, int batch) {
    const size_t patch = (size_t)patch_of(l);
    const int64_t rows = rows_of(l, batch);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *row = malloc(patch * sizeof(float));
        failed = !row;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!row) continue;
            lsr_conv2d_patch(row, in, l, r);
            lsr_round_bf16(col + (size_t)r * patch, row, patch);
        }
        free(row);
    }
    return failed ? -1 : 0;
}

static void round_all(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i += 4096)
        lsr_round_bf16(dst + i, src + i, n - i < 4096 ? n - i : 4096);
}

int lsr_conv_fast_forward(lsr_conv_fast *c, float *out, const float *in, const float *weight,
                          const float *bias, const lsr_layer *l, int batch) {
    c->have_col = 0;
    if (c->batch != batch && build(c, l, batch)) return -1;
    if (im2col_bf16(c->col_data, in, l, batch)) return -1;
    round_all(c->w_low_data, weight, (size_t)l->units * patch_of(l));
    dnnl_memory_set_data_handle(c->bias, (void *)bias);
    dnnl_memory_set_data_handle(c->out, out);
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, c->col},
                                    {DNNL_ARG_WEIGHTS, c->w_low},
                                    {DNNL_ARG_BIAS, c->bias},
                                    {DNNL_ARG_DST, c->out}};
    if (run(c->fwd, 4, args)) return -1;
    c->have_col = 1;
    return 0;
}

int lsr_conv_fast_backward(lsr_conv_fast *c, float *din, float *dweight, float *dbias,
                           const float *dout, const float *weight, const lsr_layer *l, int batch) {
    if (c->batch != batch || !c->have_col) return -1;
    const int F = l->units, rows = rows_of(l, batch);
    round_all(c->dout_low_data, dout, (size_t)rows * F);
    if (din) { /* first: it may fail, and nothing has been added to the gradients yet */
        dnnl_memory_set_data_handle(c->w_user, (void *)weight);
        dnnl_memory_set_data_handle(c->din, din);
        const dnnl_exec_arg_t reorder_args[] = {{DNNL_ARG_FROM, c->w_user},
                                                {DNNL_ARG_TO, c->w_bwd}};
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, c->dout_low},
                                        {DNNL_ARG_WEIGHTS, c->w_bwd},
                                        {DNNL_ARG_DIFF_SRC, c->din}};
        if (run(c->to_bwd_weights, 2, reorder_args) || run(c->bwd_data, 3, args)) return -1;
    }
    if (dweight) {
        dnnl_memory_set_data_handle(c->dweight, dweight);
        const dnnl_exec_arg_t args[] = {
            {DNNL_ARG_SRC, c->dout_t}, {DNNL_ARG_WEIGHTS, c->col}, {DNNL_ARG_DST, c->dweight}};
        if (run(c->bwd_weights, 3, args)) return -2;
        lsr_bias_grad(dbias, dout, rows, F);
    }
    return 0;
}

#endif
