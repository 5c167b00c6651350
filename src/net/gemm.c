/* sgemm with the threads of OpenMP: the BLAS runs single-threaded and each
 * OpenMP thread multiplies its own band of C.  The BLAS's own threads and
 * OpenMP's would otherwise fight over the same cores between layers. */
#include <cblas.h>

#include "net.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int);

void lsr_gemm_init(void) { openblas_set_num_threads(1); }

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; op is a transpose when
 * trans_a / trans_b.  Bands of C's rows (or of its columns when M is the
 * smaller side) go to the threads; each element is computed by one call,
 * with the same inner order whatever the thread count. */
void lsr_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#endif
    if (threads == 1 || (double)M * N * K < 2e6) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int split_rows = M >= N;
    const int extent = split_rows ? M : N;
    const int quantum = 16;
#pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const int blocks = (extent + quantum - 1) / quantum;
        const int first = (int)((long)blocks * t / nt) * quantum;
        int last = (int)((long)blocks * (t + 1) / nt) * quantum;
        if (last > extent) last = extent;
        if (first < last) {
            if (split_rows) {
                const float *a = trans_a ? A + first : A + (size_t)first * lda;
                cblas_sgemm(CblasRowMajor, ta, tb, last - first, N, K, alpha, a, lda, B, ldb, beta,
                            C + (size_t)first * ldc, ldc);
            } else {
                const float *b = trans_b ? B + (size_t)first * ldb : B + first;
                cblas_sgemm(CblasRowMajor, ta, tb, M, last - first, K, alpha, A, lda, b, ldb, beta,
                            C + first, ldc);
            }
        }
    }
}
