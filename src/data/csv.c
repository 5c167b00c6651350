#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"

/* Splits a line in place at commas; returns the field count. */
static int split_fields(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static int parse_number(const char *s, double *out) {
    char *end;
    errno = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    *out = strtod(s, &end);
    if (end == s || errno == ERANGE) return 0;
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    return *end == '\0' && isfinite(*out);
}

lsr_status lsr_dataset_load_csv(lsr_dataset *d, const char *path) {
    if (!d || !path)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_load_csv: d or path is NULL");
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "r");
    if (!f) return lsr__fail(LSR_ERROR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    enum { MAX_FIELDS = 1 << 16 };
    char **fields = malloc(MAX_FIELDS * sizeof *fields);
    int64_t rows = 0, row_cap = 0, line_no = 0;
    int columns = 0, max_label = 0;
    if (!fields) {
        fclose(f);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        line_no++;
        if (len <= 1 && (line[0] == '\n' || line[0] == '\r')) continue;
        int nf = split_fields(line, fields, MAX_FIELDS);
        double label;
        if (!parse_number(fields[0], &label)) {
            if (line_no == 1) continue; /* header */
            lsr__fail(LSR_ERROR_FORMAT, "%s:%lld: the label '%s' is not a number", path,
                      (long long)line_no, fields[0]);
            goto fail;
        }
        if (columns == 0) {
            if (nf < 2) {
                lsr__fail(LSR_ERROR_FORMAT, "%s:%lld: needs a label and at least one feature", path,
                          (long long)line_no);
                goto fail;
            }
            columns = nf;
        } else if (nf != columns) {
            lsr__fail(LSR_ERROR_FORMAT, "%s:%lld: %d columns, the first row had %d", path,
                      (long long)line_no, nf, columns);
            goto fail;
        }
        if (label < 0 || label != floor(label) || label > 65535) {
            lsr__fail(LSR_ERROR_FORMAT, "%s:%lld: label %g is not an integer in [0, 65535]", path,
                      (long long)line_no, label);
            goto fail;
        }
        if (rows == row_cap) {
            row_cap = row_cap ? 2 * row_cap : 1024;
            float *x = realloc(d->x, (size_t)row_cap * (size_t)(columns - 1) * sizeof(float));
            int64_t *y = x ? realloc(d->y, (size_t)row_cap * sizeof(int64_t)) : NULL;
            if (x) d->x = x;
            if (y) d->y = y;
            if (!x || !y) {
                lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "%s: out of memory at line %lld", path,
                          (long long)line_no);
                goto fail;
            }
        }
        for (int j = 1; j < columns; j++) {
            double v;
            if (!parse_number(fields[j], &v)) {
                lsr__fail(LSR_ERROR_FORMAT, "%s:%lld: column %d '%s' is not a finite number", path,
                          (long long)line_no, j + 1, fields[j]);
                goto fail;
            }
            d->x[rows * (columns - 1) + (j - 1)] = (float)v;
        }
        d->y[rows] = (int64_t)label;
        if ((int)label > max_label) max_label = (int)label;
        rows++;
    }
    if (ferror(f)) {
        lsr__fail(LSR_ERROR_IO, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (rows == 0) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: no data rows", path);
        goto fail;
    }
    free(line);
    free(fields);
    fclose(f);
    d->n = rows;
    d->h = 1;
    d->w = columns - 1;
    d->c = 1;
    d->classes = max_label + 1;
    return 0;
fail:
    free(line);
    free(fields);
    fclose(f);
    lsr_dataset_free(d);
    return lsr__failed();
}

/* dir/name, or dir/name.gz, whichever exists. */
static int find_file(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
    if (access(out, F_OK) == 0) return 1;
    snprintf(out, size, "%s/%s.gz", dir, name);
    return access(out, F_OK) == 0;
}

lsr_status lsr_dataset_load_dir(lsr_dataset *train, lsr_dataset *test, const char *dir) {
    if (!train || !dir)
        return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "lsr_dataset_load_dir: train or dir is NULL");
    memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    struct stat st;
    if (stat(dir, &st) != 0) return lsr__fail(LSR_ERROR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return lsr__fail(LSR_ERROR_FORMAT, "%s: not a directory", dir);
    char img[4096], lab[4096];
    if (find_file(img, sizeof img, dir, "train-images-idx3-ubyte")) {
        if (!find_file(lab, sizeof lab, dir, "train-labels-idx1-ubyte"))
            return lsr__fail(LSR_ERROR_FORMAT, "%s: train-labels-idx1-ubyte[.gz] is missing", dir);
        if (lsr_dataset_load_idx(train, img, lab)) return lsr__failed();
        if (!test) return 0;
        if (!find_file(img, sizeof img, dir, "t10k-images-idx3-ubyte") ||
            !find_file(lab, sizeof lab, dir, "t10k-labels-idx1-ubyte")) {
            lsr_dataset_free(train);
            return lsr__fail(LSR_ERROR_FORMAT,
                             "%s: t10k-images-idx3-ubyte[.gz] or "
                             "t10k-labels-idx1-ubyte[.gz] is missing",
                             dir);
        }
        if (lsr_dataset_load_idx(test, img, lab)) {
            lsr_dataset_free(train);
            return lsr__failed();
        }
    } else {
        snprintf(img, sizeof img, "%s/train.csv", dir);
        if (access(img, F_OK) != 0)
            return lsr__fail(LSR_ERROR_FORMAT,
                             "%s: neither train-images-idx3-ubyte[.gz] nor train.csv "
                             "is there",
                             dir);
        if (lsr_dataset_load_csv(train, img)) return lsr__failed();
        if (!test) return 0;
        snprintf(img, sizeof img, "%s/test.csv", dir);
        if (lsr_dataset_load_csv(test, img)) {
            lsr_dataset_free(train);
            return lsr__failed();
        }
    }
    if (test->h != train->h || test->w != train->w || test->c != train->c) {
        lsr__fail(LSR_ERROR_FORMAT, "%s: test samples are %dx%dx%d, training samples %dx%dx%d", dir,
                  test->h, test->w, test->c, train->h, train->w, train->c);
        lsr_dataset_free(train);
        lsr_dataset_free(test);
        return lsr__failed();
    }
    return 0;
}
