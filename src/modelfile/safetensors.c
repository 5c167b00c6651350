#include <cjson/cJSON.h>
#include <math.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "modelfile.h"

#define LSR_FORMAT_NAME "lsr-model-1"
#define HEADER_MAX ((uint64_t)1 << 26)

void lsr_metadata_set(lsr_metadata *md, const char *key, const char *fmt, ...) {
    int i = 0;
    while (i < md->n && strcmp(md->key[i], key) != 0) i++;
    if (i == md->n) {
        if (md->n == LSR_META_MAX) return;
        md->n++;
        snprintf(md->key[i], LSR_META_KEY, "%s", key);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(md->value[i], LSR_META_VALUE, fmt, ap);
    va_end(ap);
}

const char *lsr_metadata_get(const lsr_metadata *md, const char *key) {
    for (int i = 0; i < md->n; i++)
        if (strcmp(md->key[i], key) == 0) return md->value[i];
    return NULL;
}

/* The PyTorch shape of a layer's weight, and whether its layout differs. */
static int torch_weight_shape(const lsr_layer *l, int64_t shape[4]) {
    if (l->kind == LSR_LAYER_CONV2D) {
        shape[0] = l->units;
        shape[1] = l->in.c;
        shape[2] = shape[3] = l->kernel;
        return 4;
    }
    shape[0] = l->units;
    shape[1] = (int64_t)lsr_shape_size(l->in);
    return 2;
}

/* Index in the PyTorch-layout weight of element j of ours, (F,K,K,C) or
 * (O, H*W*C), to (F,C,K,K) or (O, C*H*W). */
static size_t torch_index(const lsr_layer *l, size_t j) {
    const size_t C = (size_t)l->in.c;
    if (l->kind == LSR_LAYER_CONV2D) {
        const size_t K = (size_t)l->kernel, per = K * K * C;
        const size_t f = j / per, r = j % per, ky = r / (K * C), kx = r / C % K, c = r % C;
        return ((f * C + c) * K + ky) * K + kx;
    }
    const size_t hw = (size_t)l->in.h * (size_t)l->in.w, in = hw * C;
    const size_t o = j / in, r = j % in, pos = r / C, c = r % C;
    return o * in + c * hw + pos;
}

static void layer_name(char *buf, size_t size, int i, const char *what) {
    snprintf(buf, size, "layers.%d.%s", i, what);
}

int lsr_model_save(const lsr_model *m, lsr_metadata *md, const char *path, char *err) {
    lsr_metadata_set(md, "format", LSR_FORMAT_NAME);
    lsr_metadata_set(md, "architecture", "%s", m->spec);
    lsr_metadata_set(md, "classes", "%d", m->classes);
    lsr_metadata_set(md, "input_shape", "%d,%d,%d", m->input.h, m->input.w, m->input.c);

    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < md->n; i++) cJSON_AddStringToObject(meta, md->key[i], md->value[i]);
    size_t offset = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        for (int part = 0; part < 2; part++) {
            int64_t shape[4] = {(int64_t)l->bias_count};
            int dims = part == 0 ? torch_weight_shape(l, shape) : 1;
            const size_t bytes = (part == 0 ? l->weight_count : l->bias_count) * sizeof(float);
            char name[64];
            layer_name(name, sizeof name, i, part == 0 ? "weight" : "bias");
            cJSON *t = cJSON_AddObjectToObject(root, name);
            cJSON_AddStringToObject(t, "dtype", "F32");
            cJSON *sh = cJSON_AddArrayToObject(t, "shape");
            for (int d = 0; d < dims; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
            cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + bytes)));
            offset += bytes;
        }
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header) return lsr_fail(err, "%s: out of memory for the header", path);
    size_t header_len = strlen(header);
    size_t padded = (header_len + 7) / 8 * 8; /* data aligned to 8 bytes, padded with spaces */

    lsr_atomic_file af;
    if (lsr_atomic_open(&af, path, err)) {
        free(header);
        return -1;
    }
    unsigned char len_le[8];
    for (int b = 0; b < 8; b++) len_le[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    fwrite(len_le, 1, 8, af.f);
    fwrite(header, 1, header_len, af.f);
    for (size_t p = header_len; p < padded; p++) fputc(' ', af.f);
    free(header);
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        float *w = malloc(l->weight_count * sizeof(float));
        if (!w) {
            lsr_atomic_abort(&af);
            return lsr_fail(err, "%s: out of memory", path);
        }
        for (size_t j = 0; j < l->weight_count; j++)
            w[torch_index(l, j)] = m->params[l->weight_offset + j];
        fwrite(w, sizeof(float), l->weight_count, af.f); /* little-endian hosts only */
        free(w);
        fwrite(m->params + l->bias_offset, sizeof(float), l->bias_count, af.f);
    }
    return lsr_atomic_commit(&af, err);
}

static int read_file(const char *path, unsigned char **data, size_t *size, char *err) {
    struct stat st;
    if (stat(path, &st) != 0) return lsr_fail(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return lsr_fail(err, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return lsr_fail(err, "%s: %s", path, strerror(errno));
    *size = (size_t)st.st_size;
    *data = malloc(*size ? *size : 1);
    if (!*data) {
        fclose(f);
        return lsr_fail(err, "%s: out of memory for %zu bytes", path, *size);
    }
    size_t got = fread(*data, 1, *size, f);
    fclose(f);
    if (got != *size) {
        free(*data);
        return lsr_fail(err, "%s: read %zu of %zu bytes", path, got, *size);
    }
    return 0;
}

static int parse_shape(const char *s, lsr_shape *out) {
    return sscanf(s, "%d,%d,%d", &out->h, &out->w, &out->c) == 3 && out->h > 0 && out->w > 0 &&
           out->c > 0 && (int64_t)out->h * out->w * out->c <= (1 << 26);
}

/* Checks one tensor's entry and copies its data into dst (count floats). */
static int load_tensor(const cJSON *root, const char *name, const int64_t *shape, int dims,
                       const unsigned char *data, size_t data_size, float *dst, size_t count,
                       const char *path, size_t *used, char *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsObject(t)) return lsr_fail(err, "%s: tensor %s is missing", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "F32") != 0)
        return lsr_fail(err, "%s: tensor %s is not F32", path, name);
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) != dims)
        return lsr_fail(err, "%s: tensor %s should have %d dimensions", path, name, dims);
    for (int d = 0; d < dims; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)shape[d])
            return lsr_fail(err, "%s: tensor %s dimension %d should be %lld for the architecture",
                            path, name, d, (long long)shape[d]);
    }
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    const cJSON *b = cJSON_IsArray(off) && cJSON_GetArraySize(off) == 2 ? cJSON_GetArrayItem(off, 0) : NULL;
    const cJSON *e = b ? cJSON_GetArrayItem(off, 1) : NULL;
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 ||
        e->valuedouble - b->valuedouble != (double)(count * sizeof(float)) ||
        b->valuedouble != (double)(size_t)b->valuedouble)
        return lsr_fail(err, "%s: tensor %s has bad data_offsets", path, name);
    const size_t begin = (size_t)b->valuedouble, end = (size_t)e->valuedouble;
    if (end > data_size)
        return lsr_fail(err, "%s: truncated: tensor %s ends at byte %zu of a %zu-byte data section",
                        path, name, end, data_size);
    memcpy(dst, data + begin, count * sizeof(float));
    for (size_t j = 0; j < count; j++)
        if (!isfinite(dst[j])) return lsr_fail(err, "%s: tensor %s holds a NaN or infinity", path, name);
    *used += count * sizeof(float);
    return 0;
}

int lsr_model_load(lsr_model *m, lsr_metadata *md_out, const char *path, char *err) {
    memset(m, 0, sizeof *m);
    unsigned char *file = NULL;
    size_t size = 0;
    if (read_file(path, &file, &size, err)) return -1;
    cJSON *root = NULL;
    lsr_metadata md = {0};
    float *tmp = NULL;
    uint64_t header_len = 0;
    if (size < 8) {
        lsr_fail(err, "%s: truncated: %zu bytes, not a safetensors file", path, size);
        goto fail;
    }
    for (int b = 0; b < 8; b++) header_len |= (uint64_t)file[b] << (8 * b);
    if (header_len < 2 || header_len > HEADER_MAX || header_len > size - 8) {
        lsr_fail(err, "%s: header length %llu does not fit a %zu-byte file: truncated or not "
                      "a safetensors file", path, (unsigned long long)header_len, size);
        goto fail;
    }
    root = cJSON_ParseWithLength((const char *)file + 8, (size_t)header_len);
    if (!cJSON_IsObject(root)) {
        lsr_fail(err, "%s: the header is not a JSON object", path);
        goto fail;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!cJSON_IsObject(meta)) {
        lsr_fail(err, "%s: no __metadata__: not written by lsr", path);
        goto fail;
    }
    for (const cJSON *it = meta->child; it; it = it->next)
        if (cJSON_IsString(it) && it->string) lsr_metadata_set(&md, it->string, "%s", it->valuestring);
    const char *format = lsr_metadata_get(&md, "format"), *arch = lsr_metadata_get(&md, "architecture");
    const char *classes = lsr_metadata_get(&md, "classes"), *shape = lsr_metadata_get(&md, "input_shape");
    lsr_shape input;
    if (!format || strcmp(format, LSR_FORMAT_NAME) != 0) {
        lsr_fail(err, "%s: metadata format is '%s', expected '%s'", path, format ? format : "", LSR_FORMAT_NAME);
        goto fail;
    }
    if (!arch || !classes || !shape || atoi(classes) < 1 || !parse_shape(shape, &input)) {
        lsr_fail(err, "%s: metadata lacks a valid architecture, classes or input_shape", path);
        goto fail;
    }
    if (lsr_model_init(m, arch, input, atoi(classes), err)) {
        char inner[LSR_ERR_LEN];
        snprintf(inner, sizeof inner, "%s", err);
        lsr_fail(err, "%s: %s", path, inner);
        goto fail;
    }
    const unsigned char *data = file + 8 + header_len;
    const size_t data_size = size - 8 - (size_t)header_len;
    size_t used = 0;
    int expected = 1; /* __metadata__ */
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        int64_t wshape[4], bshape[1] = {(int64_t)l->bias_count};
        int dims = torch_weight_shape(l, wshape);
        char name[64];
        free(tmp);
        tmp = malloc(l->weight_count * sizeof(float));
        if (!tmp) {
            lsr_fail(err, "%s: out of memory", path);
            goto fail;
        }
        layer_name(name, sizeof name, i, "weight");
        if (load_tensor(root, name, wshape, dims, data, data_size, tmp, l->weight_count, path, &used, err))
            goto fail;
        for (size_t j = 0; j < l->weight_count; j++)
            m->params[l->weight_offset + j] = tmp[torch_index(l, j)];
        layer_name(name, sizeof name, i, "bias");
        if (load_tensor(root, name, bshape, 1, data, data_size, m->params + l->bias_offset,
                        l->bias_count, path, &used, err))
            goto fail;
        expected += 2;
    }
    if (cJSON_GetArraySize(root) != expected) {
        lsr_fail(err, "%s: %d entries in the header, the architecture has %d", path,
                 cJSON_GetArraySize(root), expected);
        goto fail;
    }
    if (used != data_size) {
        lsr_fail(err, "%s: the data section has %zu bytes, the tensors %zu", path, data_size, used);
        goto fail;
    }
    free(tmp);
    cJSON_Delete(root);
    free(file);
    if (md_out) *md_out = md;
    return 0;
fail:
    free(tmp);
    cJSON_Delete(root);
    free(file);
    lsr_model_free(m);
    return -1;
}
