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

int main(void) {
    if (scratch_make()) return 1;
    test_idx_reads_plain();
    test_idx_reads_gzip();
    test_idx_refuses_malformed_files();
    test_model_data_mismatch_refused();
    test_csv_reads();
    test_csv_refuses_malformed_files();
    scratch_remove();
    return check_summary();
}
