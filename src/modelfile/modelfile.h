/* Model files in safetensors: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * data.  lsr writes F32 tensors in PyTorch's layouts (conv weights
 * (F, C, K, K), dense weights (out, in) with inputs in (C, H, W) order) and
 * puts the architecture, the class count, the input shape and the training
 * settings in "__metadata__".  See docs/model-format.md. */
#ifndef LSR_MODELFILE_H
#define LSR_MODELFILE_H

#include "../net/net.h"
#include "../train/train.h"

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
int lsr_safetensors_write(const char *path, const lsr_metadata *md, const lsr_tensor *t, int n,
                          char *err);

/* Writes atomically: the file appears complete or not at all. The keys
 * format, architecture, classes and input_shape are set from the model. */
int lsr_model_save(const lsr_model *m, lsr_metadata *md, const char *path, char *err);

/* Reading: a file's header and metadata (whose "format" must be format),
 * then its tensors one by one, each checked for dtype, shape, byte range and
 * (F32) finiteness; check_complete refuses extra tensors or bytes. */
typedef struct lsr_safetensors {
    const char *path;
    unsigned char *file;
    size_t size;
    void *root;               /* the parsed header */
    const unsigned char *data;
    size_t data_size;
    lsr_metadata md;
    int tensors_read;
    size_t bytes_read;
} lsr_safetensors;
int lsr_safetensors_open(lsr_safetensors *f, const char *path, const char *format, char *err);
int lsr_safetensors_get(lsr_safetensors *f, const char *name, const char *dtype,
                        const int64_t *shape, int dims, void *dst, char *err);
int lsr_safetensors_check_complete(const lsr_safetensors *f, char *err);
void lsr_safetensors_close(lsr_safetensors *f);
/* Builds the (uninitialised) model that metadata's architecture,
 * classes and input_shape describe. */
int lsr_model_from_metadata(lsr_model *m, const lsr_metadata *md, const char *path, char *err);

/* Reads and validates a file written by lsr_model_save: the header, every
 * tensor's dtype, shape and byte range, and the file's length; builds the
 * model it describes.  md may be NULL. */
int lsr_model_load(lsr_model *m, lsr_metadata *md, const char *path, char *err);

/* Writes a checkpoint of a run: m's parameters, st, and the run's command
 * line (a JSON array of its arguments), atomically. */
int lsr_checkpoint_save(const char *path, const lsr_model *m, const lsr_train_state *st,
                        const char *command_json, char *err);
/* Reads a checkpoint: with n_samples < 0 only the command line (m is built
 * but not filled); otherwise also m's parameters and st, whose optimizer is
 * set up with opt_settings and whose order must hold n_samples entries.
 * *command_json is malloc'd. */
int lsr_checkpoint_load(const char *path, lsr_model *m, lsr_train_state *st,
                        const lsr_optimizer_settings *opt_settings, int64_t n_samples,
                        char **command_json, char *err);

/* Writes a checkpoint of a run: m's parameters, st, and the run's command
 * line (a JSON array of its arguments), atomically. */
int lsr_checkpoint_save(const char *path, const lsr_model *m, const lsr_train_state *st,
                        const char *command_json, char *err);
/* Reads a checkpoint: with n_samples < 0 only the command line (m is built
 * but not filled); otherwise also m's parameters and st, whose optimizer is
 * set up with opt_settings and whose order must hold n_samples entries.
 * *command_json is malloc'd. */
int lsr_checkpoint_load(const char *path, lsr_model *m, lsr_train_state *st,
                        const lsr_optimizer_settings *opt_settings, int64_t n_samples,
                        char **command_json, char *err);


#endif
