/* lsr_gemm, the matrix product under every dense and convolution layer,
 * against its double-precision reference on ragged shapes: tile edges inside
 * and at the border, every transpose, beta 0 and 1, padded leading
 * dimensions; and bit-identical for 1, 2 and 3 threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/net.h"
#include "threads.h"

static const int shapes[][3] = {{1, 1, 1},      {3, 5, 7},      {129, 257, 33}, {300, 70, 513},
                                {128, 256, 64}, {17, 600, 200}, {520, 9, 1000}, {64, 2304, 300},
                                {5, 7, 0},      {64, 64, 5000}};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0], N_VARIANTS = 8 };

/* One product C = alpha op(A) op(B) + beta C with padded leading dimensions;
 * c0 is C before it. */
typedef struct gemm_case {
    int M, N, K, ta, tb, lda, ldb, ldc;
    float alpha, beta;
    size_t nc;
    float *a, *b, *c0;
} gemm_case;

/* Shape s in variant 0..7 (bit 0: A transposed, bit 1: B transposed, bit 2:
 * beta 1), its operands drawn from rng. */
static void gemm_case_init(gemm_case *g, int s, int variant, lsr_rng *rng) {
    g->M = shapes[s][0], g->N = shapes[s][1], g->K = shapes[s][2];
    g->ta = variant & 1, g->tb = (variant >> 1) & 1;
    g->beta = (variant >> 2) & 1 ? 1.0f : 0.0f, g->alpha = 0.75f;
    g->lda = (g->ta ? g->M : g->K) + 3, g->ldb = (g->tb ? g->K : g->N) + 1, g->ldc = g->N + 2;
    const size_t na = (size_t)(g->ta ? g->K : g->M) * g->lda;
    const size_t nb = (size_t)(g->tb ? g->N : g->K) * g->ldb;
    g->nc = (size_t)g->M * g->ldc;
    g->a = malloc(na * sizeof(float)), g->b = malloc(nb * sizeof(float));
    g->c0 = malloc(g->nc * sizeof(float));
    for (size_t i = 0; i < na; i++)
        g->a[i] = (float)lsr_rng_normal(rng);
    for (size_t i = 0; i < nb; i++)
        g->b[i] = (float)lsr_rng_normal(rng);
    for (size_t i = 0; i < g->nc; i++)
        g->c0[i] = (float)lsr_rng_normal(rng);
}

static void gemm_case_free(gemm_case *g) {
    free(g->a);
    free(g->b);
    free(g->c0);
}

/* C after lsr_gemm on the given number of threads (then back to 2). */
static float *gemm_run(const gemm_case *g, int threads) {
    float *c = malloc(g->nc * sizeof(float));
    memcpy(c, g->c0, g->nc * sizeof(float));
    set_threads(threads);
    lsr_gemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, c,
             g->ldc);
    set_threads(2);
    return c;
}

/* Within the fp32 sum's worst case, (K + 2) u of sum |terms|, of the double reference. */
static void test_gemm_matches_reference(void) {
    lsr_rng rng;
    lsr_rng_seed(&rng, 3);
    for (int s = 0; s < N_SHAPES; s++)
        for (int variant = 0; variant < N_VARIANTS; variant++) {
            gemm_case g;
            gemm_case_init(&g, s, variant, &rng);
            const int M = g.M, N = g.N, K = g.K, ta = g.ta, tb = g.tb;
            const int lda = g.lda, ldb = g.ldb, ldc = g.ldc;
            const float *a = g.a, *b = g.b, *c0 = g.c0, alpha = g.alpha, beta = g.beta;
            float *want = malloc(g.nc * sizeof(float));
            memcpy(want, c0, g.nc * sizeof(float));
            lsr_gemm_reference(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, want, ldc);
            float *got = gemm_run(&g, 1);
            int bad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    const size_t at = (size_t)i * ldc + j;
                    /* the fp32 sum's worst case (Higham's gamma): K + 2
                     * roundings of u = 2^-24, each at most the magnitude of
                     * the terms, sum |alpha a b| + |beta c| */
                    double mag = fabs((double)beta * c0[at]);
                    for (int k = 0; k < K; k++)
                        mag += fabs(alpha *
                                    (double)(ta ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k]) *
                                    (tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j]));
                    bad += fabs((double)got[at] - want[at]) > (K + 2) * 0x1p-24 * mag;
                }
            CHECK(bad == 0, "gemm %dx%dx%d ta %d tb %d beta %g: %d entries off the reference", M, N,
                  K, ta, tb, (double)beta, bad);
            free(want);
            free(got);
            gemm_case_free(&g);
        }
}

/* 1, 2 and 3 threads give the same bits (exactly: the tiles' sums must not depend on them). */
static void test_gemm_same_bits_on_1_2_3_threads(void) {
    lsr_rng rng;
    lsr_rng_seed(&rng, 3);
    for (int s = 0; s < N_SHAPES; s++)
        for (int variant = 0; variant < N_VARIANTS; variant++) {
            gemm_case g;
            gemm_case_init(&g, s, variant, &rng);
            float *got[3];
            for (int t = 0; t < 3; t++)
                got[t] = gemm_run(&g, t + 1);
            int differ = 0;
            for (int i = 0; i < g.M; i++)
                for (int j = 0; j < g.N; j++) {
                    const size_t at = (size_t)i * g.ldc + j;
                    differ += memcmp(&got[0][at], &got[1][at], sizeof(float)) != 0 ||
                              memcmp(&got[0][at], &got[2][at], sizeof(float)) != 0;
                }
            CHECK(differ == 0,
                  "gemm %dx%dx%d ta %d tb %d: %d entries differ between 1, 2, 3 threads", g.M, g.N,
                  g.K, g.ta, g.tb, differ);
            for (int t = 0; t < 3; t++)
                free(got[t]);
            gemm_case_free(&g);
        }
}

/* C's padding (columns N..ldc-1) is left bit for bit as it was, on every thread count. */
static void test_gemm_leaves_padding_alone(void) {
    lsr_rng rng;
    lsr_rng_seed(&rng, 3);
    for (int s = 0; s < N_SHAPES; s++)
        for (int variant = 0; variant < N_VARIANTS; variant++) {
            gemm_case g;
            gemm_case_init(&g, s, variant, &rng);
            int padding = 0;
            for (int t = 0; t < 3; t++) {
                float *got = gemm_run(&g, t + 1);
                for (int i = 0; i < g.M; i++)
                    for (int j = g.N; j < g.ldc; j++) {
                        const size_t at = (size_t)i * g.ldc + j;
                        padding += memcmp(&got[at], &g.c0[at], sizeof(float)) != 0;
                    }
                free(got);
            }
            CHECK(padding == 0, "gemm %dx%dx%d: wrote %d values outside C", g.M, g.N, g.K, padding);
            gemm_case_free(&g);
        }
}

int main(void) {
    test_gemm_matches_reference();
    test_gemm_same_bits_on_1_2_3_threads();
    test_gemm_leaves_padding_alone();
    return check_summary();
}
