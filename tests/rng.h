/* Deterministic random numbers for the loss tests: xorshift64, seeded by
 * the test (rng_state), the same sequence on every machine and compiler. */
#ifndef LSR_TESTS_RNG_H
#define LSR_TESTS_RNG_H

#include <math.h>
#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static inline double rng_uniform(void) {
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}
static inline double rng_normal(void) {
    double u = rng_uniform() + 1e-300, v = rng_uniform(); /* in this order */
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static inline int64_t rng_below(int64_t n) { return (int64_t)(rng_next() % (uint64_t)n); }

#endif
