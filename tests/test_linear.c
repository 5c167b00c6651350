/* lsr_linear_cross_entropy against its reference (full logits, the loss's
 * reference, products summed in double) within bounds derived from the
 * float arithmetic; the reference against central differences; 1 and 2
 * threads bit-identical; bad input refused before any output is written. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "loss/bf16.h"
#include "lsr/linear.h"
#include "net/net.h"
#include "rng.h"

/* a count for malloc: at least 1 (and visibly not negative to the compiler) */
static size_t count_of(int64_t x) { return x > 0 ? (size_t)x : 1; }

typedef struct problem {
    int64_t n, d, k, ldh;
    float *h, *w, *bias, *prior, *weights;
    int64_t *labels;
    uint16_t *h16, *w16; /* bf16 H and W, or NULL: what a bf16 call reads */
} problem;

static void problem_init(problem *p, int64_t n, int64_t d, int64_t k, int64_t pad, int with_bias,
                         double scale) {
    p->n = n, p->d = d, p->k = k, p->ldh = d + pad;
    p->h16 = p->w16 = NULL;
    p->h = malloc(count_of(n) * count_of(p->ldh) * sizeof(float));
    p->w = malloc(count_of(k) * count_of(d) * sizeof(float));
    p->bias = with_bias ? malloc(count_of(k) * sizeof(float)) : NULL;
    p->prior = malloc(count_of(k) * sizeof(float));
    p->weights = malloc(count_of(k) * sizeof(float));
    p->labels = malloc(count_of(n) * sizeof(int64_t));
    for (int64_t i = 0; i < n * p->ldh; i++)
        p->h[i] = (float)rng_normal();
    for (int64_t i = 0; i < k * d; i++)
        p->w[i] = (float)(scale * rng_normal() / sqrt((double)d));
    double sum = 0.0;
    for (int64_t j = 0; j < k; j++) {
        if (p->bias) p->bias[j] = (float)rng_normal();
        p->prior[j] = (float)(0.05 + rng_uniform());
        sum += p->prior[j];
        p->weights[j] = (float)(0.1 + 1.9 * rng_uniform());
    }
    for (int64_t j = 0; j < k; j++)
        p->prior[j] = (float)(p->prior[j] / sum);
    for (int64_t i = 0; i < n; i++)
        p->labels[i] =
            rng_next() % 5 == 0 ? LSR_IGNORE_INDEX_DEFAULT : (int64_t)(rng_next() % (uint64_t)k);
}

static void problem_free(problem *p) {
    free(p->h), free(p->w), free(p->bias), free(p->prior), free(p->weights), free(p->labels);
    free(p->h16), free(p->w16);
}

/* H and W rounded to bf16 (nearest even): h16 and w16, and h and w their
 * exact values as floats, for the bounds and the float calls. */
static void problem_round_bf16(problem *p) {
    const size_t nh = count_of(p->n) * count_of(p->ldh), nw = count_of(p->k) * count_of(p->d);
    p->h16 = malloc(nh * sizeof(uint16_t));
    p->w16 = malloc(nw * sizeof(uint16_t));
    for (size_t i = 0; i < (size_t)(p->n * p->ldh); i++) {
        p->h16[i] = lsr_bf16_from_float(p->h[i]);
        p->h[i] = lsr_bf16_to_float(p->h16[i]);
    }
    for (size_t i = 0; i < (size_t)(p->k * p->d); i++) {
        p->w16[i] = lsr_bf16_from_float(p->w[i]);
        p->w[i] = lsr_bf16_to_float(p->w16[i]);
    }
}

typedef struct result {
    lsr_status status;
    float *loss, *dh, *dw, *db;
    lsr_loss_stats stats;
} result;

static void run(result *r, const problem *p, const lsr_loss_options *o, int reference,
                const float *row_scale) {
    const size_t nl = count_of(p->n);
    r->loss = malloc(nl * sizeof(float));
    r->dh = malloc(nl * count_of(p->ldh) * sizeof(float));
    r->dw = malloc(count_of(p->k) * count_of(p->d) * sizeof(float));
    r->db = malloc(count_of(p->k) * sizeof(float));
    for (size_t i = 0; i < nl * count_of(p->ldh); i++)
        r->dh[i] = 7.0f; /* the padding must stay */
    const int bf16 = o->logits_dtype == LSR_DTYPE_BFLOAT16;
    r->status = (reference ? lsr_linear_cross_entropy_reference : lsr_linear_cross_entropy)(
        r->loss, r->dh, r->dw, r->db, &r->stats, bf16 ? (const void *)p->h16 : p->h, p->ldh,
        bf16 ? (const void *)p->w16 : p->w, p->bias, p->labels, p->n, p->d, p->k, row_scale, o);
}

static void result_free(result *r) { free(r->loss), free(r->dh), free(r->dw), free(r->db); }

/* |fast - reference| bounds from the arithmetic (u = 2^-24):
 *   logits: delta_n = (D + 2) u max_k sum_d |h_nd w_kd| + u |b| (the product's sum);
 *   gradient entry G = p A - c: a logit error delta moves p by a factor
 *     within exp(+-2 delta), so |dG| <= 2.1 delta (|G| + C) with C >= c the
 *     row's largest coefficient (scale x largest weight), plus the loss
 *     kernel's own 1e-4 |G| + 1e-6 max|G| + 1e-7 C (test_loss's bound);
 *   dh, dw, db: the sums of those errors times |w|, |h| or 1, plus the
 *     products' own (K + 2) u or (N + 2) u times the sums of |G||w|, |G||h|;
 *   loss: per row 2 delta_n C (C with the z-loss's 2 lambda |lse| per row) and
 *   2e-5 relative.
 * With bf16 H and W (p's floats hold their exact values) the logits' bound is
 * the same (each product of two bf16 is exact in float); G is rounded to
 * bf16 for the dh and dw products: |round(G') - G| <= |G' - G| + 2^-8 |G'|,
 * 2^-8 being bf16's unit roundoff (8 significant bits: a value just above a
 * power of two moves by up to 2^-8 of itself; 2^-9 fails), hence g_round =
 * 2^-8 of |G| and of G's own error more there.  (Subnormals flushed to zero
 * stay within the bounds' absolute 1e-6 max|G|.) */
static int within_bounds(const problem *p, const lsr_loss_options *o, const result *f,
                         const result *r, const char *what, int exact_logits,
                         const float *row_scale, double g_round) {
    const double u = 0x1p-24;
    const int64_t n = p->n, d = p->d, k = p->k;
    double wmax = 1.0;
    if (o->class_weights)
        for (int64_t j = 0; j < k; j++)
            wmax = fmax(wmax, o->class_weights[j]);
    double divisor = 0.0;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++)
        if (p->labels[i] != o->ignore_index) {
            valid++;
            divisor += o->class_weights ? o->class_weights[p->labels[i]] : 1.0;
        }
    const double scale = o->reduction == LSR_REDUCTION_MEAN && divisor > 0 ? 1.0 / divisor : 1.0;
    const double zscale =
        o->reduction == LSR_REDUCTION_MEAN && valid > 0 ? 1.0 / (double)valid : 1.0;
    double *delta = calloc(count_of(n), sizeof(double));
    double *gerr = calloc(count_of(n) * count_of(k), sizeof(double));
    double gmax = 0.0;
    /* the reference's gradient of the logits is not an output: rebuild |G| from
     * a reference loss call on its logits */
    float *z = malloc(count_of(n) * count_of(k) * sizeof(float));
    float *g = malloc(count_of(n) * count_of(k) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        double worst = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double s = p->bias ? p->bias[j] : 0.0, mag = 0.0;
            for (int64_t c = 0; c < d; c++) {
                s += (double)p->h[i * p->ldh + c] * p->w[j * d + c];
                mag += fabs((double)p->h[i * p->ldh + c] * p->w[j * d + c]);
            }
            z[i * k + j] = (float)s;
            if (!exact_logits) worst = fmax(worst, (double)(d + 2) * u * mag + u * fabs(s));
        }
        delta[i] = worst;
    }
    double lse_max = 0.0; /* the z-loss gradient's coefficient 2 lambda lse, at its largest */
    for (int64_t i = 0; i < n; i++) {
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < k; j++)
            m = fmax(m, z[i * k + j]);
        for (int64_t j = 0; j < k; j++)
            s += exp(z[i * k + j] - m);
        lse_max = fmax(lse_max, fabs(m + log(s)) + 1.0);
    }
    const double C = scale * wmax + zscale * 2.0 * o->z_loss * lse_max;
    lsr_loss_options lo = *o;
    lsr_status st = lsr_cross_entropy_reference(NULL, g, NULL, z, p->labels, n, k, k, &lo);
    int ok = st == LSR_OK;
    for (int64_t i = 0; i < n * k; i++)
        gmax = fmax(gmax, fabs(g[i]));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
            const double gij = fabs(g[i * k + j]);
            gerr[i * k + j] = 2.1 * delta[i] * (gij + C) + 1e-4 * gij + 1e-6 * gmax + 1e-7 * C;
        }
    for (int64_t i = 0; row_scale && i < n; i++) /* the products see the scaled rows */
        for (int64_t j = 0; j < k; j++) {
            g[i * k + j] *= row_scale[i];
            gerr[i * k + j] *= fabs(row_scale[i]) * (1.0 + 2.0 * u); /* and its rounding */
        }
    /* loss */
    double loss_bound = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (p->labels[i] != o->ignore_index) loss_bound += 2.0 * delta[i] * C;
    if (o->reduction != LSR_REDUCTION_NONE && n > 0) {
        const double diff = fabs((double)f->loss[0] - r->loss[0]);
        const int good = diff <= loss_bound + 2e-5 * fabs(r->loss[0]) + 2e-6;
        CHECK(good, "%s: loss %.9g ref %.9g (bound %.3g)", what, (double)f->loss[0],
              (double)r->loss[0], loss_bound);
        ok &= good;
    }
    for (int64_t i = 0; o->reduction == LSR_REDUCTION_NONE && i < n && ok; i++) {
        const double b = 2.0 * delta[i] * (wmax + 2.0 * o->z_loss * lse_max);
        const int good =
            fabs((double)f->loss[i] - r->loss[i]) <= b + 2e-5 * fabs(r->loss[i]) + 2e-6;
        CHECK(good, "%s: loss[%lld] %.9g ref %.9g", what, (long long)i, (double)f->loss[i],
              (double)r->loss[i]);
        ok &= good;
    }
    /* dh */
    for (int64_t i = 0; i < n && ok; i++)
        for (int64_t c = 0; c < p->ldh && ok; c++) {
            const size_t at = (size_t)(i * p->ldh + c);
            if (c >= d) {
                ok &= f->dh[at] == 7.0f;
                CHECK(f->dh[at] == 7.0f, "%s: dh padding [%lld][%lld] written", what, (long long)i,
                      (long long)c);
                continue;
            }
            double b = 0.0, mag = 0.0;
            for (int64_t j = 0; j < k; j++) {
                b += (gerr[i * k + j] * (1.0 + g_round) + g_round * fabs(g[i * k + j])) *
                     fabs(p->w[j * d + c]);
                mag += fabs(g[i * k + j] * p->w[j * d + c]);
            }
            b += (double)(k + 2) * u * mag;
            const int good = fabs((double)f->dh[at] - r->dh[at]) <= b;
            CHECK(good, "%s: dh[%lld][%lld] %.9g ref %.9g bound %.3g", what, (long long)i,
                  (long long)c, (double)f->dh[at], (double)r->dh[at], b);
            ok &= good;
        }
    /* dw, db */
    for (int64_t j = 0; j < k && ok; j++) {
        double bb = 0.0, magb = 0.0;
        for (int64_t i = 0; i < n; i++) {
            bb += gerr[i * k + j];
            magb += fabs(g[i * k + j]);
        }
        bb += (double)(n + 2) * u * magb;
        const int goodb = fabs((double)f->db[j] - r->db[j]) <= bb;
        CHECK(goodb, "%s: db[%lld] %.9g ref %.9g bound %.3g", what, (long long)j, (double)f->db[j],
              (double)r->db[j], bb);
        ok &= goodb;
        for (int64_t c = 0; c < d && ok; c++) {
            double b = 0.0, mag = 0.0;
            for (int64_t i = 0; i < n; i++) {
                b += (gerr[i * k + j] * (1.0 + g_round) + g_round * fabs(g[i * k + j])) *
                     fabs(p->h[i * p->ldh + c]);
                mag += fabs(g[i * k + j] * p->h[i * p->ldh + c]);
            }
            b += (double)(n + 2) * u * mag;
            const int good = fabs((double)f->dw[j * d + c] - r->dw[j * d + c]) <= b;
            CHECK(good, "%s: dw[%lld][%lld] %.9g ref %.9g bound %.3g", what, (long long)j,
                  (long long)c, (double)f->dw[j * d + c], (double)r->dw[j * d + c], b);
            ok &= good;
        }
    }
    if (ok) {
        const int good =
            f->stats.valid_rows == r->stats.valid_rows &&
            fabs(f->stats.label_ce - r->stats.label_ce) <=
                2e-5 * fabs(r->stats.label_ce) + 2e-6 + 4 * loss_bound / (scale * wmax) &&
            fabs(f->stats.mean_lse - r->stats.mean_lse) <=
                2e-5 * fabs(r->stats.mean_lse) + 2e-6 + 4 * loss_bound / (scale * wmax);
        CHECK(good, "%s: stats differ: label_ce %.9g ref %.9g", what, f->stats.label_ce,
              r->stats.label_ce);
        ok &= good;
    }
    free(delta), free(gerr), free(z), free(g);
    return ok;
}

static int same_bits(const problem *p, const lsr_loss_options *o, const result *a,
                     const result *b) {
    const size_t nl = o->reduction == LSR_REDUCTION_NONE ? (size_t)p->n : 1;
    return a->status == b->status && memcmp(a->loss, b->loss, nl * sizeof(float)) == 0 &&
           memcmp(a->dh, b->dh, (size_t)p->n * count_of(p->ldh) * sizeof(float)) == 0 &&
           memcmp(a->dw, b->dw, count_of(p->k) * count_of(p->d) * sizeof(float)) == 0 &&
           memcmp(a->db, b->db, count_of(p->k) * sizeof(float)) == 0 &&
           memcmp(&a->stats, &b->stats, sizeof a->stats) == 0;
}

static lsr_loss_options random_options(const problem *p) {
    static const float eps[] = {0.0f, 0.1f, 1.0f};
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = eps[rng_next() % 3];
    if (p->k > 1 && rng_next() % 2) o.convention = LSR_SMOOTHING_OTHERS;
    if (rng_next() % 3 == 0) o.prior = p->prior;
    if (rng_next() % 3 == 0) o.class_weights = p->weights;
    if (rng_next() % 3 == 0) o.z_loss = 1e-3f;
    o.reduction = (lsr_reduction)(rng_next() % 3);
    o.threads = 2;
    return o;
}

/* Shapes around the block (256 rows; 224 at K = 70000) and the loss's
 * chunk (1536 logits) edges, D = 1,
 * K = 1, N = 0, with and without bias, random options: fused = reference
 * within the bounds, 1 thread = 2 threads bit for bit.  One case in four
 * has small integers for H and W (exact logits: the bounds are then the
 * loss kernel's and the gradient products' alone). */
static void test_against_reference(void) {
    static const int64_t shapes[][3] = {
        {0, 3, 5},      {1, 1, 1},     {5, 1, 7},     {7, 3, 1},     {64, 5, 33},  {70, 5, 33},
        {130, 17, 300}, {65, 8, 1537}, {3, 4, 20000}, {129, 33, 10}, {257, 3, 40}, {230, 2, 70000}};
    int cases = 0, failures = 0;
    /* the bf16 cases where this lsr and CPU have bf16 products (else
     * test_bf16_refused holds the call to its refusal) */
    const int bf16_products = lsr_gemm_bf16_available() == LSR_OK;
    if (!bf16_products) printf("no bf16 products here: %s\n", lsr_last_error());
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int rep = 0; rep < 4; rep++) {
            problem p;
            problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], rep % 2 ? 3 : 0, rep < 2,
                         rep == 3 ? 8.0 : 2.0);
            if (rep == 2) { /* small integers and halves: every logit exact in float */
                for (int64_t i = 0; i < p.n * p.ldh; i++)
                    p.h[i] = (float)((int)(rng_next() % 5) - 2);
                for (int64_t i = 0; i < p.k * p.d; i++)
                    p.w[i] = 0.5f * (float)((int)(rng_next() % 5) - 2);
            }
            lsr_loss_options o = random_options(&p);
            char what[160];
            snprintf(what, sizeof what,
                     "n=%lld d=%lld k=%lld bias=%d eps=%g conv=%d prior=%d "
                     "weights=%d z=%g red=%d",
                     (long long)p.n, (long long)p.d, (long long)p.k, p.bias != NULL,
                     (double)o.smoothing, (int)o.convention, o.prior != NULL,
                     o.class_weights != NULL, (double)o.z_loss, (int)o.reduction);
            /* one case in four scales the rows (an upstream gradient) */
            float *row_scale = NULL;
            if (rep == 1) {
                row_scale = malloc(count_of(p.n) * sizeof(float));
                for (int64_t i = 0; i < p.n; i++)
                    row_scale[i] = (float)(3.0 * rng_uniform() - 1.0);
            }
            result f, r, f1;
            run(&f, &p, &o, 0, row_scale);
            run(&r, &p, &o, 1, row_scale);
            lsr_loss_options o1 = o;
            o1.threads = 1;
            run(&f1, &p, &o1, 0, row_scale);
            int ok = f.status == LSR_OK && r.status == LSR_OK && f1.status == LSR_OK;
            CHECK(ok, "%s: status fused %s reference %s (%s)", what, lsr_status_name(f.status),
                  lsr_status_name(r.status), lsr_last_error());
            if (ok) ok = within_bounds(&p, &o, &f, &r, what, rep == 2, row_scale, 0.0);
            if (ok) {
                ok = same_bits(&p, &o, &f, &f1);
                CHECK(ok, "%s: 1 and 2 threads differ", what);
            }
            cases++;
            failures += !ok;
            result_free(&f), result_free(&r), result_free(&f1);
            if (bf16_products) { /* the same case with H and W rounded to bf16 */
                problem_round_bf16(&p);
                lsr_loss_options ob = o, ob1 = o;
                ob.logits_dtype = ob1.logits_dtype = LSR_DTYPE_BFLOAT16;
                ob1.threads = 1;
                result rf; /* the reference on the rounded values as floats */
                run(&f, &p, &ob, 0, row_scale);
                run(&r, &p, &ob, 1, row_scale);
                run(&rf, &p, &o, 1, row_scale);
                run(&f1, &p, &ob1, 0, row_scale);
                ok = f.status == LSR_OK && r.status == LSR_OK && f1.status == LSR_OK;
                CHECK(ok, "bf16 %s: status fused %s reference %s (%s)", what,
                      lsr_status_name(f.status), lsr_status_name(r.status), lsr_last_error());
                if (ok) {
                    ok = same_bits(&p, &o, &r, &rf);
                    CHECK(ok, "bf16 %s: the reference of bf16 H, W and of their floats differ",
                          what);
                }
                if (ok) ok = within_bounds(&p, &o, &f, &r, what, rep == 2, row_scale, 0x1p-8);
                if (ok) {
                    ok = same_bits(&p, &o, &f, &f1);
                    CHECK(ok, "bf16 %s: 1 and 2 threads differ", what);
                }
                cases++;
                failures += !ok;
                result_free(&f), result_free(&r), result_free(&f1), result_free(&rf);
            }
            free(row_scale);
            problem_free(&p);
        }
    printf("fused against reference: %d cases, %d disagreements\n", cases, failures);
}

/* The reference's gradients against central differences of its own loss (in
 * float, step 1e-2 on values of order 1: 3e-3 relative + 3e-4). */
static void test_reference_finite_differences(void) {
    problem p;
    problem_init(&p, 4, 3, 5, 1, 1, 1.0);
    p.labels[0] = 1; /* at least one row counted */
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = 0.2f;
    o.class_weights = p.weights;
    o.z_loss = 1e-2f;
    result r;
    /* the loss differentiated: sum_n s_n loss_n, the per-row losses scaled by s */
    o.reduction = LSR_REDUCTION_NONE;
    const float scale[4] = {0.5f, -1.0f, 2.0f, 1.5f};
    run(&r, &p, &o, 1, scale);
    CHECK(r.status == LSR_OK, "reference: %s", lsr_last_error());
    const float step = 1e-2f;
    float *params[3] = {p.h, p.w, p.bias};
    const float *grads[3] = {r.dh, r.dw, r.db};
    const int64_t counts[3] = {p.n * p.ldh, p.k * p.d, p.k};
    int bad = 0;
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < counts[t]; i++) {
            if (t == 0 && i % p.ldh >= p.d) continue;
            const float keep = params[t][i];
            float rows_p[4], rows_m[4];
            params[t][i] = keep + step;
            lsr_linear_cross_entropy_reference(rows_p, NULL, NULL, NULL, NULL, p.h, p.ldh, p.w,
                                               p.bias, p.labels, p.n, p.d, p.k, NULL, &o);
            params[t][i] = keep - step;
            lsr_linear_cross_entropy_reference(rows_m, NULL, NULL, NULL, NULL, p.h, p.ldh, p.w,
                                               p.bias, p.labels, p.n, p.d, p.k, NULL, &o);
            params[t][i] = keep;
            double lp = 0.0, lm = 0.0;
            for (int row = 0; row < 4; row++)
                lp += scale[row] * (double)rows_p[row], lm += scale[row] * (double)rows_m[row];
            const double fd = (lp - lm) / (2.0 * step);
            if (fabs(fd - grads[t][i]) > 3e-3 * fabs(fd) + 3e-4) {
                CHECK(0, "finite differences: %s[%lld] analytic %.6g numeric %.6g",
                      t == 0   ? "dh"
                      : t == 1 ? "dw"
                               : "db",
                      (long long)i, (double)grads[t][i], fd);
                bad++;
            }
        }
    printf("reference against finite differences: %d disagreements\n", bad);
    result_free(&r);
    problem_free(&p);
}

/* Logits beyond float: the row gets no gradient, the loss is NaN, the status names the row. */
static void test_nonfinite_rows(void) {
    problem p;
    problem_init(&p, 3, 2, 4, 0, 0, 1.0);
    for (int64_t i = 0; i < 3; i++)
        p.labels[i] = 1;
    p.h[2] = 3e38f, p.h[3] = 3e38f; /* row 1 */
    p.w[0] = 2.0f, p.w[1] = 2.0f;   /* its class-0 logit overflows */
    lsr_loss_options o = lsr_loss_options_default();
    for (int reference = 0; reference <= 1; reference++) {
        result r;
        run(&r, &p, &o, reference, NULL);
        CHECK(r.status == LSR_ERROR_NONFINITE && strstr(lsr_last_error(), "row 1") &&
                  isnan(r.loss[0]),
              "non-finite (reference %d): %s '%s' loss %g", reference, lsr_status_name(r.status),
              lsr_last_error(), (double)r.loss[0]);
        CHECK(r.dh[2] == 0.0f && r.dh[3] == 0.0f && r.dh[0] != 0.0f,
              "non-finite (reference %d): row 1 has a gradient or row 0 none", reference);
        result_free(&r);
    }
    problem_free(&p);
}

/* Every bad input: its status, a message naming it, nothing written. */
static void test_bad_input(void) {
    problem p;
    problem_init(&p, 3, 2, 4, 0, 1, 1.0);
    float loss = -5.0f, dh[6], dw[8], db[4];
    for (int i = 0; i < 8; i++)
        dw[i] = -5.0f;
    lsr_loss_options o = lsr_loss_options_default();
#define EXPECT(call, want, needle)                                                                 \
    do {                                                                                           \
        lsr_status s_ = (call);                                                                    \
        CHECK(s_ == (want) && strstr(lsr_last_error(), needle), "%s: %s '%s'", #call,              \
              lsr_status_name(s_), lsr_last_error());                                              \
        CHECK(loss == -5.0f && dw[0] == -5.0f, "%s: an output was written", #call);                \
    } while (0)
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, -1, 2,
                                    4, NULL, &o),
           LSR_ERROR_SIZE, "n");
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 0, 4,
                                    NULL, &o),
           LSR_ERROR_SIZE, "d");
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 1, p.w, p.bias, p.labels, 3, 2, 4,
                                    NULL, &o),
           LSR_ERROR_SIZE, "ldh");
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, NULL, p.bias, p.labels, 3, 2,
                                    4, NULL, &o),
           LSR_ERROR_NULL_ARGUMENT, "w");
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, NULL, 2, p.w, p.bias, p.labels, 3, 2,
                                    4, NULL, &o),
           LSR_ERROR_NULL_ARGUMENT, "h");
    p.labels[2] = 4;
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 2, 4,
                                    NULL, &o),
           LSR_ERROR_LABEL, "labels[2]");
    p.labels[2] = 0;
    o.smoothing = 2.0f;
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 2, 4,
                                    NULL, &o),
           LSR_ERROR_SMOOTHING, "smoothing");
    o = lsr_loss_options_default();
    o.grad_dtype = LSR_DTYPE_BFLOAT16;
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 2, 4,
                                    NULL, &o),
           LSR_ERROR_UNSUPPORTED, "grad_dtype");
    o = lsr_loss_options_default();
    o.logits_dtype = (lsr_dtype)7;
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 2, 4,
                                    NULL, &o),
           LSR_ERROR_OPTION, "logits_dtype");
    if (lsr_gemm_bf16_available() != LSR_OK) { /* bf16 H and W refused, and said why */
        o = lsr_loss_options_default();
        o.logits_dtype = LSR_DTYPE_BFLOAT16;
        EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3,
                                        2, 4, NULL, &o),
               LSR_ERROR_UNSUPPORTED, "bf16");
    }
    o = lsr_loss_options_default();
    EXPECT(lsr_linear_cross_entropy(&loss, dh, p.w, db, NULL, p.h, 2, p.w, p.bias, p.labels, 3, 2,
                                    4, NULL, &o),
           LSR_ERROR_OVERLAP, "dw overlaps w");
    EXPECT(lsr_linear_cross_entropy(&loss, dh, dw, dh + 2, NULL, p.h, 2, p.w, p.bias, p.labels, 3,
                                    2, 4, NULL, &o),
           LSR_ERROR_OVERLAP, "dh overlaps db");
#undef EXPECT
    problem_free(&p);
}

/* lsr_gemm_bf16 against its reference, many shapes through one cache (over
 * a hundred tile shapes for its 32 slots, so that it must evict while
 * products run: this caught a product using a slot it had lost), every transpose, with and without
 * adding to C: each element within (K + 2) u sum |a b| (+ u |C| when adding) of the exact sum. */
static void test_bf16_products(void) {
    if (lsr_gemm_bf16_available() != LSR_OK) return;
    lsr_gemm_bf16_cache *cache = lsr_gemm_bf16_cache_new();
    static const int sizes[][3] = {{1, 1, 1},        {127, 255, 3},  {128, 256, 2048},
                                   {129, 257, 2049}, {3, 300, 4100}, {5, 513, 2047},
                                   {300, 7, 5000},   {256, 256, 1},  {130, 2, 4097}};
    int bad = 0, products = 0;
    for (size_t sz = 0; sz < sizeof sizes / sizeof sizes[0]; sz++)
        for (int variant = 0; variant < 8; variant++) {
            const int M = sizes[sz][0], N = sizes[sz][1], K = sizes[sz][2];
            const int ta = variant & 1, tb = (variant >> 1) & 1, acc = (variant >> 2) & 1;
            const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
            const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
            uint16_t *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
            float *c = malloc((size_t)M * ldc * sizeof *c), *r = malloc((size_t)M * ldc * 4);
            for (size_t i = 0; i < na; i++)
                a[i] = lsr_bf16_from_float((float)rng_normal());
            for (size_t i = 0; i < nb; i++)
                b[i] = lsr_bf16_from_float((float)rng_normal());
            for (size_t i = 0; i < (size_t)M * ldc; i++)
                c[i] = r[i] = (float)rng_normal();
            const lsr_status st =
                lsr_gemm_bf16(cache, ta, tb, M, N, K, a, lda, b, ldb, acc, c, ldc);
            lsr_gemm_bf16_reference(ta, tb, M, N, K, a, lda, b, ldb, acc, r, ldc);
            CHECK(st == LSR_OK, "bf16 product %dx%dx%d: %s", M, N, K, lsr_last_error());
            for (int i = 0; i < M && st == LSR_OK; i++)
                for (int j = 0; j < ldc; j++) {
                    const size_t at = (size_t)i * ldc + j;
                    if (j >= N) { /* past the columns: untouched */
                        bad += c[at] != r[at];
                        continue;
                    }
                    double mag = 0.0;
                    for (int k = 0; k < K; k++)
                        mag += fabs((double)lsr_bf16_to_float(ta ? a[(size_t)k * lda + i]
                                                                 : a[(size_t)i * lda + k]) *
                                    lsr_bf16_to_float(tb ? b[(size_t)j * ldb + k]
                                                         : b[(size_t)k * ldb + j]));
                    const double bound = (K + 2) * 0x1p-24 * mag + 0x1p-24 * fabs(r[at]);
                    if (fabs((double)c[at] - r[at]) > bound) {
                        if (bad < 5)
                            CHECK(0,
                                  "bf16 product %dx%dx%d ta %d tb %d acc %d: C[%d][%d] %.9g "
                                  "reference %.9g",
                                  M, N, K, ta, tb, acc, i, j, (double)c[at], (double)r[at]);
                        bad++;
                    }
                }
            products++;
            free(a), free(b), free(c), free(r);
        }
    lsr_gemm_bf16_cache_free(cache);
    CHECK(bad == 0, "bf16 products: %d elements outside their bounds", bad);
    printf("bf16 products against the reference: %d products, %d disagreements\n", products, bad);
}

/* bf16 products are there exactly where oneDNN is built in and the CPU has
 * AVX512_BF16. */
static void test_bf16_availability(void) {
    int expected = 0;
#if defined(LSR_HAVE_ONEDNN) && defined(_OPENMP) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    expected = __builtin_cpu_supports("avx512bf16") != 0;
#endif
    const int available = lsr_gemm_bf16_available() == LSR_OK;
    CHECK(available == expected, "bf16 products available %d, expected %d (%s)", available,
          expected, available ? "" : lsr_last_error());
}

int main(void) {
    rng_state = 0x2545f4914f6cdd1dull;
    test_bf16_availability();
    test_bf16_products();
    test_bad_input();
    test_nonfinite_rows();
    test_reference_finite_differences();
    test_against_reference();
    return check_summary();
}
