/* Model files in safetensors: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * data.  lsr writes F32 tensors in PyTorch's layouts (conv weights
 * (F, C, K, K), dense weights (out, in) with inputs in (C, H, W) order) and
 * puts the architecture, the class count, the input shape and the training
 * settings in "__metadata__".  See docs/model-format.md. */
#ifndef LSR_MODELFILE_H
#define LSR_MODELFILE_H

#include "../net/net.h"

#define LSR_META_MAX 64
#define LSR_META_KEY 64
#define LSR_META_VALUE 1024

/* String key/value pairs for "__metadata__". */
typedef struct lsr_metadata {
    int n;
    char key[LSR_META_MAX][LSR_META_KEY];
    char value[LSR_META_MAX][LSR_META_VALUE];
} lsr_metadata;

void lsr_metadata_set(lsr_metadata *md, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *lsr_metadata_get(const lsr_metadata *md, const char *key); /* NULL if absent */
void lsr_metadata_remove(lsr_metadata *md, const char *key);           /* if present */

/* One tensor to write: dtype "F32" or "I64", up to 4 dimensions. */
typedef struct lsr_tensor {
    const char *name;
    const char *dtype;
    int dims;
    int64_t shape[4];
    const void *data;
    size_t bytes;
} lsr_tensor;

/* Writes a safetensors file atomically (temporary file, fsync, rename). */
lsr_status lsr_safetensors_write(const char *path, const lsr_metadata *md, const lsr_tensor *t,
                                 int n);

/* Reading: a file's header and metadata (whose "format" must be format),
 * then its tensors one by one, each checked for dtype, shape, byte range and
 * (F32) finiteness; check_complete refuses extra tensors or bytes. */
typedef struct lsr_safetensors {
    const char *path;
    unsigned char *file;
    size_t size;
    void *root; /* the parsed header */
    const unsigned char *data;
    size_t data_size;
    lsr_metadata md;
    int tensors_read;
    size_t bytes_read;
} lsr_safetensors;
lsr_status lsr_safetensors_open(lsr_safetensors *f, const char *path, const char *format);
lsr_status lsr_safetensors_get(lsr_safetensors *f, const char *name, const char *dtype,
                               const int64_t *shape, int dims, void *dst);
lsr_status lsr_safetensors_check_complete(const lsr_safetensors *f);
void lsr_safetensors_close(lsr_safetensors *f);
/* Builds the (uninitialised) model that metadata's architecture,
 * classes and input_shape describe. */
lsr_status lsr_model_from_metadata(lsr_model *m, const lsr_metadata *md, const char *path);

/* Writes m's parameters, architecture, class count and input shape with the
 * other entries of md, atomically. */
lsr_status lsr_model_write(const lsr_model *m, lsr_metadata *md, const char *path);
/* Reads a file lsr_model_write wrote into m (every tensor's dtype, shape and
 * byte range checked); md (may be NULL) gets its metadata. */
lsr_status lsr_model_read(lsr_model *m, lsr_metadata *md, const char *path);

#endif
