#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset.h"

#define IDX_MAX_VALUES ((int64_t)1 << 34)

/* Reads exactly n bytes or explains why not. */
static lsr_status read_exact(gzFile f, void *buf, int64_t n, const char *path, const char *what) {
    unsigned char *p = buf;
    int64_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1 << 30) ? (1u << 30) : (unsigned)(n - done);
        int got = gzread(f, p + done, chunk);
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            return lsr__fail(LSR_ERROR_IO, "%s: cannot read %s: %s", path, what, msg);
        }
        if (got == 0)
            return lsr__fail(LSR_ERROR_FORMAT,
                             "%s: truncated: %s needs %lld bytes, the file ends after %lld", path,
                             what, (long long)n, (long long)done);
        done += got;
    }
    return 0;
}

/* Reads exactly n bytes into a buffer that grows with what actually
 * arrives, so that a header announcing more data than the file holds costs
 * no more memory than the file. */
static lsr_status read_all(gzFile f, unsigned char **out, int64_t n, const char *path,
                           const char *what) {
    int64_t have = 0, capacity = n < (1 << 24) ? n : (1 << 24);
    unsigned char *buf = malloc((size_t)(capacity ? capacity : 1));
    if (!buf) return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory for %s", path, what);
    while (have < n) {
        if (have == capacity) {
            capacity = capacity * 2 < n ? capacity * 2 : n;
            unsigned char *grown = realloc(buf, (size_t)capacity);
            if (!grown) {
                free(buf);
                return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory for %s", path, what);
            }
            buf = grown;
        }
        const int64_t want = capacity - have;
        if (read_exact(f, buf + have, want, path, what)) {
            /* say how much the header announced, not how much this chunk wanted */
            free(buf);
            if (strstr(lsr_last_error(), "truncated"))
                lsr__fail(LSR_ERROR_FORMAT,
                          "%s: truncated: %s needs %lld bytes, the file ends before", path, what,
                          (long long)n);
            return lsr__failed();
        }
        have += want;
    }
    *out = buf;
    return 0;
}

/* Opens an IDX file and reads its header: ndim dimensions of ubyte data. */
static lsr_status idx_open(gzFile *out, const char *path, int want_min_dims, int want_max_dims,
                           int64_t dims[4], int *ndim) {
    struct stat st;
    if (stat(path, &st) != 0) return lsr__fail(LSR_ERROR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return lsr__fail(LSR_ERROR_IO, "%s: is a directory", path);
    gzFile f = gzopen(path, "rb");
    if (!f) return lsr__fail(LSR_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[4];
    if (read_exact(f, magic, 4, path, "the magic number")) goto fail;
    if (magic[0] != 0 || magic[1] != 0) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: bad magic number %02x%02x%02x%02x: not an IDX file", path,
                  magic[0], magic[1], magic[2], magic[3]);
        goto fail;
    }
    if (magic[2] != 0x08) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: IDX data type 0x%02x is not unsigned byte (0x08)", path,
                  magic[2]);
        goto fail;
    }
    *ndim = magic[3];
    if (*ndim < want_min_dims || *ndim > want_max_dims) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: %d dimensions, expected %s", path, *ndim,
                  want_min_dims == want_max_dims ? "1 (labels)" : "3 or 4 (images)");
        goto fail;
    }
    int64_t total = 1;
    for (int i = 0; i < *ndim; i++) {
        unsigned char b[4];
        if (read_exact(f, b, 4, path, "the dimensions")) goto fail;
        dims[i] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
        if (dims[i] <= 0 || dims[i] > (1 << 30)) {
            lsr__fail(LSR_ERROR_FORMAT, "%s: dimension %d is %lld", path, i, (long long)dims[i]);
            goto fail;
        }
        total *= dims[i];
        if (total > IDX_MAX_VALUES) {
            lsr__fail(LSR_ERROR_FORMAT, "%s: more than %lld values", path,
                      (long long)IDX_MAX_VALUES);
            goto fail;
        }
    }
    *out = f;
    return 0;
fail:
    gzclose(f);
    return lsr__failed();
}

/* After the data: the file must end here. */
static lsr_status idx_expect_end(gzFile f, const char *path, int64_t data_bytes) {
    unsigned char extra;
    int got = gzread(f, &extra, 1);
    if (got != 0)
        return lsr__fail(LSR_ERROR_FORMAT,
                         "%s: trailing data after the %lld bytes its header announces", path,
                         (long long)data_bytes);
    return 0;
}

lsr_status lsr_dataset_load_idx(lsr_dataset *d, const char *images_path, const char *labels_path) {
    if (!d || !images_path || !labels_path)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_load_idx: an argument is NULL");
    memset(d, 0, sizeof *d);
    gzFile fi = NULL, fl = NULL;
    unsigned char *bytes = NULL;
    int64_t di[4] = {0}, dl[4] = {0};
    int ni, nl;
    if (idx_open(&fi, images_path, 3, 4, di, &ni)) return lsr__failed();
    if (idx_open(&fl, labels_path, 1, 1, dl, &nl)) goto fail;
    if (di[0] != dl[0]) {
        lsr__fail(LSR_ERROR_FORMAT, "%s has %lld images but %s has %lld labels", images_path,
                  (long long)di[0], labels_path, (long long)dl[0]);
        goto fail;
    }
    d->n = di[0];
    d->h = (int)di[1];
    d->w = (int)di[2];
    d->c = ni == 4 ? (int)di[3] : 1;
    const int64_t per = (int64_t)d->h * d->w * d->c, total = d->n * per;
    if (read_all(fi, &bytes, total, images_path, "the pixel data")) goto fail;
    if (idx_expect_end(fi, images_path, total)) goto fail;
    d->x = malloc((size_t)total * sizeof(float));
    d->y = malloc((size_t)d->n * sizeof(int64_t));
    if (!d->x || !d->y) {
        lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory for %lld values", images_path,
                  (long long)total);
        goto fail;
    }
    for (int64_t i = 0; i < total; i++)
        d->x[i] = (float)bytes[i] * (1.0f / 255.0f);
    free(bytes);
    bytes = NULL;
    if (read_all(fl, &bytes, d->n, labels_path, "the labels")) goto fail;
    if (idx_expect_end(fl, labels_path, d->n)) goto fail;
    int max_label = 0;
    for (int64_t i = 0; i < d->n; i++) {
        d->y[i] = bytes[i];
        if (bytes[i] > max_label) max_label = bytes[i];
    }
    d->classes = max_label + 1;
    free(bytes);
    gzclose(fi);
    gzclose(fl);
    return 0;
fail:
    free(bytes);
    if (fi) gzclose(fi);
    if (fl) gzclose(fl);
    lsr_dataset_free(d);
    return lsr__failed();
}

void lsr_dataset_free(lsr_dataset *d) {
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
