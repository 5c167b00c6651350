/* The OpenMP thread count for the tests that compare 1, 2 and 3 threads
 * (a no-op without OpenMP, where everything runs on one). */
#ifndef LSR_TEST_THREADS_H
#define LSR_TEST_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

static inline void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

#endif
