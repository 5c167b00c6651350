/* Products of bf16 matrices with float sums, in fixed tiles (as lsr_gemm),
 * by oneDNN's matmul on CPUs with AVX512_BF16: the bf16 H and W of
 * lsr_linear_cross_entropy.
 *
 * C is cut into the tiles of lsr_gemm (LSR_GEMM_TILE_M x LSR_GEMM_TILE_N,
 * smaller at the edges, K never cut); each tile is one single-threaded
 * matmul whose shapes and offsets depend only on the product's, so every
 * element of C gets the same operations for any thread count.  The
 * primitives (one per tile shape: at most 16 per product, for the last row
 * and column of tiles, the last chunk of K and whether it adds to C) are
 * kept in a cache that the caller holds across its products; each thread executes them
 * on its own stream with its own scratchpad (oneDNN's user scratchpad mode:
 * a primitive may then run on several threads at once).
 *
 * Each product of two bf16 values is exact in float, so the only rounding is
 * the float accumulation's, as in an sgemm. */
#include <stdlib.h>

#include "../loss/loss_internal.h"
#include "net.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The rounding of the CPU's conversion: nearest even, subnormals to zero. */
static void round_bf16_scalar(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint16_t v = lsr_bf16_from_float_flush(src[i]);
        memcpy(dst + i, &v, sizeof v); /* dst may be src's own bytes, read already */
    }
}

#ifndef LSR_HAVE_ONEDNN

lsr_status lsr_gemm_bf16_available(void) {
    return lsr__fail(LSR_ERROR_UNSUPPORTED,
                     "bf16 products need oneDNN, and this lsr was built without it");
}
lsr_gemm_bf16_cache *lsr_gemm_bf16_cache_new(void) { return NULL; }
void lsr_gemm_bf16_cache_free(lsr_gemm_bf16_cache *c) { (void)c; }
lsr_status lsr_gemm_bf16(lsr_gemm_bf16_cache *c, int trans_a, int trans_b, int M, int N, int K,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, int accumulate,
                         float *C, int ldc) {
    (void)c, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B;
    (void)ldb, (void)accumulate, (void)C, (void)ldc;
    return lsr_gemm_bf16_available();
}
void lsr_round_bf16(uint16_t *dst, const float *src, size_t n) { round_bf16_scalar(dst, src, n); }

#else

#include <immintrin.h>

#include "onednn.h"

/* The CPU's own conversion, where it has AVX512_BF16 (lsr_gemm_bf16_available
 * says so before any bf16 product runs).  The loads come before the stores
 * of the same lines: dst may start where src does. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
round_bf16_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), (__m256i)v);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + i));
        _mm256_mask_storeu_epi16(dst + i, k, (__m256i)v);
    }
}

/* oneDNN's ISA values are sets of bits: an ISA includes those it extends */
static int onednn_has_bf16(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
           (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

void lsr_round_bf16(uint16_t *dst, const float *src, size_t n) {
    if (lsr__cpu_has_avx512_bf16())
        round_bf16_avx512(dst, src, n);
    else
        round_bf16_scalar(dst, src, n);
}

lsr_status lsr_gemm_bf16_available(void) {
#ifndef _OPENMP /* oneDNN would run each tile on threads of its own: sums by core count */
    return lsr__fail(LSR_ERROR_UNSUPPORTED, "bf16 products need lsr built with OpenMP (which "
                                            "holds each of oneDNN's tiles to one thread)");
#endif
    if (!lsr__cpu_has_avx512_bf16())
        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                         "bf16 products need a CPU with AVX512_BF16, and this one has not");
    if (!onednn_has_bf16())
        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                         "bf16 products: oneDNN is limited below AVX512_BF16 here "
                         "(ONEDNN_MAX_CPU_ISA?)");
    return lsr__onednn_engine() ? LSR_OK
                                : lsr__fail(LSR_ERROR_UNSUPPORTED, "oneDNN: cannot create a CPU "
                                                                   "engine");
}

/* K is summed in chunks of this many, each chunk's product added to C in
 * order: a tile's matmul then packs at most a chunk of B (1 MiB of bf16 for
 * a 256-column tile) into its scratchpad, whatever K. */
#define LSR_GEMM_BF16_CHUNK 2048

/* enough for the tile shapes of a few products: 16 each at most, 4 or 8 usual */
enum { CACHE_SLOTS = 32 };

typedef struct tile_primitive {
    int used;
    unsigned product; /* the last product that used it: not evicted during that one */
    int trans_a, trans_b, m, n, k, lda, ldb, ldc, accumulate; /* the key */
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t a, b, c, scratch;
    size_t scratch_bytes;
} tile_primitive;

struct lsr_gemm_bf16_cache {
    tile_primitive slot[CACHE_SLOTS];
    int next;         /* where to look first for a slot to reuse */
    unsigned product; /* counts the products, from 1 */
};

lsr_gemm_bf16_cache *lsr_gemm_bf16_cache_new(void) {
    return calloc(1, sizeof(lsr_gemm_bf16_cache));
}

static void slot_clear(tile_primitive *t) {
    if (t->used) dnnl_primitive_destroy(t->primitive);
    memset(t, 0, sizeof *t);
}

void lsr_gemm_bf16_cache_free(lsr_gemm_bf16_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++)
        slot_clear(&c->slot[i]);
    free(c);
}

/* The primitive for one tile shape, from the cache or made; NULL when oneDNN
 * cannot make it. */
static tile_primitive *tile_primitive_for(lsr_gemm_bf16_cache *c, int trans_a, int trans_b, int m,
                                          int n, int k, int lda, int ldb, int ldc, int accumulate) {
    const tile_primitive key = {.used = 1,
                                .product = c->product,
                                .trans_a = trans_a,
                                .trans_b = trans_b,
                                .m = m,
                                .n = n,
                                .k = k,
                                .lda = lda,
                                .ldb = ldb,
                                .ldc = ldc,
                                .accumulate = accumulate};
    for (int i = 0; i < CACHE_SLOTS; i++) {
        tile_primitive *s = &c->slot[i];
        if (s->used && s->trans_a == trans_a && s->trans_b == trans_b && s->m == m && s->n == n &&
            s->k == k && s->lda == lda && s->ldb == ldb && s->ldc == ldc &&
            s->accumulate == accumulate) {
            s->product = c->product; /* in use: not to be evicted while this product runs */
            return s;
        }
    }
    /* a free slot, or one the current product does not use (it uses at most
     * 16 of the 32) */
    tile_primitive *t = NULL;
    for (int i = 0; i < CACHE_SLOTS && !t; i++) {
        tile_primitive *s = &c->slot[(c->next + i) % CACHE_SLOTS];
        if (!s->used || s->product != c->product) t = s;
    }
    if (!t) return NULL; /* cannot happen: see above */
    c->next = (int)(t - c->slot + 1) % CACHE_SLOTS;
    slot_clear(t);
    *t = key;
    t->used = 0;
    const dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
    const dnnl_dims_t a_strides = {trans_a ? 1 : lda, trans_a ? lda : 1};
    const dnnl_dims_t b_strides = {trans_b ? 1 : ldb, trans_b ? ldb : 1};
    const dnnl_dims_t c_strides = {ldc, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int bad =
        dnnl_memory_desc_init_by_strides(&t->a, 2, a_dims, dnnl_bf16, a_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&t->b, 2, b_dims, dnnl_bf16, b_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&t->c, 2, c_dims, dnnl_f32, c_strides) != dnnl_success ||
        dnnl_matmul_desc_init(&desc, &t->a, &t->b, NULL, &t->c) != dnnl_success ||
        dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success;
    if (!bad && accumulate)
        bad = dnnl_post_ops_create(&ops) != dnnl_success ||
              dnnl_post_ops_append_sum(ops, 1.0f) != dnnl_success ||
              dnnl_primitive_attr_set_post_ops(attr, ops) != dnnl_success;
    if (!bad)
        bad = dnnl_primitive_desc_create(&pd, &desc, attr, lsr__onednn_engine(), NULL) !=
              dnnl_success;
    if (!bad) {
        t->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        t->scratch_bytes = dnnl_memory_desc_get_size(&t->scratch);
        bad = dnnl_primitive_create(&t->primitive, pd) != dnnl_success;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (bad) return NULL;
    t->used = 1;
    return t;
}

/* Runs one tile on the calling thread's stream; 0 or -1. */
static int run_tile(const tile_primitive *t, dnnl_stream_t stream, void *scratch, const void *a,
                    const void *b, float *c) {
    dnnl_engine_t engine = lsr__onednn_engine();
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
    int bad = dnnl_memory_create(&ma, &t->a, engine, (void *)a) != dnnl_success ||
              dnnl_memory_create(&mb, &t->b, engine, (void *)b) != dnnl_success ||
              dnnl_memory_create(&mc, &t->c, engine, c) != dnnl_success ||
              dnnl_memory_create(&ms, &t->scratch, engine, scratch) != dnnl_success;
    if (!bad) {
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ma},
                                        {DNNL_ARG_WEIGHTS, mb},
                                        {DNNL_ARG_DST, mc},
                                        {DNNL_ARG_SCRATCHPAD, ms}};
        bad = dnnl_primitive_execute(t->primitive, stream, 4, args) != dnnl_success ||
              dnnl_stream_wait(stream) != dnnl_success;
    }
    dnnl_memory_t all[] = {ma, mb, mc, ms};
    for (int i = 0; i < 4; i++)
        if (all[i]) dnnl_memory_destroy(all[i]);
    return bad ? -1 : 0;
}

lsr_status lsr_gemm_bf16(lsr_gemm_bf16_cache *c, int trans_a, int trans_b, int M, int N, int K,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, int accumulate,
                         float *C, int ldc) {
    if (M <= 0 || N <= 0) return LSR_OK;
    if (K <= 0) { /* an empty sum: C is 0, or stays */
        for (int i = 0; i < M && !accumulate; i++)
            memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return LSR_OK;
    }
    LSR_TRY(lsr_gemm_bf16_available());
    c->product++; /* the primitives this product uses stay in the cache until it ends */
    const int tiles_m = (M + LSR_GEMM_TILE_M - 1) / LSR_GEMM_TILE_M;
    const int tiles_n = (N + LSR_GEMM_TILE_N - 1) / LSR_GEMM_TILE_N;
    const int tiles = tiles_m * tiles_n;
    const int chunks = (K + LSR_GEMM_BF16_CHUNK - 1) / LSR_GEMM_BF16_CHUNK;
    /* the primitives of the tile shapes, made here, once:
     * [last row of tiles][last column][last chunk of K][adds to C] */
    tile_primitive *shape[2][2][2][2] = {{{{NULL}}}};
    size_t scratch_bytes = 64;
    for (int last_m = tiles_m > 1 ? 0 : 1; last_m < 2; last_m++)
        for (int last_n = tiles_n > 1 ? 0 : 1; last_n < 2; last_n++)
            for (int last_k = chunks > 1 ? 0 : 1; last_k < 2; last_k++)
                for (int adds = 0; adds < 2; adds++) {
                    /* the first chunk adds to C when the call does, the others always */
                    const int first = last_k == (chunks == 1) && adds == accumulate;
                    const int later = chunks > 1 && adds && (last_k || chunks > 2);
                    if (!first && !later) continue;
                    const int m = last_m ? M - (tiles_m - 1) * LSR_GEMM_TILE_M : LSR_GEMM_TILE_M;
                    const int n = last_n ? N - (tiles_n - 1) * LSR_GEMM_TILE_N : LSR_GEMM_TILE_N;
                    const int k =
                        last_k ? K - (chunks - 1) * LSR_GEMM_BF16_CHUNK : LSR_GEMM_BF16_CHUNK;
                    tile_primitive *t =
                        tile_primitive_for(c, trans_a, trans_b, m, n, k, lda, ldb, ldc, adds);
                    if (!t)
                        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                                         "oneDNN cannot make a bf16 product of %d x %d x %d", m, n,
                                         k);
                    shape[last_m][last_n][last_k][adds] = t;
                    if (t->scratch_bytes > scratch_bytes) scratch_bytes = t->scratch_bytes;
                }
    int failed = 0;
#ifdef _OPENMP
    const int parallel = tiles > 1 && (double)M * N * K >= 1e6 && !omp_in_parallel();
#endif
#pragma omp parallel if (parallel) reduction(| : failed)
    {
#ifdef _OPENMP
        omp_set_num_threads(1); /* oneDNN runs each tile on the thread that calls it */
#endif
        dnnl_stream_t stream = NULL;
        void *scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64);
        failed = !scratch || dnnl_stream_create(&stream, lsr__onednn_engine(),
                                                dnnl_stream_default_flags) != dnnl_success;
#pragma omp for schedule(static)
        for (int t = 0; t < tiles; t++) {
            const int tm = t / tiles_n, tn = t % tiles_n;
            const int i0 = tm * LSR_GEMM_TILE_M, j0 = tn * LSR_GEMM_TILE_N;
            for (int chunk = 0; chunk < chunks && !failed; chunk++) {
                const size_t k0 = (size_t)chunk * LSR_GEMM_BF16_CHUNK;
                const tile_primitive *p = shape[tm == tiles_m - 1][tn == tiles_n - 1]
                                               [chunk == chunks - 1][chunk > 0 || accumulate];
                const uint16_t *a = trans_a ? A + k0 * (size_t)lda + i0 : A + (size_t)i0 * lda + k0;
                const uint16_t *b = trans_b ? B + (size_t)j0 * ldb + k0 : B + k0 * (size_t)ldb + j0;
                failed |= run_tile(p, stream, scratch, a, b, C + (size_t)i0 * ldc + j0);
            }
        }
        if (stream) dnnl_stream_destroy(stream);
        free(scratch);
    }
    return failed ? lsr__fail(LSR_ERROR_OUT_OF_MEMORY,
                              "a bf16 product of %d x %d x %d failed (out of memory?)", M, N, K)
                  : LSR_OK;
}

#endif

void lsr_gemm_bf16_reference(int trans_a, int trans_b, int M, int N, int K, const uint16_t *A,
                             int lda, const uint16_t *B, int ldb, int accumulate, float *C,
                             int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                const uint16_t a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const uint16_t b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)lsr_bf16_to_float(a) * (double)lsr_bf16_to_float(b);
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(s + (accumulate ? (double)*c : 0.0));
        }
}
