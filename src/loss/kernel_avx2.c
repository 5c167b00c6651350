/* Row kernels for AVX2 + FMA (compiled with -mavx2 -mfma, called only after
 * a run-time CPU check). */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "loss_internal.h"

#define VLEN 8
typedef __m256 vec;
typedef __m256i tail_mask;
typedef __m256 bad_acc;

static inline vec v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vec x) { _mm256_storeu_ps(p, x); }
static inline tail_mask v_tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vec v_load_tail(const float *p, tail_mask m, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m),
                            _mm256_castsi256_ps(m));
}
static inline void v_store_tail(float *p, tail_mask m, vec x) { _mm256_maskstore_ps(p, m, x); }
static inline vec v_set1(float x) { return _mm256_set1_ps(x); }
static inline vec v_add(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline vec v_sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
static inline vec v_mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
static inline vec v_max(vec a, vec b) { return _mm256_max_ps(a, b); }
static inline vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec v_fmsub(vec a, vec b, vec c) { return _mm256_fmsub_ps(a, b, c); }
static inline int v_any_gt(vec a, vec b) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0;
}
static inline bad_acc v_bad_init(void) { return _mm256_setzero_ps(); }
/* x - x is NaN exactly when x is NaN or infinite. */
static inline bad_acc v_bad_add(bad_acc acc, vec x) {
    return _mm256_or_ps(acc, _mm256_cmp_ps(_mm256_sub_ps(x, x), _mm256_setzero_ps(), _CMP_NEQ_UQ));
}
static inline int v_bad_any(bad_acc acc) { return _mm256_movemask_ps(acc) != 0; }
static inline void v_to_array(float *out, vec x) { _mm256_storeu_ps(out, x); }

/* exp(x): as the AVX-512 version, with 2^n built in the exponent bits; the
 * input is clamped so that n stays in [-126, 127]. */
static inline vec v_exp(vec x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    vec n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    vec p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

#include "row_kernel.inc"

const row_kernels lsr__kernels_avx2 = {pass1, pass2};
