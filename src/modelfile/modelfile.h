/* Model files in safetensors: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * data.  lsr writes F32 tensors in PyTorch's layouts (conv weights
 * (F, C, K, K), dense weights (out, in) with inputs in (C, H, W) order) and
 * puts the architecture, the class count, the input shape and the training
 * settings in "__metadata__".  See docs/model-format.md. */
#ifndef LSR_MODELFILE_H
#define LSR_MODELFILE_H

#include "../net/net.h"

#define LSR_META_MAX 48
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

/* Writes atomically: the file appears complete or not at all. The keys
 * format, architecture, classes and input_shape are set from the model. */
int lsr_model_save(const lsr_model *m, lsr_metadata *md, const char *path, char *err);

/* Reads and validates a file written by lsr_model_save: the header, every
 * tensor's dtype, shape and byte range, and the file's length; builds the
 * model it describes.  md may be NULL. */
int lsr_model_load(lsr_model *m, lsr_metadata *md, const char *path, char *err);

#endif
