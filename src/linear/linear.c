/* lsr_linear_cross_entropy: the classifier head and its loss in one call,
 * LSR_LINEAR_ROWS rows of logits at a time (lsr/linear.h).  Per block:
 * its logits by the trainer's fixed-tile sgemm (bias first, then H W^T
 * added), the fast loss kernel over them in place (the gradient written over
 * the logits while they are in cache, scaled by the whole call's reduction
 * divisors), then the block's rows of dH = G W and its share of
 * dW += G^T H, and db += the column sums of G.  Blocks run in row order, so
 * dW's and db's sums have a fixed order whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../loss/loss_internal.h"
#include "../net/net.h"
#include "lsr/linear.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The block's logits stay within this many bytes (fewer rows for large K). */
#define LINEAR_BLOCK_BYTES (64.0 * 1024 * 1024)

/* Every check of the contract, before any output is written. */
static lsr_status validate(lsr_loss_options *opt, float *loss, float *dh, float *dw, float *db,
                           lsr_loss_stats *stats, const void *h, int64_t ldh, const void *w,
                           const float *bias, const int64_t *labels, int64_t n, int64_t d,
                           int64_t k, const float *row_scale, const lsr_loss_options *options) {
    lsr__clear_error();
    *opt = options ? *options : lsr_loss_options_default();
    if (n < 0 || n > INT32_MAX)
        return lsr__fail(LSR_ERROR_SIZE, "n = %lld: must be in [0, 2^31)", (long long)n);
    if (d < 1 || d > INT32_MAX)
        return lsr__fail(LSR_ERROR_SIZE, "d = %lld: must be in [1, 2^31)", (long long)d);
    if (k < 1 || k > LSR_MAX_CLASSES)
        return lsr__fail(LSR_ERROR_SIZE, "k = %lld: must be in [1, %d]", (long long)k,
                         LSR_MAX_CLASSES);
    if (ldh < d || ldh > INT32_MAX)
        return lsr__fail(LSR_ERROR_SIZE, "ldh = %lld: must be >= d = %lld (and < 2^31)",
                         (long long)ldh, (long long)d);
    if ((double)k * (double)d > 9.0e15 || (double)n * (double)ldh > 9.0e15)
        return lsr__fail(LSR_ERROR_SIZE, "n, d, k = %lld, %lld, %lld: too large", (long long)n,
                         (long long)d, (long long)k);
    if (!w) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "w is NULL");
    if (n > 0 && !h) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "h is NULL");
    if (n > 0 && !labels) return lsr__fail(LSR_ERROR_NULL_ARGUMENT, "labels is NULL");
    /* the loss options (smoothing, convention, prior, weights, reduction, z_loss,
     * threads, isa, dtypes), checked by the loss itself on no rows */
    loss_call call;
    float none = 0.0f;
    LSR_TRY(lsr__validate(&call, 0, NULL, NULL, NULL, &none, NULL, NULL, 0, k, k, opt));
    if (opt->grad_dtype != LSR_DTYPE_FLOAT32)
        return lsr__fail(LSR_ERROR_UNSUPPORTED,
                         "grad_dtype: lsr_linear_cross_entropy writes float32 gradients only");
    const size_t in_size = lsr__dtype_size(opt->logits_dtype);
    for (int64_t i = 0; i < n; i++) {
        const int64_t y = labels[i];
        if (y != opt->ignore_index && (y < 0 || y >= k))
            return lsr__fail(
                LSR_ERROR_LABEL, "labels[%lld] = %lld: must be in [0, %lld) or ignore_index %lld",
                (long long)i, (long long)y, (long long)k, (long long)opt->ignore_index);
    }
    for (int64_t i = 0; row_scale && i < n; i++)
        if (!isfinite(row_scale[i]))
            return lsr__fail(LSR_ERROR_OPTION, "row_scale[%lld] = %g: must be finite", (long long)i,
                             (double)row_scale[i]);
    const int64_t loss_count = opt->reduction == LSR_REDUCTION_NONE ? n : 1;
    const lsr__span outputs[] = {
        lsr__rows_span("loss", loss, 1, loss_count, loss_count, sizeof(float)),
        lsr__rows_span("dh", dh, n, d, ldh, sizeof(float)),
        lsr__rows_span("dw", dw, k, d, d, sizeof(float)),
        lsr__rows_span("db", db, 1, k, k, sizeof(float)),
        lsr__rows_span("stats", stats, 1, 1, 1, sizeof *stats)};
    const lsr__span inputs[] = {
        lsr__rows_span("h", h, n, d, ldh, in_size),
        lsr__rows_span("w", w, k, d, d, in_size),
        lsr__rows_span("bias", bias, 1, k, k, sizeof(float)),
        lsr__rows_span("labels", labels, n, 1, 1, sizeof(int64_t)),
        lsr__rows_span("prior", opt->prior, 1, k, k, sizeof(float)),
        lsr__rows_span("class_weights", opt->class_weights, 1, k, k, sizeof(float)),
        lsr__rows_span("row_scale", row_scale, n, 1, 1, sizeof(float))};
    LSR_TRY(lsr__check_overlaps(outputs, 5, inputs, 7, -1, -1));
    return LSR_OK;
}

static void write_stats(lsr_loss_stats *stats, const lsr__loss_sums *s) {
    if (!stats) return;
    const double div = s->valid > 0 ? (double)s->valid : 1.0;
    stats->valid_rows = s->valid;
    stats->top1_hits = s->hits;
    stats->label_ce = s->label_ce / div;
    stats->prior_ce = s->prior_ce / div;
    stats->mean_max_prob = s->max_prob / div;
    stats->mean_lse = s->lse / div;
}

static lsr_status nonfinite(int64_t row) {
    return lsr__fail(LSR_ERROR_NONFINITE,
                     "logits row %lld has a NaN or infinite value, or values too far apart "
                     "for float",
                     (long long)row);
}

/* Rows of G times their row_scale (NULL: nothing to do). */
static void scale_rows(float *g, int64_t ld, int64_t rows, int64_t k, const float *row_scale) {
    for (int64_t i = 0; row_scale && i < rows; i++)
        for (int64_t j = 0; j < k; j++)
            g[(size_t)i * (size_t)ld + (size_t)j] *= row_scale[i];
}

/* The block's logits: bias first, then H_b W^T added (bf16 inputs: by
 * oneDNN's bf16 products with float sums). */
static lsr_status block_logits(float *block, int64_t ld, const void *hb, int64_t ldh, const void *w,
                               const float *bias, int64_t m, int64_t d, int64_t k, int bf16,
                               lsr_gemm_bf16_cache *cache) {
    if (bias)
        for (int64_t i = 0; i < m; i++)
            memcpy(block + (size_t)i * (size_t)ld, bias, (size_t)k * sizeof(float));
    if (bf16)
        return lsr_gemm_bf16(cache, 0, 1, (int)m, (int)k, (int)d, hb, (int)ldh, w, (int)d,
                             bias != NULL, block, (int)ld);
    lsr_gemm(0, 1, (int)m, (int)k, (int)d, 1.0f, hb, (int)ldh, w, (int)d, bias ? 1.0f : 0.0f, block,
             (int)ld);
    return LSR_OK;
}

/* The block's rows of dH = G W and its share of dW += G^T H_b (the first
 * block overwrites).  bf16: G is rounded to bf16 first, in place (row i's
 * values packed into the first half of its own bytes), as the products
 * need both factors in bf16. */
static lsr_status block_gradients(float *dh, float *dw, float *block, int64_t ld, const void *hb,
                                  int64_t ldh, const void *w, int64_t m, int64_t d, int64_t k,
                                  int first, int bf16, lsr_gemm_bf16_cache *cache) {
    if (!bf16) {
        if (dh)
            lsr_gemm(0, 0, (int)m, (int)d, (int)k, 1.0f, block, (int)ld, w, (int)d, 0.0f, dh,
                     (int)ldh);
        if (dw)
            lsr_gemm(1, 0, (int)k, (int)d, (int)m, 1.0f, block, (int)ld, hb, (int)ldh,
                     first ? 0.0f : 1.0f, dw, (int)d);
        return LSR_OK;
    }
    uint16_t *g = (uint16_t *)(void *)block;
    const int64_t ldg = 2 * ld;
#pragma omp parallel for schedule(static) if (m * k > 65536)
    for (int64_t i = 0; i < m; i++)
        lsr_round_bf16(g + (size_t)i * (size_t)ldg, block + (size_t)i * (size_t)ld, (size_t)k);
    if (dh)
        LSR_TRY(lsr_gemm_bf16(cache, 0, 0, (int)m, (int)d, (int)k, g, (int)ldg, w, (int)d, 0, dh,
                              (int)ldh));
    if (dw)
        LSR_TRY(lsr_gemm_bf16(cache, 1, 0, (int)k, (int)d, (int)m, g, (int)ldg, hb, (int)ldh,
                              !first, dw, (int)d));
    return LSR_OK;
}

static lsr_status fused(float *loss, float *dh, float *dw, float *db, lsr_loss_stats *stats,
                        const void *h, int64_t ldh, const void *w, const float *bias,
                        const int64_t *labels, int64_t n, int64_t d, int64_t k,
                        const float *row_scale, const lsr_loss_options *opt) {
    /* LSR_LINEAR_ROWS rows, fewer (a multiple of 16 where it can) when their
     * logits would pass LINEAR_BLOCK_BYTES: a function of K alone, so the
     * blocks, and the order of dW's and db's sums, are those of any call with
     * this K */
    int64_t rows = LSR_LINEAR_ROWS;
    if ((double)rows * (double)k * sizeof(float) > LINEAR_BLOCK_BYTES) {
        rows = (int64_t)(LINEAR_BLOCK_BYTES / ((double)k * sizeof(float)));
        if (rows >= 16) rows = rows / 16 * 16;
    }
    if (rows < 1) rows = 1;
    const int64_t ld = (k + 15) / 16 * 16; /* each block row starts on a cache line */
    float *block = aligned_alloc(64, (size_t)rows * (size_t)ld * sizeof(float));
    float *row_loss = malloc((size_t)rows * sizeof(float));
    double *db_sum = db ? calloc((size_t)k, sizeof(double)) : NULL;
    const int bf16 = opt->logits_dtype == LSR_DTYPE_BFLOAT16;
    const size_t in_size = lsr__dtype_size(opt->logits_dtype);
    lsr_gemm_bf16_cache *cache = bf16 ? lsr_gemm_bf16_cache_new() : NULL;
    if (!block || !row_loss || (db && !db_sum) || (bf16 && !cache)) {
        free(block);
        free(row_loss);
        free(db_sum);
        lsr_gemm_bf16_cache_free(cache);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %lld rows of %lld logits",
                         (long long)rows, (long long)k);
    }
    double ce_scale, z_scale;
    lsr__loss_divisors(&ce_scale, &z_scale, opt, labels, n);
#ifdef _OPENMP
    const int threads_before = omp_get_max_threads();
    if (opt->threads > 0) omp_set_num_threads(opt->threads); /* the products' threads */
#endif
    lsr__loss_sums total = {0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, -1};
    lsr_status status = LSR_OK;
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        const int64_t m = n - r0 < rows ? n - r0 : rows;
        const void *hb = (const char *)h + (size_t)r0 * (size_t)ldh * in_size;
        status = block_logits(block, ld, hb, ldh, w, bias, m, d, k, bf16, cache);
        if (status) break;
        lsr__loss_sums s;
        status = lsr__cross_entropy_rows(&s, row_loss, block, block, labels + r0, m, k, ld, opt,
                                         ce_scale, z_scale);
        if (status) break;
        total.loss += s.loss;
        total.label_ce += s.label_ce;
        total.prior_ce += s.prior_ce;
        total.max_prob += s.max_prob;
        total.lse += s.lse;
        total.valid += s.valid;
        total.hits += s.hits;
        if (s.first_bad >= 0) {
            if (total.first_bad < 0) total.first_bad = r0 + s.first_bad;
            for (int64_t i = 0; i < m; i++) /* no gradient from a row without a loss */
                if (isnan(row_loss[i]))
                    memset(block + (size_t)i * (size_t)ld, 0, (size_t)k * sizeof(float));
        }
        if (loss && opt->reduction == LSR_REDUCTION_NONE)
            memcpy(loss + r0, row_loss, (size_t)m * sizeof(float));
        scale_rows(block, ld, m, k, row_scale ? row_scale + r0 : NULL);
        if (db) /* from the float G (bf16: before it is rounded for the products) */
            for (int64_t i = 0; i < m; i++) {
                const float *g = block + (size_t)i * (size_t)ld;
                for (int64_t j = 0; j < k; j++)
                    db_sum[j] += g[j];
            }
        status = block_gradients(dh ? dh + (size_t)r0 * (size_t)ldh : NULL, dw, block, ld, hb, ldh,
                                 w, m, d, k, r0 == 0, bf16, cache);
        if (status) break;
    }
#ifdef _OPENMP
    omp_set_num_threads(threads_before);
#endif
    if (status == LSR_OK) {
        if (n == 0 && dw) memset(dw, 0, (size_t)k * (size_t)d * sizeof(float));
        if (db)
            for (int64_t j = 0; j < k; j++)
                db[j] = (float)db_sum[j];
        if (loss && opt->reduction != LSR_REDUCTION_NONE)
            loss[0] = total.first_bad >= 0 ? NAN : (float)total.loss;
        write_stats(stats, &total);
        if (total.first_bad >= 0) status = nonfinite(total.first_bad);
    }
    free(block);
    free(row_loss);
    free(db_sum);
    lsr_gemm_bf16_cache_free(cache);
    return status;
}

lsr_status lsr_linear_cross_entropy(float *loss, float *dh, float *dw, float *db,
                                    lsr_loss_stats *stats, const void *h, int64_t ldh,
                                    const void *w, const float *bias, const int64_t *labels,
                                    int64_t n, int64_t d, int64_t k, const float *row_scale,
                                    const lsr_loss_options *options) {
    lsr_loss_options opt;
    LSR_TRY(validate(&opt, loss, dh, dw, db, stats, h, ldh, w, bias, labels, n, d, k, row_scale,
                     options));
    if (opt.logits_dtype == LSR_DTYPE_BFLOAT16) LSR_TRY(lsr_gemm_bf16_available());
    return fused(loss, dh, dw, db, stats, h, ldh, w, bias, labels, n, d, k, row_scale, &opt);
}

lsr_status lsr_linear_cross_entropy_reference(float *loss, float *dh, float *dw, float *db,
                                              lsr_loss_stats *stats, const void *h, int64_t ldh,
                                              const void *w, const float *bias,
                                              const int64_t *labels, int64_t n, int64_t d,
                                              int64_t k, const float *row_scale,
                                              const lsr_loss_options *options) {
    lsr_loss_options opt;
    LSR_TRY(validate(&opt, loss, dh, dw, db, stats, h, ldh, w, bias, labels, n, d, k, row_scale,
                     options));
    /* bf16 H and W: their values as floats (exact), and then all in float */
    const float *hf = h, *wf = w;
    float *h_owned = NULL, *w_owned = NULL;
    const int bf16 = opt.logits_dtype == LSR_DTYPE_BFLOAT16;
    if (bf16) {
        h_owned = malloc((size_t)(n ? n : 1) * (size_t)ldh * sizeof(float));
        w_owned = malloc((size_t)k * (size_t)d * sizeof(float));
        for (size_t i = 0; h_owned && i < (size_t)n * (size_t)ldh; i++)
            h_owned[i] = lsr_bf16_to_float(((const uint16_t *)h)[i]);
        for (size_t i = 0; w_owned && i < (size_t)k * (size_t)d; i++)
            w_owned[i] = lsr_bf16_to_float(((const uint16_t *)w)[i]);
        hf = h_owned, wf = w_owned;
        opt.logits_dtype = LSR_DTYPE_FLOAT32; /* of the logits below */
    }
    const size_t cells = (size_t)(n ? n : 1) * (size_t)k;
    /* g starts at 0: rows without a loss are left alone by the loss, and so give
     * no gradient */
    float *z = malloc(cells * sizeof(float)), *g = calloc(cells, sizeof(float));
    if (!z || !g || (bf16 && (!h_owned || !w_owned))) {
        free(z);
        free(g);
        free(h_owned);
        free(w_owned);
        return lsr__fail(LSR_ERROR_OUT_OF_MEMORY, "out of memory for %lld x %lld logits",
                         (long long)n, (long long)k);
    }
    for (int64_t i = 0; i < n; i++) /* z = b + H W^T, each summed in double and rounded once */
        for (int64_t j = 0; j < k; j++)
            z[(size_t)i * (size_t)k + (size_t)j] = bias ? bias[j] : 0.0f;
    lsr_gemm_reference(0, 1, (int)n, (int)k, (int)d, 1.0f, hf, (int)ldh, wf, (int)d,
                       bias ? 1.0f : 0.0f, z, (int)k);
    lsr_status s = lsr_cross_entropy_reference(loss, g, stats, z, labels, n, k, k, &opt);
    if (s == LSR_OK || s == LSR_ERROR_NONFINITE) {
        scale_rows(g, k, n, k, row_scale);
        const lsr_status loss_status = s;
        const char *message = lsr_last_error();
        char kept[1024];
        strncpy(kept, message, sizeof kept - 1);
        kept[sizeof kept - 1] = '\0';
        if (dh)
            lsr_gemm_reference(0, 0, (int)n, (int)d, (int)k, 1.0f, g, (int)k, wf, (int)d, 0.0f, dh,
                               (int)ldh);
        if (dw)
            lsr_gemm_reference(1, 0, (int)k, (int)d, (int)n, 1.0f, g, (int)k, hf, (int)ldh, 0.0f,
                               dw, (int)d);
        if (db)
            for (int64_t j = 0; j < k; j++) {
                double sum = 0.0;
                for (int64_t i = 0; i < n; i++)
                    sum += g[(size_t)i * (size_t)k + (size_t)j];
                db[j] = (float)sum;
            }
        if (loss_status) s = lsr__fail(loss_status, "%s", kept);
    }
    free(z);
    free(g);
    free(h_owned);
    free(w_owned);
    return s;
}
