#define _POSIX_C_SOURCE 200809L
/* The sequential model: spec parsing, shapes, parameter layout,
 * initialisation, and the forward and backward passes over the layers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

static const struct {
    const char *name, *spec; /* %d: the class count */
} presets[] = {
    {"cleverhans-cnn",
     "conv:64:8:2:same,relu,conv:128:6:2:valid,relu,conv:128:5:1:valid,relu,flatten,dense:%d"},
    {"mlp", "flatten,dense:256,relu,dense:128,relu,dense:%d"},
    {"lenet5", "conv:6:5:1:same,relu,maxpool:2:2,conv:16:5:1:valid,relu,maxpool:2:2,flatten,"
               "dense:120,relu,dense:84,relu,dense:%d"},
};

/* Parses "a:b:c" integer fields after the layer name; returns the count. */
static int parse_ints(const char *s, int *v, int max) {
    int n = 0;
    while (*s == ':' && n < max) {
        char *end;
        long x = strtol(s + 1, &end, 10);
        if (end == s + 1 || x <= 0 || x > (1 << 20)) return -1;
        v[n++] = (int)x;
        s = end;
    }
    return *s == '\0' || *s == ':' ? n : -1;
}

static lsr_status add_layer(lsr_model *m, const char *tok, lsr_shape *shape) {
    if (m->n_layers == LSR_MAX_LAYERS)
        return lsr__fail(LSR_ERROR_OPTION, "model spec: more than %d layers", LSR_MAX_LAYERS);
    lsr_layer *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof *l);
    l->in = *shape;
    int v[4];
    if (strncmp(tok, "conv:", 5) == 0) {
        const char *pad = strrchr(tok, ':');
        char head[64];
        size_t head_len = (size_t)(pad - tok);
        if (head_len >= sizeof head)
            return lsr__fail(LSR_ERROR_OPTION, "model spec: bad layer '%s'", tok);
        memcpy(head, tok, head_len);
        head[head_len] = '\0';
        if (parse_ints(head + 4, v, 3) != 3 ||
            (strcmp(pad + 1, "same") && strcmp(pad + 1, "valid")))
            return lsr__fail(LSR_ERROR_OPTION,
                             "model spec: '%s' is not conv:FILTERS:KERNEL:STRIDE:same|valid", tok);
        l->kind = LSR_LAYER_CONV2D;
        l->units = v[0];
        l->kernel = v[1];
        l->stride = v[2];
        l->same = strcmp(pad + 1, "same") == 0;
        if (l->same) {
            l->out.h = (shape->h + l->stride - 1) / l->stride;
            l->out.w = (shape->w + l->stride - 1) / l->stride;
            int pad_h = (l->out.h - 1) * l->stride + l->kernel - shape->h;
            int pad_w = (l->out.w - 1) * l->stride + l->kernel - shape->w;
            l->pad_top = pad_h > 0 ? pad_h / 2 : 0;
            l->pad_left = pad_w > 0 ? pad_w / 2 : 0;
        } else {
            if (l->kernel > shape->h || l->kernel > shape->w)
                return lsr__fail(LSR_ERROR_OPTION,
                                 "model spec: '%s' needs an input of at least %dx%d, it gets %dx%d",
                                 tok, l->kernel, l->kernel, shape->h, shape->w);
            l->out.h = (shape->h - l->kernel) / l->stride + 1;
            l->out.w = (shape->w - l->kernel) / l->stride + 1;
        }
        l->out.c = l->units;
        l->weight_count = (size_t)l->units * l->kernel * l->kernel * shape->c;
        l->bias_count = (size_t)l->units;
    } else if (strncmp(tok, "maxpool:", 8) == 0) {
        if (parse_ints(tok + 7, v, 2) != 2)
            return lsr__fail(LSR_ERROR_OPTION, "model spec: '%s' is not maxpool:KERNEL:STRIDE",
                             tok);
        l->kind = LSR_LAYER_MAXPOOL;
        l->kernel = v[0];
        l->stride = v[1];
        if (l->kernel > shape->h || l->kernel > shape->w)
            return lsr__fail(LSR_ERROR_OPTION, "model spec: '%s' is larger than its %dx%d input",
                             tok, shape->h, shape->w);
        l->out = (lsr_shape){(shape->h - l->kernel) / l->stride + 1,
                             (shape->w - l->kernel) / l->stride + 1, shape->c};
    } else if (strncmp(tok, "dense:", 6) == 0) {
        if (parse_ints(tok + 5, v, 1) != 1)
            return lsr__fail(LSR_ERROR_OPTION, "model spec: '%s' is not dense:UNITS", tok);
        l->kind = LSR_LAYER_DENSE;
        l->units = v[0];
        l->out = (lsr_shape){1, 1, v[0]};
        l->weight_count = (size_t)v[0] * lsr_shape_size(*shape);
        l->bias_count = (size_t)v[0];
    } else if (strcmp(tok, "relu") == 0) {
        l->kind = LSR_LAYER_RELU;
        l->out = *shape;
    } else if (strncmp(tok, "dropout:", 8) == 0) {
        char *end;
        double r = strtod(tok + 8, &end);
        if (end == tok + 8 || *end || !(r >= 0.0 && r < 1.0))
            return lsr__fail(LSR_ERROR_OPTION,
                             "model spec: '%s' is not dropout:RATE with RATE in [0, 1)", tok);
        l->kind = LSR_LAYER_DROPOUT;
        l->rate = (float)r;
        l->out = *shape;
    } else if (strcmp(tok, "flatten") == 0) {
        l->kind = LSR_LAYER_FLATTEN;
        l->out = (lsr_shape){1, 1, (int)lsr_shape_size(*shape)};
    } else {
        return lsr__fail(LSR_ERROR_OPTION,
                         "model spec: unknown layer '%s' (conv, maxpool, dense, relu, "
                         "dropout, flatten)",
                         tok);
    }
    if (lsr_shape_size(l->out) == 0 || lsr_shape_size(l->out) > ((size_t)1 << 26))
        return lsr__fail(LSR_ERROR_OPTION, "model spec: '%s' gives an output of %dx%dx%d", tok,
                         l->out.h, l->out.w, l->out.c);
    l->weight_offset = m->n_params;
    l->bias_offset = m->n_params + l->weight_count;
    m->n_params += l->weight_count + l->bias_count;
    *shape = l->out;
    m->n_layers++;
    return 0;
}

lsr_status lsr_model_init(lsr_model *m, const char *name_or_spec, lsr_shape input, int classes) {
    memset(m, 0, sizeof *m);
    m->input = input;
    m->classes = classes;
    /* cleverhans-cnn trains from cleverhans' own initialisation; the other
     * presets and spec strings from He's */
    m->default_init =
        strcmp(name_or_spec, "cleverhans-cnn") == 0 ? LSR_INIT_CLEVERHANS : LSR_INIT_HE;
    const char *spec = name_or_spec;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name_or_spec, presets[i].name) == 0) {
            snprintf(m->spec, sizeof m->spec, presets[i].spec, classes);
            spec = m->spec;
        }
    if (spec == name_or_spec) {
        if (strlen(spec) >= sizeof m->spec)
            return lsr__fail(LSR_ERROR_OPTION, "model spec: longer than %d characters",
                             LSR_SPEC_LEN - 1);
        snprintf(m->spec, sizeof m->spec, "%s", spec);
    }
    if (input.h < 1 || input.w < 1 || input.c < 1)
        return lsr__fail(LSR_ERROR_OPTION, "model: input shape %dx%dx%d", input.h, input.w,
                         input.c);
    if (classes < 1) return lsr__fail(LSR_ERROR_OPTION, "model: %d classes", classes);

    char buf[LSR_SPEC_LEN];
    snprintf(buf, sizeof buf, "%s", m->spec);
    lsr_shape shape = input;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (add_layer(m, tok, &shape)) return lsr__failed();
    if (m->n_layers == 0) return lsr__fail(LSR_ERROR_OPTION, "model spec '%s': no layers", m->spec);
    const lsr_layer *last = &m->layers[m->n_layers - 1];
    if (last->kind != LSR_LAYER_DENSE)
        return lsr__fail(LSR_ERROR_OPTION,
                         "model spec '%s': the last layer must be dense:%d (the logits)", m->spec,
                         classes);
    if (last->units != classes)
        return lsr__fail(LSR_ERROR_OPTION,
                         "model spec '%s' ends with dense:%d but the data has %d classes", m->spec,
                         last->units, classes);
    if (m->n_params > LSR_MAX_PARAMS)
        return lsr__fail(LSR_ERROR_OPTION,
                         "model spec '%s': %zu parameters, more than the %lld lsr takes", m->spec,
                         m->n_params, (long long)LSR_MAX_PARAMS);
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    if (!m->params || !m->grads) {
        lsr_model_clear(m);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "model: out of memory for %zu parameters",
                         m->n_params);
    }
    return 0;
}

void lsr_model_init_params(lsr_model *m, lsr_init init, lsr_rng *rng) {
    if (init == LSR_INIT_DEFAULT) { /* cleverhans-cnn's own, He for the rest */
        char cleverhans[LSR_SPEC_LEN];
        snprintf(cleverhans, sizeof cleverhans, presets[0].spec, m->classes);
        init = strcmp(m->spec, cleverhans) == 0 ? LSR_INIT_CLEVERHANS : LSR_INIT_HE;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        const double fan_out = (double)l->units, fan_in = (double)l->weight_count / fan_out;
        float *w = m->params + l->weight_offset;
        for (size_t j = 0; j < l->weight_count; j++) {
            double v;
            if (init == LSR_INIT_GLOROT)
                v = (2.0 * lsr_rng_uniform(rng) - 1.0) * sqrt(6.0 / (fan_in + fan_out));
            else
                v = lsr_rng_normal(rng) * sqrt((init == LSR_INIT_HE ? 2.0 : 1.0) / fan_in);
            w[j] = (float)v;
        }
        memset(m->params + l->bias_offset, 0, l->bias_count * sizeof(float));
    }
}

/* ReLU, dropout and flatten work in place: their output buffer (and its
 * gradient) is their input's. */
static int works_in_place(const lsr_layer *l) {
    return l->kind == LSR_LAYER_RELU || l->kind == LSR_LAYER_DROPOUT ||
           l->kind == LSR_LAYER_FLATTEN;
}

static void free_activations(lsr_model *m) {
    for (int i = 0; i <= LSR_MAX_LAYERS; i++) {
        const int shared = i > 0 && m->acts[i] && m->acts[i] == m->acts[i - 1];
        if (!shared) {
            free(m->acts[i]);
            free(m->dacts[i]);
        }
    }
    for (int i = LSR_MAX_LAYERS; i >= 0; i--)
        m->acts[i] = m->dacts[i] = NULL;
}

void lsr_model_forget_file_metadata(lsr_model *m) {
    free(m->file_metadata);
    m->file_metadata = NULL;
}

void lsr_model_clear(lsr_model *m) {
    free(m->params);
    free(m->grads);
    free_activations(m);
    for (int i = 0; i <= LSR_MAX_LAYERS; i++) {
        if (i < LSR_MAX_LAYERS) {
            free(m->pool_index[i]);
            free(m->dropout_mask[i]);
            free(m->col[i]);
        }
    }
    free(m->dcol);
    for (int i = 0; i < LSR_MAX_LAYERS; i++)
        lsr_conv_fast_free(m->conv_fast[i]);
    free(m->file_metadata);
    free(m->class_names);
    memset(m, 0, sizeof *m);
}

lsr_status lsr_model_set_precision(lsr_model *m, lsr_precision precision) {
    for (int i = 0; i < LSR_MAX_LAYERS; i++) {
        lsr_conv_fast_free(m->conv_fast[i]);
        m->conv_fast[i] = NULL;
    }
    if (precision == LSR_PRECISION_FP32) return 0;
    if (lsr_conv_fast_available(precision)) return lsr__failed();
    /* a convolution that is a dense layer stays one fp32 GEMM: it measured
     * no faster in bf16 (cleverhans-cnn's third layer) */
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LSR_LAYER_CONV2D && !lsr_conv2d_is_dense(&m->layers[i]) &&
            lsr_conv_fast_create(&m->conv_fast[i], precision))
            return lsr__failed();
    return 0;
}

lsr_status lsr_model_reserve(lsr_model *m, int batch) {
    for (int i = 0; i < m->n_layers; i++)
        if (m->conv_fast[i] && lsr_conv_fast_prepare(m->conv_fast[i], &m->layers[i], batch))
            return lsr__failed();
    if (batch <= m->batch_capacity) return 0;
    free_activations(m);
    for (int i = 0; i <= m->n_layers; i++) {
        if (i > 0 && works_in_place(&m->layers[i - 1])) {
            m->acts[i] = m->acts[i - 1];
            m->dacts[i] = m->dacts[i - 1];
            continue;
        }
        const size_t n = (size_t)batch *
                         lsr_shape_size(i < m->n_layers ? m->layers[i].in : m->layers[i - 1].out);
        m->acts[i] = malloc(n * sizeof(float));
        m->dacts[i] = malloc(n * sizeof(float));
        if (!m->acts[i] || !m->dacts[i]) goto oom;
    }
    size_t col = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        const size_t out = (size_t)batch * lsr_shape_size(l->out);
        if (l->kind == LSR_LAYER_MAXPOOL) {
            free(m->pool_index[i]);
            if (!(m->pool_index[i] = malloc(out * sizeof(int32_t)))) goto oom;
        }
        if (l->kind == LSR_LAYER_DROPOUT) {
            free(m->dropout_mask[i]);
            if (!(m->dropout_mask[i] = malloc(out))) goto oom;
        }
        if (l->kind == LSR_LAYER_CONV2D && !lsr_conv2d_is_dense(l)) {
            size_t need = (size_t)batch * l->out.h * l->out.w * l->kernel * l->kernel * l->in.c;
            if (need > col) col = need;
            free(m->col[i]);
            if (!(m->col[i] = malloc(need * sizeof(float)))) goto oom;
        }
    }
    free(m->dcol);
    m->dcol = col ? malloc(col * sizeof(float)) : NULL;
    if (col && !m->dcol) goto oom;
    m->batch_capacity = batch;
    return 0;
oom:
    m->batch_capacity = 0;
    return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "model: out of memory for batches of %d", batch);
}

const float *lsr_model_forward(lsr_model *m, const float *x, int batch, int training,
                               lsr_rng *rng) {
    memcpy(m->acts[0], x, (size_t)batch * lsr_shape_size(m->input) * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        const float *in = m->acts[i];
        float *out = m->acts[i + 1];
        const float *w = m->params + l->weight_offset, *b = m->params + l->bias_offset;
        const size_t n = (size_t)batch * lsr_shape_size(l->out);
        switch (l->kind) {
        case LSR_LAYER_DENSE:
            lsr_dense_forward(out, in, w, b, batch, (int)lsr_shape_size(l->in), l->units);
            break;
        case LSR_LAYER_CONV2D:
            m->conv_fast_used[i] =
                m->conv_fast[i] &&
                lsr_conv_fast_forward(m->conv_fast[i], out, in, w, b, l, batch) == 0;
            if (!m->conv_fast_used[i]) lsr_conv2d_forward(out, in, w, b, m->col[i], l, batch);
            break;
        case LSR_LAYER_MAXPOOL:
            lsr_maxpool_forward(out, m->pool_index[i], in, l, batch);
            break;
        case LSR_LAYER_RELU:
            lsr_relu_forward(out, in, n);
            break;
        case LSR_LAYER_DROPOUT:
            lsr_dropout_forward(out, m->dropout_mask[i], in, n, l->rate, training, rng);
            break;
        case LSR_LAYER_FLATTEN:
            break; /* in place: out is in (lsr_model_reserve) */
        }
    }
    m->forward_training = training;
    return m->acts[m->n_layers];
}

void lsr_model_backward(lsr_model *m, const float *dlogits, int batch, int what) {
    const int params = what & LSR_GRAD_PARAMS, want_input_grad = what & LSR_GRAD_INPUT;
    memcpy(m->dacts[m->n_layers], dlogits, (size_t)batch * m->classes * sizeof(float));
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const lsr_layer *l = &m->layers[i];
        const float *dout = m->dacts[i + 1];
        float *din = (i > 0 || want_input_grad) ? m->dacts[i] : NULL;
        const size_t n = (size_t)batch * lsr_shape_size(l->out);
        float *dw = params ? m->grads + l->weight_offset : NULL;
        float *db = params ? m->grads + l->bias_offset : NULL;
        const float *w = m->params + l->weight_offset;
        switch (l->kind) {
        case LSR_LAYER_DENSE:
            lsr_dense_backward(din, dw, db, dout, m->acts[i], w, batch, (int)lsr_shape_size(l->in),
                               l->units);
            break;
        case LSR_LAYER_CONV2D:
            if (m->conv_fast_used[i] &&
                lsr_conv_fast_backward(m->conv_fast[i], din, dw, db, dout, w, l, batch) == 0)
                break;
            if (m->conv_fast_used[i]) lsr_conv2d_im2col(m->col[i], m->acts[i], l, batch);
            lsr_conv2d_backward(din, dw, db, dout, lsr_conv2d_is_dense(l) ? m->acts[i] : m->col[i],
                                w, m->dcol, l, batch);
            break;
        case LSR_LAYER_MAXPOOL:
            if (din) lsr_maxpool_backward(din, dout, m->pool_index[i], l, batch);
            break;
        case LSR_LAYER_RELU:
            if (din) lsr_relu_backward(din, dout, m->acts[i + 1], n);
            break;
        case LSR_LAYER_DROPOUT:
            if (din)
                lsr_dropout_backward(din, dout, m->dropout_mask[i], n,
                                     m->forward_training ? l->rate : 0.0f);
            break;
        case LSR_LAYER_FLATTEN:
            break; /* in place: din is dout */
        }
    }
}

void lsr_model_zero_grads(lsr_model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

LSR_API lsr_status lsr_model_create(lsr_model **out, const char *name_or_spec, int h, int w, int c,
                                    int classes) {
    if (!out || !name_or_spec)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_model_create: out or name_or_spec is NULL");
    *out = NULL;
    lsr_model *m = calloc(1, sizeof *m);
    if (!m) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "model: out of memory");
    const lsr_shape input = {h, w, c};
    const lsr_status st = lsr_model_init(m, name_or_spec, input, classes);
    if (st != LSR_OK) {
        free(m);
        return st;
    }
    *out = m;
    return LSR_OK;
}

LSR_API void lsr_model_free(lsr_model *m) {
    if (!m) return;
    lsr_model_clear(m);
    free(m);
}

LSR_API int lsr_model_classes(const lsr_model *m) { return m->classes; }
LSR_API void lsr_model_input_shape(const lsr_model *m, int *h, int *w, int *c) {
    *h = m->input.h;
    *w = m->input.w;
    *c = m->input.c;
}
LSR_API lsr_status lsr_precision_available(lsr_precision precision) {
    if (precision == LSR_PRECISION_FP32) return LSR_OK;
    if (precision != LSR_PRECISION_BF16)
        return lsr__fail(LSR_ERROR_OPTION, "precision %d: not an lsr_precision", (int)precision);
    return lsr_conv_fast_available(precision);
}
LSR_API size_t lsr_model_param_count(const lsr_model *m) { return m->n_params; }
LSR_API const float *lsr_model_params(const lsr_model *m) { return m->params; }
LSR_API const char *lsr_model_spec(const lsr_model *m) { return m->spec; }
LSR_API double lsr_model_temperature(const lsr_model *m) { return m->temperature; }
LSR_API const lsr_train_settings *lsr_model_settings(const lsr_model *m) {
    return m->has_settings ? &m->settings : NULL;
}

LSR_API lsr_status lsr_model_set_temperature(lsr_model *m, double temperature) {
    if (!(temperature > 0) || !isfinite(temperature))
        return lsr__fail(LSR_ERROR_OPTION, "temperature = %g: must be finite and > 0", temperature);
    m->temperature = temperature;
    return LSR_OK;
}
