#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "modelfile.h"

#define LSR_FORMAT_NAME "lsr-model-1"
#define HEADER_MAX ((uint64_t)1 << 26)

void lsr_metadata_set(lsr_metadata *md, const char *key, const char *fmt, ...) {
    int i = 0;
    while (i < md->n && strcmp(md->key[i], key) != 0)
        i++;
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

void lsr_metadata_remove(lsr_metadata *md, const char *key) {
    for (int i = 0; i < md->n; i++)
        if (strcmp(md->key[i], key) == 0) {
            md->n--;
            memmove(md->key[i], md->key[i + 1], (size_t)(md->n - i) * LSR_META_KEY);
            memmove(md->value[i], md->value[i + 1], (size_t)(md->n - i) * LSR_META_VALUE);
            return;
        }
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

lsr_status lsr_safetensors_write(const char *path, const lsr_metadata *md, const lsr_tensor *t,
                                 int n) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < md->n; i++)
        cJSON_AddStringToObject(meta, md->key[i], md->value[i]);
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", t[i].dtype);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].dims; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + t[i].bytes)));
        offset += t[i].bytes;
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header)
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory for the header", path);
    const size_t header_len = strlen(header);
    const size_t padded =
        (header_len + 7) / 8 * 8; /* data aligned to 8 bytes, padded with spaces */
    lsr_atomic_file af;
    if (lsr_atomic_open(&af, path)) {
        free(header);
        return lsr__failed();
    }
    unsigned char len_le[8];
    for (int k = 0; k < 8; k++)
        len_le[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    fwrite(len_le, 1, 8, af.f);
    fwrite(header, 1, header_len, af.f);
    for (size_t p = header_len; p < padded; p++)
        fputc(' ', af.f);
    free(header);
    for (int i = 0; i < n; i++)
        fwrite(t[i].data, 1, t[i].bytes, af.f); /* little-endian hosts */
    return lsr_atomic_commit(&af);
}

lsr_status lsr_model_write(const lsr_model *m, lsr_metadata *md, const char *path) {
    lsr_metadata_set(md, "format", LSR_FORMAT_NAME);
    lsr_metadata_set(md, "architecture", "%s", m->spec);
    lsr_metadata_set(md, "classes", "%d", m->classes);
    lsr_metadata_set(md, "input_shape", "%d,%d,%d", m->input.h, m->input.w, m->input.c);
    lsr_tensor t[2 * LSR_MAX_LAYERS];
    float *permuted[LSR_MAX_LAYERS] = {0};
    char names[2 * LSR_MAX_LAYERS][32];
    int n = 0;
    lsr_status status = LSR_OK;
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        permuted[i] = malloc(l->weight_count * sizeof(float));
        if (!permuted[i]) {
            status = lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
            goto out;
        }
        for (size_t j = 0; j < l->weight_count; j++)
            permuted[i][torch_index(l, j)] = m->params[l->weight_offset + j];
        layer_name(names[n], sizeof names[n], i, "weight");
        t[n] = (lsr_tensor){names[n], "F32", 0, {0}, permuted[i], l->weight_count * sizeof(float)};
        t[n].dims = torch_weight_shape(l, t[n].shape);
        n++;
        layer_name(names[n], sizeof names[n], i, "bias");
        t[n] = (lsr_tensor){names[n],
                            "F32",
                            1,
                            {(int64_t)l->bias_count},
                            m->params + l->bias_offset,
                            l->bias_count * sizeof(float)};
        n++;
    }
    status = lsr_safetensors_write(path, md, t, n);
out:
    for (int i = 0; i < LSR_MAX_LAYERS; i++)
        free(permuted[i]);
    return status;
}

static lsr_status read_file(const char *path, unsigned char **data, size_t *size) {
    struct stat st;
    if (stat(path, &st) != 0) return lsr__fail(LSR_ERROR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return lsr__fail(LSR_ERROR_IO, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: %s", path, strerror(errno));
    *size = (size_t)st.st_size;
    *data = malloc(*size ? *size : 1);
    if (!*data) {
        fclose(f);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, *size);
    }
    size_t got = fread(*data, 1, *size, f);
    fclose(f);
    if (got != *size) {
        free(*data);
        return lsr__fail(LSR_ERROR_FORMAT, "%s: read %zu of %zu bytes", path, got, *size);
    }
    return 0;
}

void lsr_safetensors_close(lsr_safetensors *f) {
    cJSON_Delete((cJSON *)f->root);
    free(f->file);
    memset(f, 0, sizeof *f);
}

lsr_status lsr_safetensors_open(lsr_safetensors *f, const char *path, const char *format) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (read_file(path, &f->file, &f->size)) return lsr__failed();
    uint64_t header_len = 0;
    if (f->size < 8) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: truncated: %zu bytes, not a safetensors file", path,
                  f->size);
        goto fail;
    }
    for (int b = 0; b < 8; b++)
        header_len |= (uint64_t)f->file[b] << (8 * b);
    if (header_len < 2 || header_len > HEADER_MAX || header_len > f->size - 8) {
        lsr__fail(LSR_ERROR_FORMAT,
                  "%s: header length %llu does not fit a %zu-byte file: truncated or not "
                  "a safetensors file",
                  path, (unsigned long long)header_len, f->size);
        goto fail;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)f->file + 8, (size_t)header_len);
    f->root = root;
    if (!cJSON_IsObject(root)) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: the header is not a JSON object", path);
        goto fail;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!cJSON_IsObject(meta)) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: no __metadata__: not written by lsr", path);
        goto fail;
    }
    for (const cJSON *it = meta->child; it; it = it->next)
        if (cJSON_IsString(it) && it->string)
            lsr_metadata_set(&f->md, it->string, "%s", it->valuestring);
    const char *found = lsr_metadata_get(&f->md, "format");
    if (!found || strcmp(found, format) != 0) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: metadata format is '%s', expected '%s'", path,
                  found ? found : "", format);
        goto fail;
    }
    f->data = f->file + 8 + header_len;
    f->data_size = f->size - 8 - (size_t)header_len;
    return 0;
fail:
    lsr_safetensors_close(f);
    return lsr__failed();
}

lsr_status lsr_safetensors_get(lsr_safetensors *f, const char *name, const char *dtype,
                               const int64_t *shape, int dims, void *dst) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive((const cJSON *)f->root, name);
    const char *path = f->path;
    if (!cJSON_IsObject(t))
        return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s is missing", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, dtype) != 0)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s is not %s", path, name, dtype);
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) != dims)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s should have %d dimensions", path, name,
                         dims);
    size_t count = 1;
    for (int d = 0; d < dims; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)shape[d])
            return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s dimension %d should be %lld", path,
                             name, d, (long long)shape[d]);
        count *= (size_t)shape[d];
    }
    const size_t elem = strcmp(dtype, "I64") == 0 ? 8 : 4, bytes = count * elem;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    const cJSON *b =
        cJSON_IsArray(off) && cJSON_GetArraySize(off) == 2 ? cJSON_GetArrayItem(off, 0) : NULL;
    const cJSON *e = b ? cJSON_GetArrayItem(off, 1) : NULL;
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 ||
        e->valuedouble - b->valuedouble != (double)bytes ||
        b->valuedouble != (double)(size_t)b->valuedouble)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s has bad data_offsets", path, name);
    const size_t begin = (size_t)b->valuedouble, end = (size_t)e->valuedouble;
    if (end > f->data_size)
        return lsr__fail(LSR_ERROR_FORMAT,
                         "%s: truncated: tensor %s ends at byte %zu of a %zu-byte data section",
                         path, name, end, f->data_size);
    memcpy(dst, f->data + begin, bytes);
    if (elem == 4)
        for (size_t j = 0; j < count; j++)
            if (!isfinite(((float *)dst)[j]))
                return lsr__fail(LSR_ERROR_FORMAT, "%s: tensor %s holds a NaN or infinity", path,
                                 name);
    f->tensors_read++;
    f->bytes_read += bytes;
    return 0;
}

lsr_status lsr_safetensors_check_complete(const lsr_safetensors *f) {
    const int entries = cJSON_GetArraySize((const cJSON *)f->root) - 1; /* less __metadata__ */
    if (entries != f->tensors_read)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: %d tensors in the header, %d expected", f->path,
                         entries, f->tensors_read);
    if (f->bytes_read != f->data_size)
        return lsr__fail(LSR_ERROR_FORMAT, "%s: the data section has %zu bytes, the tensors %zu",
                         f->path, f->data_size, f->bytes_read);
    return 0;
}

static int parse_shape(const char *s, lsr_shape *out) {
    return sscanf(s, "%d,%d,%d", &out->h, &out->w, &out->c) == 3 && out->h > 0 && out->w > 0 &&
           out->c > 0 && (int64_t)out->h * out->w * out->c <= (1 << 26);
}

lsr_status lsr_model_from_metadata(lsr_model *m, const lsr_metadata *md, const char *path) {
    const char *arch = lsr_metadata_get(md, "architecture"),
               *classes = lsr_metadata_get(md, "classes");
    const char *shape = lsr_metadata_get(md, "input_shape");
    lsr_shape input;
    if (!arch || !classes || !shape || atoi(classes) < 1 || !parse_shape(shape, &input))
        return lsr__fail(LSR_ERROR_FORMAT,
                         "%s: metadata lacks a valid architecture, classes or input_shape", path);
    if (lsr_model_init(m, arch, input, atoi(classes)))
        return lsr__fail(LSR_ERROR_FORMAT, "%s: %.400s", path, lsr_last_error());
    return 0;
}

lsr_status lsr_model_read(lsr_model *m, lsr_metadata *md, const char *path) {
    lsr_safetensors *f = malloc(sizeof *f); /* 70 KB: not on the stack */
    float *tmp = NULL;
    if (!f) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (lsr_safetensors_open(f, path, LSR_FORMAT_NAME)) {
        free(f);
        return lsr__failed();
    }
    if (lsr_model_from_metadata(m, &f->md, path)) goto fail;
    for (int i = 0; i < m->n_layers; i++) {
        const lsr_layer *l = &m->layers[i];
        if (!l->weight_count) continue;
        int64_t wshape[4], bshape[1] = {(int64_t)l->bias_count};
        const int dims = torch_weight_shape(l, wshape);
        char name[64];
        free(tmp);
        tmp = malloc(l->weight_count * sizeof(float));
        if (!tmp) {
            lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
            goto fail;
        }
        layer_name(name, sizeof name, i, "weight");
        if (lsr_safetensors_get(f, name, "F32", wshape, dims, tmp)) goto fail;
        for (size_t j = 0; j < l->weight_count; j++)
            m->params[l->weight_offset + j] = tmp[torch_index(l, j)];
        layer_name(name, sizeof name, i, "bias");
        if (lsr_safetensors_get(f, name, "F32", bshape, 1, m->params + l->bias_offset)) goto fail;
    }
    if (lsr_safetensors_check_complete(f)) goto fail;
    free(tmp);
    if (md) *md = f->md;
    lsr_safetensors_close(f);
    free(f);
    return LSR_OK;
fail:
    free(tmp);
    lsr_safetensors_close(f);
    free(f);
    lsr_model_clear(m);
    return lsr__failed();
}
