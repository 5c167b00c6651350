#define _DEFAULT_SOURCE
/* The data readers on tiny generated files: IDX (plain and gzip) and CSV,
 * what each refuses and with what message, and the check that a model can
 * take a data set.  Pixels are compared to 1e-7, well under one byte's
 * step of 1/255; everything else exactly. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "lsr/train.h"
#include "scratch.h"

static void write_bytes(const char *path, const unsigned char *b, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, b, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* An IDX images file of n images of h x w, and a labels file. */
static void write_idx_pair(const char *dir, const char *images, const char *labels, int n, int h,
                           int w, int gz, int label_base) {
    unsigned char buf[4096];
    size_t k = 0;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = 8;
    buf[k++] = 3;
    const int dims[3] = {n, h, w};
    for (int d = 0; d < 3; d++) {
        buf[k++] = (unsigned char)(dims[d] >> 24);
        buf[k++] = (unsigned char)(dims[d] >> 16);
        buf[k++] = (unsigned char)(dims[d] >> 8);
        buf[k++] = (unsigned char)dims[d];
    }
    for (int i = 0; i < n * h * w; i++)
        buf[k++] = (unsigned char)(i * 37);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, images);
    write_bytes(path, buf, k, gz);
    k = 0;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = 8;
    buf[k++] = 1;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = (unsigned char)n;
    for (int i = 0; i < n; i++)
        buf[k++] = (unsigned char)(label_base + i % 3);
    snprintf(path, sizeof path, "%s/%s", dir, labels);
    write_bytes(path, buf, k, gz);
}

static void expect_idx_error(const char *images, const char *labels, const char *needle) {
    lsr_dataset d;
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/%s", tmpdir, images);
    snprintf(lp, sizeof lp, "%s/%s", tmpdir, labels);
    lsr_status r = lsr_dataset_load_idx(&d, ip, lp);
    CHECK((r == LSR_ERROR_FORMAT || r == LSR_ERROR_IO) && strstr(lsr_last_error(), needle),
          "IDX %s/%s: want an error with '%s', got %d '%s'", images, labels, needle, r,
          r ? lsr_last_error() : "");
    if (r == 0) lsr_dataset_free(&d);
}

static void patch_byte(const char *name, long offset, unsigned char value) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "r+b");
    fseek(f, offset, SEEK_SET);
    fputc(value, f);
    fclose(f);
}

static void truncate_file(const char *name, long size) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    CHECK(truncate(p, size) == 0, "truncate %s", p);
}

/* An IDX pair (plain, or gzip when gz) of 5 images of 4x3 loads with its shape and values. */
static void check_idx_load(int gz) {
    lsr_dataset d;
    char ip[512], lp[512];
    write_idx_pair(tmpdir, gz ? "i.gz" : "i", gz ? "l.gz" : "l", 5, 4, 3, gz, 0);
    snprintf(ip, sizeof ip, "%s/%s", tmpdir, gz ? "i.gz" : "i");
    snprintf(lp, sizeof lp, "%s/%s", tmpdir, gz ? "l.gz" : "l");
    lsr_status r = lsr_dataset_load_idx(&d, ip, lp);
    CHECK(r == LSR_OK, "IDX load gz=%d: %s", gz, lsr_last_error());
    if (r) return;
    CHECK(d.n == 5 && d.h == 4 && d.w == 3 && d.c == 1 && d.classes == 3, "IDX shape");
    CHECK(fabsf(d.x[1] - 37.0f / 255.0f) < 1e-7f && d.y[4] == 1, "IDX values");
    float mx = 0;
    for (int i = 0; i < 60; i++)
        mx = fmaxf(mx, d.x[i]);
    CHECK(mx <= 1.0f, "pixels scaled to [0, 1]");
    lsr_dataset_free(&d);
}

/* A plain IDX pair: shape and labels exact, pixels byte / 255 to 1e-7 (under 1/255), in [0, 1]. */
static void test_idx_reads_plain(void) { check_idx_load(0); }

/* The same pair gzipped reads the same: shape and labels exact, pixels to 1e-7. */
static void test_idx_reads_gzip(void) { check_idx_load(1); }

/* Malformed IDX files are refused with a message naming the fault. */
static void test_idx_refuses_malformed_files(void) {
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 0, 0x12);
    expect_idx_error("i", "l", "bad magic");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 2, 0x0d);
    expect_idx_error("i", "l", "not unsigned byte");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("i", 3, 2);
    expect_idx_error("i", "l", "dimensions");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("i", 16 + 59);
    expect_idx_error("i", "l", "truncated");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("l", 10);
    expect_idx_error("i", "l", "truncated");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    truncate_file("i", 16 + 61); /* one byte too many */
    expect_idx_error("i", "l", "trailing data");
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 0);
    patch_byte("l", 7, 4);
    expect_idx_error("i", "l", "has 5 images but");
    expect_idx_error("missing", "l", "No such file");
}

/* Data a model cannot take (labels past its classes, another shape) is refused by name. */
static void test_model_data_mismatch_refused(void) {
    lsr_dataset d;
    char ip[512], lp[512];
    /* labels beyond the model's class count */
    write_idx_pair(tmpdir, "i", "l", 5, 4, 3, 0, 8);
    snprintf(ip, sizeof ip, "%s/i", tmpdir);
    snprintf(lp, sizeof lp, "%s/l", tmpdir);
    CHECK(lsr_dataset_load_idx(&d, ip, lp) == 0, "%s", lsr_last_error());
    lsr_model *m = NULL;
    lsr_metrics mt;
    CHECK(lsr_model_create(&m, "flatten,dense:10", 4, 3, 1, 10) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_evaluate(&mt, m, &d, 1.0) == LSR_ERROR_MISMATCH &&
              strstr(lsr_last_error(), "label 10"),
          "labels beyond the class count: '%s'", lsr_last_error());
    lsr_model_free(m);
    CHECK(lsr_model_create(&m, "flatten,dense:11", 5, 3, 1, 11) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_model_evaluate(&mt, m, &d, 1.0) == LSR_ERROR_MISMATCH &&
              strstr(lsr_last_error(), "the model takes 5x3x1"),
          "shape mismatch: '%s'", lsr_last_error());
    lsr_model_free(m);
    lsr_dataset_free(&d);
}

/* A CSV with a header and spaces reads exactly: its shape, a value, a label. */
static void test_csv_reads(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/t.csv", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "label,a,b\n1,0.5,2\n0,1e-3,-4\n2, 3 ,4\n");
    fclose(f);
    lsr_dataset d;
    CHECK(lsr_dataset_load_csv(&d, p) == 0 && d.n == 3 && d.w == 2 && d.classes == 3 &&
              d.x[5] == 4.0f && d.y[2] == 2,
          "CSV: %s", lsr_last_error());
    lsr_dataset_free(&d);
}

/* Ragged rows, a bad number and a fractional label are refused with the place named. */
static void test_csv_refuses_malformed_files(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/t.csv", tmpdir);
    lsr_dataset d;
    FILE *f = fopen(p, "w");
    fprintf(f, "1,0.5,2\n0,1e-3\n");
    fclose(f);
    CHECK(lsr_dataset_load_csv(&d, p) != 0 && strstr(lsr_last_error(), ":2: 2 columns"),
          "CSV ragged: '%s'", lsr_last_error());
    f = fopen(p, "w");
    fprintf(f, "1,0.5,x\n");
    fclose(f);
    CHECK(lsr_dataset_load_csv(&d, p) != 0 && strstr(lsr_last_error(), "column 3"),
          "CSV bad number: '%s'", lsr_last_error());
    f = fopen(p, "w");
    fprintf(f, "1.5,0.5\n");
    fclose(f);
    CHECK(lsr_dataset_load_csv(&d, p) != 0 && strstr(lsr_last_error(), "not an integer"),
          "CSV bad label: '%s'", lsr_last_error());
}

/* A dataset of n 1x1x1 samples whose value is their index, labels i % k. */
static lsr_dataset counting(int64_t n, int k) {
    lsr_dataset d = {
        n, 1, 1, 1, k, malloc((size_t)n * sizeof(float)), malloc((size_t)n * sizeof(int64_t))};
    for (int64_t i = 0; i < n; i++) {
        d.x[i] = (float)i;
        d.y[i] = i % k;
    }
    return d;
}

/* The split puts every one of the first limit samples in train or val once, the same seed
 * giving the same split, and without validation keeps their order; refusals by status. */
static void test_split(void) {
    lsr_dataset all = counting(100, 4), train, val, train2, val2;
    CHECK(lsr_dataset_split(&train, &val, &all, 80, 20, 7) == LSR_OK, "%s", lsr_last_error());
    CHECK(lsr_dataset_split(&train2, &val2, &all, 80, 20, 7) == LSR_OK, "%s", lsr_last_error());
    int seen[80] = {0}, in_order = 1, same = 1;
    for (int64_t i = 0; i < train.n; i++) {
        seen[(int)train.x[i]]++;
        same &= train.x[i] == train2.x[i] && train.y[i] == (int64_t)train.x[i] % 4;
    }
    for (int64_t i = 0; i < val.n; i++) {
        seen[(int)val.x[i]]++;
        same &= val.x[i] == val2.x[i];
    }
    int once = 1;
    for (int i = 0; i < 80; i++)
        once &= seen[i] == 1;
    CHECK(train.n == 60 && val.n == 20 && once && same,
          "split: %lld + %lld, every sample once %d, reproducible %d", (long long)train.n,
          (long long)val.n, once, same);
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    CHECK(lsr_dataset_split(&train, &val, &all, 50, 0, 7) == LSR_OK, "%s", lsr_last_error());
    for (int64_t i = 0; i < train.n; i++)
        in_order &= train.x[i] == (float)i;
    CHECK(train.n == 50 && val.n == 0 && in_order, "no validation: the first 50 in order");
    lsr_dataset_free(&train);
    lsr_dataset_free(&val);
    lsr_dataset_free(&train2);
    lsr_dataset_free(&val2);
    CHECK(lsr_dataset_split(&train, &val, &all, 0, 100, 7) == LSR_ERROR_SIZE, "all held out");
    CHECK(lsr_dataset_split(&train, &val, &all, 0, -1, 7) == LSR_ERROR_SIZE, "val_count < 0");
    CHECK(lsr_dataset_split(&train, NULL, &all, 0, 1, 7) == LSR_ERROR_NULL_ARGUMENT, "no val");
    const int64_t bad[2] = {0, 100};
    CHECK(lsr_dataset_subset(&train, &all, bad, 2) == LSR_ERROR_SIZE, "an index past n");
    lsr_dataset_free(&all);
}

/* The imbalance keeps ceil(ratio^(-c/(K-1)) n_c) of class c (exact counts); priors from labels
 * are the class frequencies; a prior file is read and normalised (to 1e-6, float). */
static void test_imbalance_and_priors(void) {
    lsr_dataset d = counting(400, 4); /* 100 per class */
    CHECK(lsr_dataset_imbalance(&d, 8.0, 3) == LSR_OK, "%s", lsr_last_error());
    int64_t count[4] = {0};
    for (int64_t i = 0; i < d.n; i++)
        count[d.y[i]]++;
    CHECK(count[0] == 100 && count[1] == 50 && count[2] == 25 && count[3] == 13,
          "imbalance 8: %lld %lld %lld %lld, want 100 50 25 13", (long long)count[0],
          (long long)count[1], (long long)count[2], (long long)count[3]);
    float prior[4];
    CHECK(lsr_prior_from_labels(prior, d.y, d.n, 4) == LSR_OK, "%s", lsr_last_error());
    CHECK(fabsf(prior[0] - 100.0f / 188) < 1e-6f && fabsf(prior[3] - 13.0f / 188) < 1e-6f,
          "the data prior: %g %g", (double)prior[0], (double)prior[3]);
    CHECK(lsr_prior_from_labels(prior, d.y, 0, 4) == LSR_ERROR_SIZE, "a prior of no labels");
    d.y[0] = 9;
    CHECK(lsr_dataset_imbalance(&d, 2.0, 3) == LSR_ERROR_LABEL, "a label past classes");
    lsr_dataset_free(&d);
    char p[512];
    snprintf(p, sizeof p, "%s/prior.txt", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "1, 1; 2\n4\n");
    fclose(f);
    CHECK(lsr_prior_read(prior, p, 4) == LSR_OK && fabsf(prior[3] - 0.5f) < 1e-6f &&
              fabsf(prior[0] - 0.125f) < 1e-6f,
          "prior file: %s", lsr_last_error());
    CHECK(lsr_prior_read(prior, p, 3) == LSR_ERROR_FORMAT && strstr(lsr_last_error(), p),
          "a prior file of 4 numbers for 3 classes: %s", lsr_last_error());
}

/* A model tells its input shape; fp32 is always available, bf16 where the CPU has it. */
static void test_model_shape_and_precision(void) {
    lsr_model *m = NULL;
    CHECK(lsr_model_create(&m, "flatten,dense:3", 5, 4, 2, 3) == LSR_OK, "%s", lsr_last_error());
    int h = 0, w = 0, c = 0;
    if (m) lsr_model_input_shape(m, &h, &w, &c);
    CHECK(h == 5 && w == 4 && c == 2 && m && lsr_model_classes(m) == 3, "shape %dx%dx%d", h, w, c);
    lsr_model_free(m);
    CHECK(lsr_precision_available(LSR_PRECISION_FP32) == LSR_OK, "fp32 unavailable");
    const lsr_status bf16 = lsr_precision_available(LSR_PRECISION_BF16);
    CHECK(bf16 == LSR_OK || (bf16 == LSR_ERROR_UNSUPPORTED && lsr_last_error()[0]), "bf16: %s",
          lsr_status_name(bf16));
}

int main(void) {
    if (scratch_make()) return 1;
    test_idx_reads_plain();
    test_idx_reads_gzip();
    test_idx_refuses_malformed_files();
    test_model_data_mismatch_refused();
    test_csv_reads();
    test_csv_refuses_malformed_files();
    test_split();
    test_imbalance_and_priors();
    test_model_shape_and_precision();
    scratch_remove();
    return check_summary();
}
