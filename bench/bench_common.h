/* What the benchmarks share: a monotonic clock and the Python that has
 * PyTorch. */
#ifndef LSR_BENCH_COMMON_H
#define LSR_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Debian's PyTorch lives in /usr/bin/python3; another python3 may come first
 * on the PATH without it.  PYTHON overrides. */
static inline const char *python(void) {
    const char *py = getenv("PYTHON");
    return py && *py ? py : "/usr/bin/python3";
}

#endif
