/* Small helpers shared by the trainer's parts (and its errors, ../loss/error.h): a seeded
 * random generator, and atomic file writes.  Not part of the loss library. */
#ifndef LSR_COMMON_H
#define LSR_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../loss/error.h"
#include "lsr/train.h"

/* xoshiro256** seeded by splitmix64: small, fast, and its whole state can be
 * saved. */
typedef struct lsr_rng {
    uint64_t s[4];
} lsr_rng;
void lsr_rng_seed(lsr_rng *rng, uint64_t seed);
uint64_t lsr_rng_next(lsr_rng *rng);
double lsr_rng_uniform(lsr_rng *rng);             /* [0, 1) */
double lsr_rng_normal(lsr_rng *rng);              /* N(0, 1) */
uint64_t lsr_rng_below(lsr_rng *rng, uint64_t n); /* [0, n), n > 0 */
void lsr_rng_shuffle(lsr_rng *rng, int64_t *v, int64_t n);

/* An output file that appears only when complete: written to a temporary
 * file in the same directory, then fsync, rename, and fsync of the
 * directory.  On any failure the temporary is removed and the old file (if
 * any) is left as it was. */
typedef struct lsr_atomic_file {
    FILE *f;
    char path[4096];
    char tmp_path[4096];
} lsr_atomic_file;
lsr_status lsr_atomic_open(lsr_atomic_file *af, const char *path);
lsr_status lsr_atomic_commit(lsr_atomic_file *af); /* closes; on failure removes the temporary */

/* Checks that a file could be created at path (its directory exists and is
 * writable), without creating it. */
lsr_status lsr_check_writable(const char *path, const char *what);

double lsr_now(void); /* monotonic seconds */

/* "0,0.05,0.1": numbers in [min, max], at most capacity, returned sorted;
 * duplicates and empty items are refused.  flag names the list in errors. */
lsr_status lsr_parse_number_list(const char *s, const char *flag, double min, double max,
                                 double *out, int capacity, int *n);

#endif
