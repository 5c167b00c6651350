/* bfloat16 <-> float, one value at a time: the definition that the vector
 * kernels, the reference and the trainer's bf16 paths all follow.  Not
 * installed. */
#ifndef LSR_BF16_H
#define LSR_BF16_H

#include <stdint.h>
#include <string.h>

/* The upper half of a float, rounded to nearest even; NaN stays NaN (quiet),
 * values past the largest bf16 become infinities. */
static inline uint16_t lsr_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* The rounding of the loss's bf16 gradients: to nearest even, and a
 * subnormal float becomes a zero of its sign, as the CPU's conversion
 * instruction (AVX512_BF16) does, so that every instruction set writes the
 * same bits.  Such values are below 1.2e-38. */
static inline uint16_t lsr_bf16_from_float_flush(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    return lsr_bf16_from_float(f);
}

/* Exact. */
static inline float lsr_bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
