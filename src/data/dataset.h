/* Datasets: MNIST-layout IDX files (plain or .gz) and CSV, loaded into one
 * float array of samples in (H, W, C) order (lsr_dataset, lsr/train.h). */
#ifndef LSR_DATASET_H
#define LSR_DATASET_H

#include <stdint.h>

#include "../common/common.h"

/* Reads an images file (IDX ubyte, 3 or 4 dimensions) and its labels file
 * (IDX ubyte, 1 dimension), each plain or gzip-compressed. Checks the magic
 * numbers, the dimensions, that both hold the same count, and that each
 * file holds exactly the bytes its header announces. */
lsr_status lsr_dataset_load_idx(lsr_dataset *d, const char *images_path, const char *labels_path);

/* Reads a CSV file whose first column is an integer label and whose other
 * columns are numbers; a first line that does not parse is taken as a
 * header.  Every row must have the same number of columns. */
lsr_status lsr_dataset_load_csv(lsr_dataset *d, const char *path);

/* Loads the training and test splits from a directory holding either the
 * four MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
 * t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz) or
 * train.csv and test.csv.  test may be NULL. */
lsr_status lsr_dataset_load_dir(lsr_dataset *train, lsr_dataset *test, const char *dir);

/* dst gets copies of src's samples at idx[0..n). */
lsr_status lsr_dataset_subset(lsr_dataset *dst, const lsr_dataset *src, const int64_t *idx,
                              int64_t n);
/* The first limit samples of all (0: all of them), shuffled with seed when
 * val_count > 0: val gets the last val_count of that order, train the rest.
 * The same arguments always give the same split. */
lsr_status lsr_dataset_split(lsr_dataset *train, lsr_dataset *val, const lsr_dataset *all,
                             int64_t limit, int64_t val_count, uint64_t seed);
/* Keeps ratio^(-c/(K-1)) of class c's samples (seeded): class 0 keeps all,
 * the last class 1/ratio. */
lsr_status lsr_dataset_imbalance(lsr_dataset *d, double ratio, uint64_t seed);
void lsr_dataset_free(lsr_dataset *d);

/* Reads exactly k non-negative numbers (white space, comma or semicolon
 * separated) from path into prior, normalised to sum to 1. */
lsr_status lsr_prior_read(float *prior, const char *path, int k);
/* prior (k): the frequencies of labels, counted in integers. */
lsr_status lsr_prior_from_labels(float *prior, const int64_t *labels, int64_t n, int k);

#endif
