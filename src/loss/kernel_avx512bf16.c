/* The AVX-512 row kernels again, for CPUs that also have AVX512_BF16, BW
 * and VL (compiled with those flags, called only after a run-time check):
 * see kernel_avx512.c. */
#define LSR_KERNEL_BF16_INSN 1
#include "kernel_avx512.c"
