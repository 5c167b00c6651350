/* Row kernels for AVX-512 F + DQ (compiled with -mavx512f -mavx512dq -mfma,
 * called only after a run-time CPU check).  kernel_avx512bf16.c compiles this
 * file again with LSR_KERNEL_BF16_INSN for CPUs that also have AVX512_BF16,
 * BW and VL: the bf16 gradient then comes from the CPU's conversion (15 %
 * less time per logit in cache than the integer rounding), the same bits.
 * (The max of bf16 logits by 16-bit integer compares, 32 a vector, measured
 * slower in the whole kernel than by float compares.) */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "loss_internal.h"

#define VLEN 16
typedef __m512 vec;
typedef __mmask16 tail_mask;

static inline vec v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vec x) { _mm512_storeu_ps(p, x); }
static inline tail_mask v_tail_mask(int64_t n) { return (tail_mask)((1u << n) - 1u); }
static inline vec v_load_tail(const float *p, tail_mask m, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
}
static inline void v_store_tail(float *p, tail_mask m, vec x) { _mm512_mask_storeu_ps(p, m, x); }
static inline vec v_zero_masked(tail_mask m, vec x) { return _mm512_maskz_mov_ps(m, x); }
/* to L1: pass 1 reads the next chunk right after (float logits from memory
 * 4-8 % less time than to L2, in cache 8 %, bf16 the same) */
static inline __attribute__((always_inline)) void v_prefetch(const void *p) {
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}
static inline vec v_set1(float x) { return _mm512_set1_ps(x); }
static inline vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
static inline vec v_sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
static inline vec v_mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
static inline vec v_max(vec a, vec b) { return _mm512_max_ps(a, b); }
static inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec v_fmsub(vec a, vec b, vec c) { return _mm512_fmsub_ps(a, b, c); }
static inline float v_reduce_max(vec x) { return _mm512_reduce_max_ps(x); }
static inline double v_reduce_sum(vec x) { return (double)_mm512_reduce_add_ps(x); }
static inline void v_stream(float *p, vec x) { _mm512_stream_ps(p, x); }
static inline void v_stream_fence(void) { _mm_sfence(); }
static inline vec v_load_bf16(const uint16_t *p) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}
#if defined(LSR_KERNEL_BF16_INSN)
/* the CPU's conversion: to nearest even, subnormals to zero */
static inline void v_store_bf16(uint16_t *p, vec x) {
    const __m256bh h = _mm512_cvtneps_pbh(x);
    _mm256_storeu_si256((__m256i *)(void *)p, (__m256i)h);
}
/* 32 values, one 64-byte line */
static inline void v_stream_bf16_pair(uint16_t *p, vec x0, vec x1) {
    const __m512bh h = _mm512_cvtne2ps_pbh(x1, x0);
    _mm512_stream_si512((void *)p, (__m512i)h);
}
/* the first values of a vector (tail_mask), by AVX512BW's masked 16-bit
 * loads and stores (the lanes masked off are not touched, nor faulted on) */
static inline vec v_load_bf16_tail(const uint16_t *p, tail_mask m, float fill) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill),
                                _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
}
static inline void v_store_bf16_tail(uint16_t *p, tail_mask m, vec x) {
    _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(x));
}
#define V_LOAD_BF16_TAIL v_load_bf16_tail
#define V_STORE_BF16_TAIL v_store_bf16_tail
#else
/* as the CPU's conversion, which lsr_bf16_from_float_flush defines: to
 * nearest even, subnormals to zero (no NaN reaches it) */
static inline __m256i bf16_round(vec x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i up = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    const __mmask16 normal = _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    const __m512i sign = _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_mask_mov_epi32(sign, normal, up), 16));
}
static inline void v_store_bf16(uint16_t *p, vec x) {
    _mm256_storeu_si256((__m256i *)(void *)p, bf16_round(x));
}
/* 32 values, one 64-byte line */
static inline void v_stream_bf16_pair(uint16_t *p, vec x0, vec x1) {
    const __m512i both =
        _mm512_inserti64x4(_mm512_castsi256_si512(bf16_round(x0)), bf16_round(x1), 1);
    _mm512_stream_si512((void *)p, both);
}
#endif

/* exp(x) for x <= 0 (all the kernels need), to about 3 ulp: with
 * t = x log2(e) = n + f, |f| <= 1/2, 2^f is a degree-5 polynomial fitted
 * for relative error (9.2e-8) with 2^0 = 1 exactly and scalef applies 2^n, flushing to 0 below
 * the float range.  f comes from one fma, so t is not rounded first. */
static inline vec v_exp(vec x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const vec log2e = _mm512_set1_ps(1.44269504088896341f);
    vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec f = _mm512_fmsub_ps(x, log2e, n);
    vec p = _mm512_set1_ps(1.3264660956e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6714906394e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507335812e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022242427e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314700365e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

#include "row_kernel.inc"

#if defined(LSR_KERNEL_BF16_INSN)
const row_kernels lsr__kernels_avx512_bf16 = ROW_KERNELS;
#else
const row_kernels lsr__kernels_avx512 = ROW_KERNELS;
#endif
