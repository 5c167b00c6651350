/* Row kernels for AVX-512 F + DQ (compiled with -mavx512f -mavx512dq -mfma,
 * called only after a run-time CPU check). */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "loss_internal.h"

#define VLEN 16
typedef __m512 vec;
typedef __mmask16 tail_mask;
typedef __mmask16 bad_acc;

static inline vec v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vec x) { _mm512_storeu_ps(p, x); }
static inline tail_mask v_tail_mask(int64_t n) { return (tail_mask)((1u << n) - 1u); }
static inline vec v_load_tail(const float *p, tail_mask m, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
}
static inline void v_store_tail(float *p, tail_mask m, vec x) { _mm512_mask_storeu_ps(p, m, x); }
static inline vec v_set1(float x) { return _mm512_set1_ps(x); }
static inline vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
static inline vec v_sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
static inline vec v_mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
static inline vec v_max(vec a, vec b) { return _mm512_max_ps(a, b); }
static inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec v_fmsub(vec a, vec b, vec c) { return _mm512_fmsub_ps(a, b, c); }
static inline int v_any_gt(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }
static inline bad_acc v_bad_init(void) { return 0; }
/* fpclass bits: QNaN 0x01, +Inf 0x08, -Inf 0x10, SNaN 0x80 */
static inline bad_acc v_bad_add(bad_acc acc, vec x) {
    return acc | _mm512_fpclass_ps_mask(x, 0x99);
}
static inline int v_bad_any(bad_acc acc) { return acc != 0; }
static inline void v_to_array(float *out, vec x) { _mm512_storeu_ps(out, x); }

/* exp(x) to about 2 ulp: x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial
 * for exp(r), and scalef for 2^n (which flushes to 0 below the range). */
static inline vec v_exp(vec x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.5f));
    vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    vec p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

#include "row_kernel.inc"

const row_kernels lsr__kernels_avx512 = {pass1, pass2};
