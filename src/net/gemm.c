/* sgemm in fixed tiles, so that every result is the same for any thread
 * count (and, with oneDNN, whatever OPENBLAS_CORETYPE says).
 *
 * C is cut into tiles of LSR_GEMM_TILE_M x LSR_GEMM_TILE_N (the last row and
 * column of tiles are smaller); K is never cut.  Each tile is one call of a
 * single-threaded sgemm whose sizes and offsets depend only on (M, N, K),
 * never on the thread count: threads only choose which tiles they run.  A
 * kernel that treats a tile's edge rows differently from its inner rows (as
 * OpenBLAS's Haswell, Zen and Sandybridge kernels do) therefore still gives
 * each element of C the same sequence of operations with 1, 2 or 64 threads.
 *
 * The sgemm is oneDNN's where lsr is built with it: it picks its kernel from
 * the CPU itself (OpenBLAS's can be overridden by OPENBLAS_CORETYPE, and
 * Haswell's kernels run at half the speed of the AVX-512 ones on AVX-512
 * CPUs), and measured as fast as OpenBLAS's best on the trainer's shapes.
 * Without oneDNN it is OpenBLAS's, made single-threaded: then the bits do
 * depend on the OpenBLAS kernel family (each family sums in its own order),
 * though still not on the thread count.  Neither is promised across CPUs.
 * A build without OpenMP uses OpenBLAS's too, oneDNN or not: oneDNN runs
 * its own OpenMP threads, as many as it finds cores, and only lsr's OpenMP
 * can hold a tile to one of them (its sums would otherwise depend on how
 * many cores the process may use, e.g. under mpirun).
 *
 * What is not done: K is never split, so a product with a small C and a
 * long K (a convolution's weight gradient with few filters) is one tile on
 * one thread; splitting K into fixed chunks summed in a fixed order would
 * keep the promise and scale further. */
#include "net.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#ifdef LSR_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int);

static void blas_single_threaded(void) { openblas_set_num_threads(1); }

/* OpenBLAS single-threaded, once, before its first use: the tiles are the
 * threads' work. */
static void blas_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, blas_single_threaded);
}

const char *lsr_gemm_backend(void) {
    static char words[96];
    const char *isa = "";
#if defined(LSR_HAVE_ONEDNN) && defined(_OPENMP)
    switch (dnnl_get_effective_cpu_isa()) { /* the most the CPU (or ONEDNN_MAX_CPU_ISA) allows */
    case dnnl_cpu_isa_avx512_core_amx:
        isa = ", AVX-512 (AMX CPU)";
        break;
    case dnnl_cpu_isa_avx512_core_bf16:
        isa = ", AVX-512 (BF16 CPU)";
        break;
    case dnnl_cpu_isa_avx512_core_vnni:
        isa = ", AVX-512 (VNNI CPU)";
        break;
    case dnnl_cpu_isa_avx512_core:
        isa = ", AVX-512";
        break;
    case dnnl_cpu_isa_avx2_vnni:
    case dnnl_cpu_isa_avx2:
        isa = ", AVX2";
        break;
    case dnnl_cpu_isa_avx:
        isa = ", AVX";
        break;
    default:
        break;
    }
    const char *library = "oneDNN";
#else
    const char *library = "OpenBLAS";
#endif
    snprintf(words, sizeof words, "%s sgemm%s, fixed %d x %d tiles", library, isa, LSR_GEMM_TILE_M,
             LSR_GEMM_TILE_N);
    return words;
}

/* One tile, single-threaded: C (m, n) = alpha op(A) op(B) + beta C. */
static void gemm_tile(int trans_a, int trans_b, int m, int n, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
#if defined(LSR_HAVE_ONEDNN) && defined(_OPENMP)
    /* row-major, like cblas.  It fails only when it cannot allocate its
     * packing buffers: then OpenBLAS computes the tile (right, if not
     * necessarily the same bits) rather than leave C unchanged. */
    if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, K, alpha, A, lda, B, ldb, beta,
                   C, ldc) == dnnl_success)
        return;
#endif
    blas_init();
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void lsr_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta C, as cblas does (oneDNN would leave C alone) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = &C[(size_t)i * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    const int tiles_m = (M + LSR_GEMM_TILE_M - 1) / LSR_GEMM_TILE_M;
    const int tiles_n = (N + LSR_GEMM_TILE_N - 1) / LSR_GEMM_TILE_N;
    const int tiles = tiles_m * tiles_n;
    /* Too little work to share (the same tiles, one thread): a parallel
     * region costs more than it saves below ~1 MFLOP. */
#ifdef _OPENMP
    const int parallel = tiles > 1 && (double)M * N * K >= 1e6 && !omp_in_parallel();
#endif
#pragma omp parallel if (parallel)
    {
#ifdef _OPENMP
        /* oneDNN's sgemm uses omp_get_max_threads() threads: one per tile */
        omp_set_num_threads(1);
#endif
#pragma omp for schedule(static)
        for (int t = 0; t < tiles; t++) {
            const int i0 = (t / tiles_n) * LSR_GEMM_TILE_M, j0 = (t % tiles_n) * LSR_GEMM_TILE_N;
            const int m = M - i0 < LSR_GEMM_TILE_M ? M - i0 : LSR_GEMM_TILE_M;
            const int n = N - j0 < LSR_GEMM_TILE_N ? N - j0 : LSR_GEMM_TILE_N;
            const float *a = trans_a ? A + i0 : A + (size_t)i0 * lda;
            const float *b = trans_b ? B + (size_t)j0 * ldb : B + j0;
            gemm_tile(trans_a, trans_b, m, n, K, alpha, a, lda, b, ldb, beta,
                      C + (size_t)i0 * ldc + j0, ldc);
        }
    }
}

/* The specification: each element a plain sum over k in double, rounded once. */
void lsr_gemm_reference(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                const double a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const double b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}
