/* Row kernels for AVX2 + FMA (compiled with -mavx2 -mfma, called only after
 * a run-time CPU check). */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "loss_internal.h"

#define VLEN 8
typedef __m256 vec;
typedef __m256i tail_mask;

static inline vec v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vec x) { _mm256_storeu_ps(p, x); }
static inline tail_mask v_tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vec v_load_tail(const float *p, tail_mask m, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void v_store_tail(float *p, tail_mask m, vec x) { _mm256_maskstore_ps(p, m, x); }
static inline vec v_zero_masked(tail_mask m, vec x) {
    return _mm256_and_ps(_mm256_castsi256_ps(m), x);
}
/* to L1, as kernel_avx512.c (here, on an AVX-512 CPU, the same time as to L2) */
static inline __attribute__((always_inline)) void v_prefetch(const void *p) {
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}
static inline vec v_set1(float x) { return _mm256_set1_ps(x); }
static inline vec v_add(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline vec v_sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
static inline vec v_mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
static inline vec v_max(vec a, vec b) { return _mm256_max_ps(a, b); }
static inline vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec v_fmsub(vec a, vec b, vec c) { return _mm256_fmsub_ps(a, b, c); }
static inline float v_reduce_max(vec x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
static inline double v_reduce_sum(vec x) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return (double)_mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}
static inline void v_stream(float *p, vec x) { _mm256_stream_ps(p, x); }
static inline void v_stream_fence(void) { _mm_sfence(); }
static inline vec v_load_bf16(const uint16_t *p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}
/* round to nearest even, subnormals to zero, as lsr_bf16_from_float_flush
 * (no NaN reaches it) */
static inline __m128i bf16_round(vec x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i up = _mm256_srli_epi32(
        _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i subnormal = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)),
                                                 _mm256_setzero_si256());
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000));
    const __m256i h = _mm256_blendv_epi8(up, sign, subnormal);
    return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
static inline void v_store_bf16(uint16_t *p, vec x) {
    _mm_storeu_si128((__m128i *)(void *)p, bf16_round(x));
}
/* 16 values, half a 64-byte line */
static inline void v_stream_bf16_pair(uint16_t *p, vec x0, vec x1) {
    const __m256i both =
        _mm256_inserti128_si256(_mm256_castsi128_si256(bf16_round(x0)), bf16_round(x1), 1);
    _mm256_stream_si256((__m256i *)(void *)p, both);
}

/* exp(x) for x <= 0: as the AVX-512 version, with 2^n built in the exponent
 * bits; the input is clamped so that n stays >= -126. */
static inline vec v_exp(vec x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const vec log2e = _mm256_set1_ps(1.44269504088896341f);
    vec n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec f = _mm256_fmsub_ps(x, log2e, n);
    vec p = _mm256_set1_ps(1.3264660956e-3f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6714906394e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5507335812e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022242427e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314700365e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

#include "row_kernel.inc"

const row_kernels lsr__kernels_avx2 = ROW_KERNELS;
