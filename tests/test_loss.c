/* The loss library against its reference, finite differences, closed forms
 * and every kind of bad input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "loss/bf16.h"
#include "loss/loss_internal.h"
#include "lsr/loss.h"
#include "rng.h"

static int close_enough(double got, double want, double rel, double abs_tol) {
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

static lsr_isa isas[3];
static int isa_count;

/* ---- one random problem ---- */
typedef struct problem {
    int64_t n, k, stride;
    int soft;
    float *logits;   /* (n, stride) */
    int64_t *labels; /* (n) */
    float *targets;  /* (n, stride) */
    float *prior;    /* (k) */
    float *weights;  /* (k) */
} problem;

static void problem_init(problem *p, int64_t n, int64_t k, int64_t pad, int soft, double scale,
                         double offset, int with_ignored) {
    p->n = n;
    p->k = k;
    p->stride = k + pad;
    p->soft = soft;
    size_t cells = (size_t)(n ? n : 1) * (size_t)p->stride;
    p->logits = malloc(cells * sizeof(float));
    p->targets = malloc(cells * sizeof(float));
    p->labels = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    p->prior = malloc((size_t)k * sizeof(float));
    p->weights = malloc((size_t)k * sizeof(float));
    for (size_t i = 0; i < cells; i++)
        p->logits[i] = (float)(offset + scale * rng_normal());
    for (int64_t i = 0; i < n; i++) {
        p->labels[i] = rng_below(k);
        if (with_ignored && rng_below(4) == 0) p->labels[i] = LSR_IGNORE_INDEX_DEFAULT;
        /* soft rows: a random distribution, every third row unnormalised */
        double sum = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double v = rng_below(3) == 0 ? 0.0 : rng_uniform();
            p->targets[i * p->stride + j] = (float)v;
            sum += v;
        }
        if (i % 3 != 2 && sum > 0)
            for (int64_t j = 0; j < k; j++)
                p->targets[i * p->stride + j] /= (float)sum;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < k; j++) {
        p->prior[j] = (float)(0.05 + rng_uniform());
        sum += p->prior[j];
        p->weights[j] = (float)(2.0 * rng_uniform());
    }
    for (int64_t j = 0; j < k; j++)
        p->prior[j] = (float)(p->prior[j] / sum);
}

static void problem_free(problem *p) {
    free(p->logits);
    free(p->targets);
    free(p->labels);
    free(p->prior);
    free(p->weights);
}

static lsr_status run_fast(const problem *p, float *loss, float *grad, lsr_loss_stats *st,
                           const lsr_loss_options *o) {
    return p->soft
               ? lsr_cross_entropy_soft(loss, grad, st, p->logits, p->targets, p->n, p->k,
                                        p->stride, o)
               : lsr_cross_entropy(loss, grad, st, p->logits, p->labels, p->n, p->k, p->stride, o);
}

static lsr_status run_reference(const problem *p, float *loss, float *grad, lsr_loss_stats *st,
                                const lsr_loss_options *o) {
    return p->soft ? lsr_cross_entropy_soft_reference(loss, grad, st, p->logits, p->targets, p->n,
                                                      p->k, p->stride, o)
                   : lsr_cross_entropy_reference(loss, grad, st, p->logits, p->labels, p->n, p->k,
                                                 p->stride, o);
}

static const char *describe(const problem *p, const lsr_loss_options *o, int in_place) {
    static char buf[256];
    snprintf(buf, sizeof buf,
             "n=%lld k=%lld stride=%lld soft=%d eps=%g conv=%d prior=%d weights=%d red=%d "
             "z=%g isa=%s threads=%d in_place=%d",
             (long long)p->n, (long long)p->k, (long long)p->stride, p->soft, (double)o->smoothing,
             (int)o->convention, o->prior != NULL, o->class_weights != NULL, (int)o->reduction,
             (double)o->z_loss, lsr_isa_name(o->isa), o->threads, in_place);
    return buf;
}

/* Bounds on |fast - reference| of the loss and the statistics, as
 * rel |reference| + abs; abs of a reduced loss covers all rows.  NULL in
 * compare_tol: 2e-5 and 2e-6. */
typedef struct tolerance {
    double loss_rel, loss_abs, stat_rel, stat_abs;
} tolerance;

/* Fast against reference for one problem and option set; also checks that
 * 1 and 2 threads give bit-identical results. Returns 1 when all agree. */
static int compare_tol(const problem *p, lsr_loss_options o, int in_place, const tolerance *tol) {
    static const tolerance fixed = {2e-5, 2e-6, 2e-5, 2e-6};
    if (!tol) tol = &fixed;
    const size_t cells = (size_t)(p->n ? p->n : 1) * (size_t)p->stride;
    const size_t nloss = o.reduction == LSR_REDUCTION_NONE ? (size_t)(p->n ? p->n : 1) : 1;
    float *g_ref = malloc(cells * sizeof(float)), *g_fast = malloc(cells * sizeof(float));
    float *g_fast1 = malloc(cells * sizeof(float));
    float *l_ref = malloc(nloss * sizeof(float)), *l_fast = malloc(nloss * sizeof(float));
    float *l_fast1 = malloc(nloss * sizeof(float));
    /* padding entries must stay untouched: fill with a sentinel */
    for (size_t i = 0; i < cells; i++)
        g_ref[i] = g_fast[i] = g_fast1[i] = 7.0f;
    lsr_loss_stats s_ref, s_fast, s_fast1;
    int ok = 1;

    lsr_status st_ref = run_reference(p, l_ref, g_ref, &s_ref, &o);
    lsr_status st_fast, st_fast1;
    lsr_loss_options o1 = o;
    o1.threads = 1;
    if (in_place) {
        /* grad written over a copy of the logits */
        problem q = *p;
        float *copy = malloc(cells * sizeof(float));
        memcpy(copy, p->logits, cells * sizeof(float));
        q.logits = copy;
        st_fast = run_fast(&q, l_fast, copy, &s_fast, &o);
        memcpy(g_fast, copy, cells * sizeof(float));
        for (size_t i = 0; i < cells; i++) /* padding of the in-place array is logits */
            if ((int64_t)(i % (size_t)p->stride) >= p->k) g_fast[i] = 7.0f;
        memcpy(copy, p->logits, cells * sizeof(float));
        st_fast1 = run_fast(&q, l_fast1, copy, &s_fast1, &o1);
        memcpy(g_fast1, copy, cells * sizeof(float));
        for (size_t i = 0; i < cells; i++)
            if ((int64_t)(i % (size_t)p->stride) >= p->k) g_fast1[i] = 7.0f;
        free(copy);
    } else {
        st_fast = run_fast(p, l_fast, g_fast, &s_fast, &o);
        st_fast1 = run_fast(p, l_fast1, g_fast1, &s_fast1, &o1);
    }
    const char *what = describe(p, &o, in_place);
    /* what the call may write: nothing of the rows when n = 0 */
    const size_t cells_out = (size_t)p->n * (size_t)p->stride;
    const size_t nloss_out = o.reduction == LSR_REDUCTION_NONE ? (size_t)p->n : 1;

    CHECK(st_ref == LSR_OK && st_fast == LSR_OK && st_fast1 == LSR_OK,
          "%s: status ref %s fast %s (%s)", what, lsr_status_name(st_ref), lsr_status_name(st_fast),
          lsr_last_error());
    if (st_ref || st_fast || st_fast1) ok = 0;

    for (size_t i = 0; ok && i < nloss_out; i++) {
        int good = close_enough(l_fast[i], l_ref[i], tol->loss_rel, tol->loss_abs);
        CHECK(good, "%s: loss[%zu] fast %.8g ref %.8g", what, i, (double)l_fast[i],
              (double)l_ref[i]);
        ok &= good;
    }
    if (ok) {
        /* per element 1e-4 relative, or absolutely 1e-6 of the largest
         * entry (p - q' cancels to rounding noise) plus about 1 ulp of one
         * row's largest coefficient, 1e-7 x (1/N for mean) x (2, the
         * largest class weight) x (2, margin for soft rows): with K = 1
         * every entry is 0 exactly, and only rounding is left, e.g. 3e-8
         * at N = 5 with weights and soft targets */
        double row_scale = o.reduction == LSR_REDUCTION_MEAN && p->n ? 1.0 / (double)p->n : 1.0;
        if (o.class_weights) row_scale *= 2.0;
        if (p->soft) row_scale *= 2.0;
        double gmax = 0.0;
        for (size_t i = 0; i < cells_out; i++)
            if (fabs(g_ref[i]) > gmax && g_ref[i] != 7.0f) gmax = fabs(g_ref[i]);
        for (size_t i = 0; i < cells_out; i++) {
            int good = close_enough(g_fast[i], g_ref[i], 1e-4, 1e-6 * gmax + 1e-7 * row_scale);
            if (!good) {
                CHECK(good, "%s: grad[%zu] fast %.8g ref %.8g (max %.3g)", what, i,
                      (double)g_fast[i], (double)g_ref[i], gmax);
                ok = 0;
                break;
            }
        }
    }
    if (ok) {
        int good =
            s_fast.valid_rows == s_ref.valid_rows && s_fast.top1_hits == s_ref.top1_hits &&
            close_enough(s_fast.label_ce, s_ref.label_ce, tol->stat_rel, tol->stat_abs) &&
            close_enough(s_fast.prior_ce, s_ref.prior_ce, tol->stat_rel, tol->stat_abs) &&
            close_enough(s_fast.mean_max_prob, s_ref.mean_max_prob, tol->stat_rel, tol->stat_abs) &&
            close_enough(s_fast.mean_lse, s_ref.mean_lse, tol->stat_rel, tol->stat_abs);
        CHECK(good,
              "%s: stats fast (%lld %lld %.8g %.8g %.8g %.8g) ref (%lld %lld %.8g %.8g %.8g %.8g)",
              what, (long long)s_fast.valid_rows, (long long)s_fast.top1_hits, s_fast.label_ce,
              s_fast.prior_ce, s_fast.mean_max_prob, s_fast.mean_lse, (long long)s_ref.valid_rows,
              (long long)s_ref.top1_hits, s_ref.label_ce, s_ref.prior_ce, s_ref.mean_max_prob,
              s_ref.mean_lse);
        ok &= good;
    }
    if (ok) {
        int same = memcmp(l_fast, l_fast1, nloss_out * sizeof(float)) == 0 &&
                   memcmp(g_fast, g_fast1, cells_out * sizeof(float)) == 0 &&
                   memcmp(&s_fast, &s_fast1, sizeof s_fast) == 0;
        CHECK(same, "%s: 1 thread and %d threads differ", what, o.threads);
        ok &= same;
    }
    free(g_ref);
    free(g_fast);
    free(g_fast1);
    free(l_ref);
    free(l_fast);
    free(l_fast1);
    return ok;
}

static int compare(const problem *p, lsr_loss_options o, int in_place) {
    return compare_tol(p, o, in_place, NULL);
}

static void setup_isas(void) {
    lsr_isa best = lsr_isa_detect();
    isa_count = 0;
    isas[isa_count++] = LSR_ISA_SCALAR;
    if (best >= LSR_ISA_AVX2) isas[isa_count++] = LSR_ISA_AVX2;
    if (best >= LSR_ISA_AVX512) isas[isa_count++] = LSR_ISA_AVX512;
    printf("instruction sets tested:");
    for (int i = 0; i < isa_count; i++)
        printf(" %s", lsr_isa_name(isas[i]));
    printf("\n");
}

static lsr_loss_options options_from_bits(const problem *p, unsigned bits, int isa_index) {
    static const float eps_values[3] = {0.0f, 0.1f, 1.0f};
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = eps_values[bits % 3];
    bits /= 3;
    o.convention = (bits & 1) ? LSR_SMOOTHING_OTHERS : LSR_SMOOTHING_ALL;
    if (o.convention == LSR_SMOOTHING_OTHERS && p->k == 1) o.convention = LSR_SMOOTHING_ALL;
    o.prior = (bits & 2) ? p->prior : NULL;
    o.class_weights = (bits & 4) ? p->weights : NULL;
    o.z_loss = (bits & 8) ? 1e-3f : 0.0f;
    bits >>= 4;
    o.reduction = (lsr_reduction)(bits % 3);
    o.isa = isas[isa_index];
    o.threads = 2;
    return o;
}

/* Every option combination, small shapes, every ISA: fast = reference within compare's bounds. */
static void test_all_combinations(void) {
    int failures = 0, cases = 0;
    for (int soft = 0; soft <= 1; soft++)
        for (int pad = 0; pad <= 3; pad += 3)
            for (int64_t k = 1; k <= 10; k += (k < 3 ? 1 : 7)) { /* 1, 2, 3, 10 */
                problem p;
                problem_init(&p, 21, k, pad, soft, 3.0, 0.0, !soft);
                for (unsigned bits = 0; bits < 3 * 16 * 3; bits++)
                    for (int isa = 0; isa < isa_count; isa++)
                        for (int in_place = 0; in_place <= 1; in_place++) {
                            cases++;
                            if (!compare(&p, options_from_bits(&p, bits, isa), in_place))
                                failures++;
                        }
                problem_free(&p);
            }
    printf("all combinations: %d cases, %d disagreements\n", cases, failures);
}

/* Large shapes (K up to 100003) with random options: fast = reference within compare's bounds. */
static void test_random_shapes(void) {
    static const int64_t ks[] = {1, 2, 3, 10, 1000, 32000, 100003};
    static const int64_t ns[] = {0, 1, 2, 5, 33, 130};
    int failures = 0, cases = 0;
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            const int64_t k = ks[a], n = ns[b];
            if (n * k > 3000000) continue;
            for (int soft = 0; soft <= 1; soft++) {
                problem p;
                problem_init(&p, n, k, (int64_t)rng_below(3), soft, 1.0 + 9.0 * rng_uniform(), 0.0,
                             !soft);
                int repeats = n * k > 200000 ? 3 : 8;
                for (int r = 0; r < repeats; r++) {
                    unsigned bits = (unsigned)rng_below(3 * 16 * 3);
                    lsr_loss_options o = options_from_bits(&p, bits, (int)rng_below(isa_count));
                    cases++;
                    if (!compare(&p, o, (int)rng_below(2))) failures++;
                }
                problem_free(&p);
            }
        }
    printf("random shapes: %d cases, %d disagreements\n", cases, failures);
}

/* Streamed (non-temporal) gradients: fast = reference within compare's bounds. */
static void test_streaming_gradient(void) {
    /* A gradient of more than 64 MiB goes out with non-temporal stores,
     * fenced once a row: every instruction set, in place and not, soft
     * targets too, and a stride that leaves the rows unaligned for
     * streaming. */
    int failures = 0, cases = 0;
    for (int soft = 0; soft <= 1; soft++) {
        problem p;
        problem_init(&p, 520, 32768, soft ? 0 : 3, soft, 4.0, 0.0, !soft);
        for (int isa = 0; isa < isa_count; isa++)
            for (int set = 0; set < (soft ? 1 : 3); set++) {
                lsr_loss_options o = options_from_bits(&p, 0, isa);
                o.smoothing = 0.1f;
                if (set == 0) o.reduction = LSR_REDUCTION_SUM; /* uniform: the constant term */
                if (set == 1) o.class_weights = p.weights, o.prior = p.prior;
                if (set == 2) o.convention = LSR_SMOOTHING_OTHERS, o.reduction = LSR_REDUCTION_NONE;
                cases++;
                if (!compare(&p, o, (isa + set) % 2)) failures++;
            }
        problem_free(&p);
    }
    printf("streamed gradients: %d cases, %d disagreements\n", cases, failures);
}

/* Logits of magnitude 1e4, and 1e4 plus small noise: within compare's bounds, the loss finite. */
static void test_large_logits(void) {
    for (int kind = 0; kind < 2; kind++) {
        problem p;
        if (kind == 0)
            problem_init(&p, 9, 1000, 0, 0, 1e4, 0.0, 0);
        else
            problem_init(&p, 9, 1000, 0, 0, 1.0, 1e4, 0);
        for (int isa = 0; isa < isa_count; isa++) {
            lsr_loss_options o = lsr_loss_options_default();
            o.smoothing = 0.1f;
            o.isa = isas[isa];
            o.threads = 2;
            compare(&p, o, 0);
            float loss;
            CHECK(run_fast(&p, &loss, NULL, NULL, &o) == LSR_OK && isfinite(loss),
                  "large logits kind %d: loss %g", kind, (double)loss);
        }
        problem_free(&p);
    }
}

/* Rows whose target's logit lies up to 1e4 below the row's max (a
 * confident wrong answer), around 0 and +-3000 so that z - max rounds in
 * float, with the other logits close together: where the "others"
 * convention must not form its sum as (all classes) - (the target's term).
 * Row 0 of K = 2 is issue 9's: [-1000.1234, 2999.5678], label 0.  Every
 * fifth row has the target at the max and another class far below.  Soft
 * rows put all, 0.9, or a random share of the mass on that class.
 * weights_kind 2 gives 2.208 to even and 0 to odd classes ([2.208, 0]). */
static void gap_problem_init(problem *p, int64_t n, int64_t k, int soft, int weights_kind) {
    static const double gaps[6] = {1e4, 1e3, 1e2, 10.0, 1.0, 0.0};
    static const double offsets[3] = {0.0, 3000.0, -3000.0}, noises[3] = {0.01, 1.0, 3.0};
    problem_init(p, n, k, 0, soft, 1.0, 0.0, 0);
    for (int64_t i = 0; i < n; i++) {
        float *z = p->logits + i * k, *t = p->targets + i * k;
        const double gap = gaps[i % 6] * (0.5 + 0.5 * rng_uniform());
        const double offset = offsets[i % 3] + rng_normal(), noise = noises[(i / 6) % 3];
        for (int64_t j = 0; j < k; j++)
            z[j] = (float)(offset + noise * rng_normal());
        const int64_t y = rng_below(k);
        if (k > LSR_CHUNK) /* several chunks: the second wholly below, so that its sums shift */
            for (int64_t j = LSR_CHUNK; j < 2 * LSR_CHUNK && j < k; j++)
                if (j != y) z[j] = (float)((double)z[j] - gap);
        int64_t far = y;
        if (i % 5 == 4 && k > 1) {
            far = (y + 1 + rng_below(k - 1)) % k;
            z[y] = (float)(offset + noise * 4.0); /* the max, or close to it */
        }
        float max = -INFINITY;
        for (int64_t j = 0; j < k; j++)
            if (j != far && z[j] > max) max = z[j];
        if (k > 1) z[far] = (float)((double)max - gap);
        if (k == 2 && i == 0) {
            z[0] = -1000.1234f;
            z[1] = 2999.5678f;
        }
        p->labels[i] = k == 2 && i == 0 ? 0 : y;
        const int64_t mass = k == 2 && i == 0 ? 0 : far;
        double sum = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double v = 0.0;
            if (i % 3 == 0)
                v = j == mass ? 1.0 : 0.0;
            else if (i % 3 == 1)
                v = j == mass ? 0.9 : (k > 1 ? 0.1 / (double)(k - 1) : 0.0);
            else
                v = rng_uniform();
            t[j] = (float)v;
            sum += v;
        }
        for (int64_t j = 0; j < k; j++)
            t[j] = (float)(t[j] / sum);
    }
    for (int64_t j = 0; j < k; j++)
        p->weights[j] = weights_kind == 2 ? (j % 2 ? 0.0f : 2.208f) : p->weights[j];
}

/* The rounding that the fast loss may commit, from its arithmetic (u = 2^-24,
 * the float unit roundoff):
 *   - the longest chain of float additions of a pass-2 sum: ceil(K'/8)
 *     (AVX2 with coefficient vectors: one 8-lane accumulator; K' = K up
 *     to a chunk of LSR_CHUNK, chunks are combined in double) plus 4 (three
 *     levels of lane reduction and the two accumulators): n;
 *   - each term lse - z_k >= 0 is fl(z_k - max) (u) and L = log sum exp:
 *     the exps are within 3 ulp, the float sum within n u, then the float
 *     conversion and logf: |L^ - L| <= (n + 5) u = E_L absolutely;
 *   - a sum of non-negative terms so formed is within (n + 2) u of its
 *     value relatively, E_L per unit of coefficient absolutely; the
 *     "others" sums twice that (the bound in loss_fast.c), soft targets'
 *     three times; the result's rounding to float adds u.
 * So the row loss is within R = 3 (n + 2) u + u relatively and, with
 * coefficients summing to at most w_max per row, 3 w_max E_L absolutely;
 * a reduced loss sums those over its rows (times the mean's divisor) and
 * the statistics, means per row, are within R and 3 E_L. */
/* The chain n above, for rows of k logits. */
static double sum_chain(int64_t k) {
    const int64_t kc = k < LSR_CHUNK ? k : LSR_CHUNK;
    return (double)((kc + 7) / 8) + 4.0;
}

/* R above, the row loss's relative bound. */
static double row_loss_rel(int64_t k) {
    const double u = ldexp(1.0, -24);
    return 3.0 * (sum_chain(k) + 2.0) * u + u;
}

static tolerance gap_tolerance(const problem *p, const lsr_loss_options *o) {
    const double u = ldexp(1.0, -24);
    const double n_chain = sum_chain(p->k), e_l = (n_chain + 5.0) * u;
    double w_max = 1.0, weight_sum = 0.0;
    if (o->class_weights)
        for (int64_t j = 0; j < p->k; j++)
            w_max = fmax(w_max, o->class_weights[j]);
    for (int64_t i = 0; i < p->n; i++)
        weight_sum += o->class_weights && !p->soft ? o->class_weights[p->labels[i]] : 1.0;
    const double row_abs = 3.0 * w_max * e_l;
    tolerance t;
    t.loss_rel = t.stat_rel = row_loss_rel(p->k);
    t.stat_abs = 3.0 * e_l;
    if (o->reduction == LSR_REDUCTION_NONE)
        t.loss_abs = row_abs;
    else if (o->reduction == LSR_REDUCTION_SUM)
        t.loss_abs = (double)p->n * row_abs;
    else
        t.loss_abs = weight_sum > 0.0 ? (double)p->n * row_abs / weight_sum : 0.0;
    return t;
}

/* Logit gaps up to 1e4: fast = reference within gap_tolerance (the fast loss's rounding bound). */
static void test_large_gaps(void) {
    /* Issue 9, defect 10: logit gaps up to 1e4 over convention (all,
     * others, prior) x eps (0, 0.1, 0.999, 1) x reduction x class weights
     * (none, random, zeros) x labels and soft targets x every ISA, against
     * the reference with the tolerance above; rows of three chunks too,
     * whose second chunk lies a gap below (the chunks' sums shifted to the
     * row's max). */
    static const int64_t ks[] = {2, 3, 10, 1000, 2 * LSR_CHUNK + 37};
    static const float eps_values[] = {0.0f, 0.1f, 0.999f, 1.0f};
    int failures = 0, cases = 0;
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
        for (int soft = 0; soft <= 1; soft++)
            for (int weights_kind = 0; weights_kind < 3; weights_kind++) {
                problem p;
                gap_problem_init(&p, 12, ks[a], soft, weights_kind);
                for (int conv = 0; conv < 3; conv++)
                    for (int e = 0; e < 4; e++)
                        for (int red = 0; red < 3; red++)
                            for (int isa = 0; isa < isa_count; isa++) {
                                lsr_loss_options o = lsr_loss_options_default();
                                o.convention = conv == 1 ? LSR_SMOOTHING_OTHERS : LSR_SMOOTHING_ALL;
                                o.prior = conv == 2 ? p.prior : NULL;
                                o.smoothing = eps_values[e];
                                o.reduction = (lsr_reduction)red;
                                o.class_weights = weights_kind ? p.weights : NULL;
                                o.isa = isas[isa];
                                o.threads = 2;
                                const tolerance tol = gap_tolerance(&p, &o);
                                cases++;
                                if (!compare_tol(&p, o, (int)((red + isa) % 2), &tol)) failures++;
                            }
                problem_free(&p);
            }
    printf("large logit gaps: %d cases, %d disagreements\n", cases, failures);
}

/* Fast gradient vs central differences (h = 1e-2) of the float reference loss: 2e-3 + 2e-4. */
static void test_finite_differences(void) {
    int failures = 0;
    for (int soft = 0; soft <= 1; soft++) {
        problem p;
        problem_init(&p, 3, 5, 0, soft, 2.0, 0.0, 0);
        for (unsigned bits = 0; bits < 3 * 16 * 3; bits++) {
            lsr_loss_options o = options_from_bits(&p, bits, isa_count - 1);
            if (o.reduction == LSR_REDUCTION_NONE) continue;
            float grad[15];
            run_fast(&p, NULL, grad, NULL, &o);
            for (int i = 0; i < 15; i++) {
                const float saved = p.logits[i], h = 1e-2f;
                float lp, lm;
                p.logits[i] = saved + h;
                run_reference(&p, &lp, NULL, NULL, &o);
                p.logits[i] = saved - h;
                run_reference(&p, &lm, NULL, NULL, &o);
                p.logits[i] = saved;
                const double fd = ((double)lp - (double)lm) / (2.0 * h);
                if (!close_enough(grad[i], fd, 2e-3, 2e-4)) {
                    failures++;
                    CHECK(0, "finite difference soft=%d bits=%u i=%d: grad %.6g fd %.6g", soft,
                          bits, i, (double)grad[i], fd);
                }
            }
        }
        problem_free(&p);
    }
    CHECK(failures == 0, "%d finite-difference mismatches", failures);
}

/* K = 10, eps = 0.1: minimum 0.5003 nats at gap ln 91, to 1e-5 (float logs); gradient 0 there. */
static void test_minimum_at_gap_ln91(void) {
    lsr_loss_options o = lsr_loss_options_default();
    float z[10], g[10], loss;
    int64_t y = 3;
    lsr_loss_stats st;
    o.smoothing = 0.1f;
    for (int j = 0; j < 10; j++)
        z[j] = 0.0f;
    z[3] = logf(91.0f);
    CHECK(lsr_cross_entropy(&loss, g, &st, z, &y, 1, 10, 10, &o) == LSR_OK, "status");
    const double h_target = -(0.91 * log(0.91) + 9 * 0.01 * log(0.01));
    CHECK(fabs(loss - h_target) < 1e-5 && fabs(h_target - 0.5003) < 5e-5,
          "minimum loss %.6f, want %.6f", (double)loss, h_target);
    double gmax = 0;
    for (int j = 0; j < 10; j++)
        gmax = fmax(gmax, fabs(g[j]));
    CHECK(gmax < 1e-6, "gradient at the minimum is %g", gmax);
    for (int d = -1; d <= 1; d += 2) {
        float l2;
        z[3] = logf(91.0f) + 0.05f * (float)d;
        lsr_cross_entropy(&l2, NULL, NULL, z, &y, 1, 10, 10, &o);
        CHECK(l2 > loss, "loss at gap ln91%+.2f is %.7f, not above the minimum %.7f", 0.05 * d,
              (double)l2, (double)loss);
    }
}

/* "Others" puts the minimum at ln((1-eps)(K-1)/eps) = ln 81: gradient < 1e-6, loss to 1e-5. */
static void test_others_minimum_at_gap_ln81(void) {
    lsr_loss_options o = lsr_loss_options_default();
    float z[10], g[10], loss;
    int64_t y = 3;
    o.smoothing = 0.1f;
    o.convention = LSR_SMOOTHING_OTHERS;
    for (int j = 0; j < 10; j++)
        z[j] = 0.0f;
    z[3] = logf(81.0f);
    lsr_cross_entropy(&loss, g, NULL, z, &y, 1, 10, 10, &o);
    double gmax = 0;
    for (int j = 0; j < 10; j++)
        gmax = fmax(gmax, fabs(g[j]));
    CHECK(gmax < 1e-6, "others: gradient at gap ln 81 is %g", gmax);
    const double h_others = -(0.9 * log(0.9) + 0.1 * log(0.1 / 9));
    CHECK(fabs(loss - h_others) < 1e-5, "others: minimum %.6f, want %.6f", (double)loss, h_others);
}

/* eps = 0 is plain cross-entropy: loss and gradient to 1e-6 of the double closed form. */
static void test_eps0_is_cross_entropy(void) {
    lsr_loss_options o = lsr_loss_options_default();
    float z[10], g[10], loss;
    int64_t y = 3;
    for (int j = 0; j < 10; j++)
        z[j] = (float)(0.3 * j - 1.0);
    double lse = 0;
    for (int j = 0; j < 10; j++)
        lse += exp(z[j]);
    lse = log(lse);
    lsr_cross_entropy(&loss, g, NULL, z, &y, 1, 10, 10, &o);
    CHECK(fabs(loss - (lse - z[3])) < 1e-6, "eps 0: %.7f vs %.7f", (double)loss, lse - z[3]);
    CHECK(fabs(g[3] - (exp(z[3] - lse) - 1.0)) < 1e-6, "eps 0 gradient %.7f", (double)g[3]);
}

/* eps = 1, "others", target logit -2.6e38: ln 15 to 1e-5 on every ISA (found by fuzzing). */
static void test_others_far_away_target(void) {
    /* the target's own term is absent, so a target logit far below the
     * rest must not cancel the others away */
    float zz[16] = {-2.6e38f}, loss;
    int64_t y0 = 0;
    lsr_loss_options d = lsr_loss_options_default();
    d.smoothing = 1.0f;
    d.convention = LSR_SMOOTHING_OTHERS;
    for (int isa = 0; isa < isa_count; isa++) {
        d.isa = isas[isa];
        CHECK(lsr_cross_entropy(&loss, NULL, NULL, zz, &y0, 1, 16, 16, &d) == LSR_OK &&
                  fabs(loss - log(15.0)) < 1e-5,
              "others with a far-away target, %s: %.7f, want ln 15 = %.7f", lsr_isa_name(d.isa),
              (double)loss, log(15.0));
    }
}

/* K = 1: the loss and gradient are 0 whatever the logit (to 1e-6: only rounding is left). */
static void test_one_class_loss_is_zero(void) {
    lsr_loss_options o = lsr_loss_options_default();
    float loss, one = 123.0f, g1;
    int64_t zero = 0;
    o.smoothing = 0.3f;
    CHECK(lsr_cross_entropy(&loss, &g1, NULL, &one, &zero, 1, 1, 1, &o) == LSR_OK &&
              fabs(loss) < 1e-6 && fabs(g1) < 1e-6,
          "K=1: loss %g grad %g", (double)loss, (double)g1);
}

/* H(q', p) = (1 - eps) H(q, p) + eps H(u, p) for every kind of u, to 1e-5 (float sums). */
static void test_smoothing_decomposition(void) {
    float loss;
    lsr_loss_stats st;
    for (int soft = 0; soft <= 1; soft++)
        for (int kind = 0; kind < 3; kind++) {
            problem p;
            problem_init(&p, 40, 17, 0, soft, 2.0, 0.0, 1);
            lsr_loss_options d = lsr_loss_options_default();
            d.smoothing = 0.2f;
            if (kind == 1) d.convention = LSR_SMOOTHING_OTHERS;
            if (kind == 2) d.prior = p.prior;
            run_fast(&p, &loss, NULL, &st, &d);
            const double split = 0.8 * st.label_ce + 0.2 * st.prior_ce;
            if (soft) { /* the soft mean divides by N, the targets are not all normalised */
                lsr_loss_stats st2;
                float ref;
                run_reference(&p, &ref, NULL, &st2, &d);
                CHECK(close_enough(loss, ref, 1e-5, 1e-6), "soft decomposition baseline");
            } else {
                CHECK(close_enough(loss, split, 1e-5, 1e-6),
                      "decomposition kind %d: loss %.7f, (1-eps) H(q,p) + eps H(u,p) = %.7f", kind,
                      (double)loss, split);
            }
            problem_free(&p);
        }
}

/* Ignored rows count in neither term nor the mean (pytorch#73205), to 1e-6; all ignored: 0. */
static void test_ignored_rows(void) {
    lsr_loss_stats st;
    problem p;
    problem_init(&p, 6, 7, 0, 0, 1.0, 0.0, 0);
    lsr_loss_options d = lsr_loss_options_default();
    d.smoothing = 0.1f;
    d.class_weights = p.weights;
    float l_all, l_kept;
    int64_t kept_labels[3] = {p.labels[0], p.labels[2], p.labels[4]};
    float kept_logits[21];
    for (int r = 0; r < 3; r++)
        memcpy(kept_logits + 7 * r, p.logits + 7 * (2 * r), 7 * sizeof(float));
    p.labels[1] = p.labels[3] = p.labels[5] = -100;
    lsr_cross_entropy(&l_all, NULL, NULL, p.logits, p.labels, 6, 7, 7, &d);
    lsr_cross_entropy(&l_kept, NULL, NULL, kept_logits, kept_labels, 3, 7, 7, &d);
    CHECK(close_enough(l_all, l_kept, 1e-6, 1e-7), "ignored rows: %.7f vs %.7f", (double)l_all,
          (double)l_kept);
    /* every row ignored: 0, not NaN */
    for (int r = 0; r < 6; r++)
        p.labels[r] = -100;
    float g6[42];
    CHECK(lsr_cross_entropy(&l_all, g6, &st, p.logits, p.labels, 6, 7, 7, &d) == LSR_OK &&
              l_all == 0.0f && g6[5] == 0.0f && st.valid_rows == 0,
          "all ignored: loss %g", (double)l_all);
    problem_free(&p);
}

/* Every bad input gets its own status, a message, and no output written. */
static void test_bad_input(void) {
    float z[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int64_t y[3] = {0, 1, 2};
    float g[12], loss[3];
    lsr_loss_options o = lsr_loss_options_default();
    float prior[4] = {0.25f, 0.25f, 0.25f, 0.25f}, weights[4] = {1, 1, 1, 1};
    float targets[12] = {0};

#define EXPECT(call, want, needle)                                                                 \
    do {                                                                                           \
        for (int i_ = 0; i_ < 12; i_++)                                                            \
            g[i_] = -5.0f;                                                                         \
        loss[0] = loss[1] = loss[2] = -5.0f;                                                       \
        lsr_status s_ = (call);                                                                    \
        CHECK(s_ == (want), "%s: got %s, want %s", #call, lsr_status_name(s_),                     \
              lsr_status_name(want));                                                              \
        CHECK(strstr(lsr_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", #call,      \
              lsr_last_error(), needle);                                                           \
        int untouched_ = loss[0] == -5.0f && loss[1] == -5.0f;                                     \
        for (int i_ = 0; i_ < 12; i_++)                                                            \
            untouched_ &= g[i_] == -5.0f;                                                          \
        CHECK(untouched_, "%s: an output was written", #call);                                     \
    } while (0)

    EXPECT(lsr_cross_entropy(loss, g, NULL, NULL, y, 3, 4, 4, &o), LSR_ERROR_NULL_ARGUMENT,
           "logits");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, NULL, 3, 4, 4, &o), LSR_ERROR_NULL_ARGUMENT,
           "labels");
    EXPECT(lsr_cross_entropy_soft(loss, g, NULL, z, NULL, 3, 4, 4, &o), LSR_ERROR_NULL_ARGUMENT,
           "targets");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, -1, 4, 4, &o), LSR_ERROR_SIZE, "n");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 0, 4, &o), LSR_ERROR_SIZE, "k");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, (int64_t)LSR_MAX_CLASSES + 1,
                             (int64_t)LSR_MAX_CLASSES + 1, &o),
           LSR_ERROR_SIZE, "k");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 3, &o), LSR_ERROR_SIZE, "stride");
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, INT64_MAX / 2, 4, 4, &o), LSR_ERROR_SIZE,
           "memory");

    int64_t bad_labels[3] = {0, 4, 1};
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, bad_labels, 3, 4, 4, &o), LSR_ERROR_LABEL,
           "labels[1]");
    bad_labels[1] = -1;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, bad_labels, 3, 4, 4, &o), LSR_ERROR_LABEL,
           "labels[1]");

    o.smoothing = -0.1f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_SMOOTHING, "smoothing");
    o.smoothing = 1.5f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_SMOOTHING, "smoothing");
    o.smoothing = NAN;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_SMOOTHING, "smoothing");
    o.smoothing = 0.1f;
    o.convention = LSR_SMOOTHING_OTHERS;
    int64_t y0[3] = {0, 0, 0};
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y0, 3, 1, 4, &o), LSR_ERROR_SMOOTHING, "others");
    o = lsr_loss_options_default();

    o.prior = prior;
    prior[2] = NAN;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_PRIOR, "prior[2]");
    prior[2] = -0.25f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_PRIOR, "prior[2]");
    prior[2] = 0.2f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_PRIOR, "sums to");
    prior[2] = 0.25f;
    o.prior = NULL;

    o.class_weights = weights;
    weights[3] = -1.0f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_WEIGHT,
           "class_weights[3]");
    weights[3] = INFINITY;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_WEIGHT,
           "class_weights[3]");
    weights[3] = 1.0f;
    o.class_weights = NULL;

    targets[6] = NAN;
    EXPECT(lsr_cross_entropy_soft(loss, g, NULL, z, targets, 3, 4, 4, &o), LSR_ERROR_TARGET,
           "targets[1][2]");
    targets[6] = -0.5f;
    EXPECT(lsr_cross_entropy_soft(loss, g, NULL, z, targets, 3, 4, 4, &o), LSR_ERROR_TARGET,
           "targets[1][2]");
    targets[6] = 0.0f;
    o.ignore_index = -1;
    EXPECT(lsr_cross_entropy_soft(loss, g, NULL, z, targets, 3, 4, 4, &o), LSR_ERROR_OPTION,
           "ignore_index");
    o = lsr_loss_options_default();

    o.reduction = (lsr_reduction)7;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "reduction");
    o = lsr_loss_options_default();
    o.convention = (lsr_smoothing_convention)5;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "convention");
    o = lsr_loss_options_default();
    o.z_loss = -1.0f;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "z_loss");
    o.z_loss = INFINITY;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "z_loss");
    o = lsr_loss_options_default();
    o.threads = -2;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "threads");
    o = lsr_loss_options_default();
    o.isa = (lsr_isa)9;
    EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_OPTION, "isa");
    o = lsr_loss_options_default();
    if (lsr_isa_detect() < LSR_ISA_AVX512) {
        o.isa = LSR_ISA_AVX512;
        EXPECT(lsr_cross_entropy(loss, g, NULL, z, y, 3, 4, 4, &o), LSR_ERROR_UNSUPPORTED,
               "avx512");
        o = lsr_loss_options_default();
    }

#undef EXPECT
}

/* Outputs overlapping the inputs (other than grad exactly over logits) are refused by status. */
static void test_overlaps_refused(void) {
    int64_t y[3] = {0, 1, 2};
    float loss[3];
    lsr_loss_options o = lsr_loss_options_default();
    /* Overlaps: grad shifted over the logits, loss inside the logits or grad. */
    float big[40];
    for (int i = 0; i < 40; i++)
        big[i] = (float)i * 0.1f;
    CHECK(lsr_cross_entropy(loss, big + 1, NULL, big, y, 3, 4, 4, &o) == LSR_ERROR_OVERLAP &&
              strstr(lsr_last_error(), "grad overlaps logits"),
          "grad overlapping logits: %s", lsr_last_error());
    CHECK(lsr_cross_entropy(big + 2, NULL, NULL, big, y, 3, 4, 4, &o) == LSR_ERROR_OVERLAP,
          "loss inside logits");
    CHECK(lsr_cross_entropy(big + 20, big + 20, NULL, big, y, 3, 4, 4, &o) == LSR_ERROR_OVERLAP,
          "loss inside grad: %s", lsr_last_error());
    CHECK(lsr_cross_entropy((float *)(void *)y, NULL, NULL, big, y, 3, 4, 4, &o) ==
              LSR_ERROR_OVERLAP,
          "loss over labels");
    CHECK(lsr_cross_entropy(loss, big, NULL, big, y, 3, 4, 4, &o) == LSR_OK, "in place is allowed");
    /* A padded stride: the grad may sit in the padding gaps? No: ranges overlap. */
}

/* A non-finite logit is reported with its row, the other rows still done (exact sentinels). */
static void test_nonfinite_logits_reported(void) {
    int64_t y[3] = {0, 1, 2};
    lsr_loss_options o;
    for (int isa = 0; isa < isa_count; isa++) {
        for (int kind = 0; kind < 3; kind++) {
            float zz[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
            zz[5] = kind == 0 ? NAN : kind == 1 ? INFINITY : -INFINITY;
            float gg[12], l1;
            for (int i = 0; i < 12; i++)
                gg[i] = -5.0f;
            o = lsr_loss_options_default();
            o.isa = isas[isa];
            lsr_status s = lsr_cross_entropy(&l1, gg, NULL, zz, y, 3, 4, 4, &o);
            CHECK(s == LSR_ERROR_NONFINITE && strstr(lsr_last_error(), "row 1") && isnan(l1),
                  "non-finite kind %d isa %s: %s '%s' loss %g", kind, lsr_isa_name(o.isa),
                  lsr_status_name(s), lsr_last_error(), (double)l1);
            CHECK(gg[4] == -5.0f && gg[7] == -5.0f && gg[0] != -5.0f && gg[11] != -5.0f,
                  "non-finite: bad row written or good rows not written");
            lsr_status r = lsr_cross_entropy_reference(&l1, gg, NULL, zz, y, 3, 4, 4, &o);
            CHECK(r == LSR_ERROR_NONFINITE, "reference non-finite: %s", lsr_status_name(r));
        }
    }
}

/* Logits too far apart for float in rows of several chunks, where pass 2
 * takes each chunk relative to its own max: the fast loss refuses exactly
 * the rows the reference refuses (some fl(z - max) not finite, max the
 * row's), whatever the chunk holding each value, on every ISA and thread
 * count. */
static void test_far_logits_across_chunks(void) {
    enum { K = 3 * LSR_CHUNK + 5 };
    static float z[2 * K], g[2 * K];
    int64_t y[2] = {3, K - 7};
    /* {index, value} pairs set in row 1 (row 0 stays ordinary); expect refusal? */
    static const struct {
        int idx[2];
        float val[2];
        int refused;
    } cases[] = {
        {{0, 2 * LSR_CHUNK + 7}, {3e38f, -3e38f}, 1},   /* max and min in different chunks */
        {{0, 2 * LSR_CHUNK + 100}, {1e38f, -1e38f}, 0}, /* far, but the difference fits */
        {{5, LSR_CHUNK + 1}, {2e38f, -2e38f}, 1},       /* the min alone in its chunk's max */
        {{LSR_CHUNK + 3, 2 * LSR_CHUNK + 1}, {1e30f, -3.3e38f}, 0}, /* fits (rounds to -FLT_MAX) */
        {{K - 1, 100}, {-1e38f, 3e38f}, 1}, /* the min in the last, short chunk */
    };
    const double far_rel = row_loss_rel(K);
    int failures = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < 2 * K; i++)
            z[i] = (float)((i * 7919) % 1000) * 0.01f;
        for (int v = 0; v < 2; v++)
            z[K + cases[c].idx[v]] = cases[c].val[v];
        if (cases[c].idx[1] == 2 * LSR_CHUNK + 1) /* the whole third chunk far below */
            for (int i = 2 * LSR_CHUNK; i < 3 * LSR_CHUNK; i++)
                z[K + i] = -3.3e38f;
        lsr_loss_options o = lsr_loss_options_default();
        o.smoothing = 0.1f;
        o.reduction = LSR_REDUCTION_NONE;
        float l_ref[2];
        const lsr_status want = lsr_cross_entropy_reference(l_ref, g, NULL, z, y, 2, K, K, &o);
        const int ref_refused = want == LSR_ERROR_NONFINITE;
        CHECK(ref_refused == cases[c].refused, "far case %zu: reference %s", c,
              lsr_status_name(want));
        for (int isa = 0; isa < isa_count; isa++)
            for (int threads = 1; threads <= 2; threads++) {
                o.isa = isas[isa];
                o.threads = threads;
                float l[2];
                const lsr_status s = lsr_cross_entropy(l, g, NULL, z, y, 2, K, K, &o);
                /* an accepted row's loss is the reference's within the
                 * relative bound of gap_tolerance (chains of a chunk) */
                int good =
                    s == (ref_refused ? LSR_ERROR_NONFINITE : LSR_OK) && isnan(l[1]) == ref_refused;
                for (int row = 0; good && row < 2 - ref_refused; row++)
                    good = close_enough(l[row], l_ref[row], far_rel, 0.0);
                CHECK(good,
                      "far case %zu isa %s threads %d: %s loss %.9g %.9g (reference %s %.9g %.9g)",
                      c, lsr_isa_name(o.isa), threads, lsr_status_name(s), (double)l[0],
                      (double)l[1], lsr_status_name(want), (double)l_ref[0], (double)l_ref[1]);
                failures += !good;
            }
    }
    printf("logits too far apart across chunks: %d disagreements\n", failures);
}

/* Logits whose differences fit in float but whose float sums do not: one
 * logit of 1e38 among ordinary ones (every z - max about -1e38, thousands
 * of them), in rows of one chunk and of several, labels and soft targets;
 * and class weights of 100 whose weighted sum overflows where the plain
 * one does not.  The reference accepts them with a finite loss near 1e37;
 * the fast loss must too (it returned inf with LSR_OK before), on every
 * ISA and thread count. */
static void test_float_sums_past_range(void) {
    enum { KMAX = 4000 };
    static float z[KMAX], g[KMAX], gr[KMAX], t[KMAX], w[KMAX];
    const int64_t ks[] = {1000, KMAX, 64};
    int failures = 0;
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        const int64_t k = ks[c];
        const int weighted = k == 64;
        for (int64_t j = 0; j < k; j++) {
            z[j] = weighted ? 0.0f : (float)(j % 10);
            t[j] = 1.0f / (float)k;
            w[j] = 100.0f;
        }
        if (weighted) {
            z[0] = 1e37f;
            z[5] = -1e37f;
        } else {
            z[k / 2] = 1e38f;
        }
        const int64_t y = 5;
        for (int soft = 0; soft <= !weighted; soft++) /* weighted soft rows: past float too */
            for (int isa = 0; isa < isa_count; isa++)
                for (int threads = 1; threads <= 2; threads++) {
                    lsr_loss_options o = lsr_loss_options_default();
                    o.smoothing = 0.1f;
                    o.isa = isas[isa];
                    o.threads = threads;
                    o.class_weights = weighted ? w : NULL;
                    float l = 0.0f, lr = 0.0f;
                    lsr_loss_stats st, sr;
                    const lsr_status s = soft
                                             ? lsr_cross_entropy_soft(&l, g, &st, z, t, 1, k, k, &o)
                                             : lsr_cross_entropy(&l, g, &st, z, &y, 1, k, k, &o);
                    const lsr_status s_ref =
                        soft ? lsr_cross_entropy_soft_reference(&lr, gr, &sr, z, t, 1, k, k, &o)
                             : lsr_cross_entropy_reference(&lr, gr, &sr, z, &y, 1, k, k, &o);
                    double gmax = 0.0;
                    for (int64_t j = 0; j < k; j++)
                        gmax = fmax(gmax, fabs(gr[j]));
                    int good = s == LSR_OK && s_ref == LSR_OK && isfinite(lr) &&
                               close_enough(l, lr, 1e-5, 0.0) &&
                               close_enough(st.prior_ce, sr.prior_ce, 1e-5, 0.0) &&
                               close_enough(st.label_ce, sr.label_ce, 1e-5, 0.0);
                    for (int64_t j = 0; good && j < k; j++)
                        good = close_enough(g[j], gr[j], 1e-4, 1e-6 * gmax);
                    CHECK(good,
                          "float sums past range, K %lld soft %d isa %s threads %d: %s loss %g "
                          "prior_ce %g (reference %s %g %g)",
                          (long long)k, soft, lsr_isa_name(o.isa), threads, lsr_status_name(s),
                          (double)l, st.prior_ce, lsr_status_name(s_ref), (double)lr, sr.prior_ce);
                    failures += !good;
                }
    }
    printf("float sums past float's range: %d disagreements\n", failures);
}

/* An unknown status has a name of its own. */
static void test_unknown_status_name(void) {
    CHECK(strcmp(lsr_status_name((lsr_status)99), "LSR_STATUS_UNKNOWN") == 0,
          "unknown status name");
}

/* ---- bfloat16 logits and gradients ---- */

/* One call of the fast or reference loss on p's (already bf16-rounded)
 * logits, given as float or as bf16, the gradient written as grad_dtype
 * into grad (NULL: none); in_place: into the logits themselves (bf16 only). */
typedef struct bf16_run {
    lsr_status status;
    float loss[200];
    lsr_loss_stats stats;
} bf16_run;

static void run_dtype(bf16_run *out, const problem *p, lsr_loss_options o, int reference,
                      const void *logits, void *grad) {
    problem q = *p;
    q.logits = (float *)(uintptr_t)logits; /* the bytes of logits_dtype, passed through */
    out->status = reference ? run_reference(&q, out->loss, grad, &out->stats, &o)
                            : run_fast(&q, out->loss, grad, &out->stats, &o);
}

static int same_results(const bf16_run *a, const bf16_run *b, size_t nloss) {
    return a->status == b->status && memcmp(a->loss, b->loss, nloss * sizeof(float)) == 0 &&
           memcmp(&a->stats, &b->stats, sizeof a->stats) == 0;
}

/* With logits that bf16 holds exactly, for the fast loss and the
 * reference alike: bf16 logits give bit for bit what float logits give
 * (the conversion is exact and the arithmetic the same), a bf16 gradient
 * is the float gradient rounded to nearest even, bit for bit, the padding
 * is untouched, and in place (bf16 over bf16) equals out of place.  The
 * float call on these values is held against the reference by compare, so
 * the bf16 fast loss is, through these identities, too. */
static int compare_bf16(const problem *p, lsr_loss_options o, int fast_only) {
    int ok = fast_only || compare(p, o, 0);
    const size_t cells = (size_t)(p->n ? p->n : 1) * (size_t)p->stride;
    const size_t cells_out = (size_t)p->n * (size_t)p->stride;
    const size_t nloss = o.reduction == LSR_REDUCTION_NONE ? (size_t)p->n : 1;
    if (nloss > 200) return 0; /* bf16_run's loss array */
    uint16_t *zb = malloc(cells * sizeof *zb), *gb = malloc(cells * sizeof *gb);
    uint16_t *inplace = malloc(cells * sizeof *inplace);
    float *g32 = malloc(cells * sizeof *g32), *g = malloc(cells * sizeof *g);
    for (size_t i = 0; i < cells; i++)
        zb[i] = lsr_bf16_from_float(p->logits[i]);
    for (int reference = 0; reference <= !fast_only && ok; reference++) {
        const char *what = describe(p, &o, 0);
        const char *impl = reference ? "reference" : "fast";
        bf16_run base, run;
        lsr_loss_options f32 = o, zbf = o, gbf = o, both = o;
        f32.logits_dtype = f32.grad_dtype = LSR_DTYPE_FLOAT32;
        zbf.logits_dtype = LSR_DTYPE_BFLOAT16;
        zbf.grad_dtype = LSR_DTYPE_FLOAT32;
        gbf.logits_dtype = LSR_DTYPE_FLOAT32;
        gbf.grad_dtype = LSR_DTYPE_BFLOAT16;
        both.logits_dtype = both.grad_dtype = LSR_DTYPE_BFLOAT16;
        for (size_t i = 0; i < cells; i++)
            g32[i] = g[i] = 7.0f;
        run_dtype(&base, p, f32, reference, p->logits, g32);
        CHECK(base.status == LSR_OK, "%s %s: float status %s", impl, what,
              lsr_status_name(base.status));
        run_dtype(&run, p, zbf, reference, zb, g);
        int good = same_results(&run, &base, nloss) && memcmp(g, g32, cells * sizeof(float)) == 0;
        CHECK(good, "%s %s: bf16 logits differ from the same values as float", impl, what);
        ok &= good;
        for (int form = 0; form < 3 && ok; form++) { /* bf16 grad: float z, bf16 z, in place */
            uint16_t *dst = form == 2 ? inplace : gb;
            if (form == 2)
                memcpy(inplace, zb, cells * sizeof *zb);
            else
                for (size_t i = 0; i < cells; i++)
                    gb[i] = 0x7777;
            if (form == 0) run_dtype(&run, p, gbf, reference, p->logits, gb);
            if (form == 1) run_dtype(&run, p, both, reference, zb, gb);
            if (form == 2) run_dtype(&run, p, both, reference, inplace, inplace);
            good = same_results(&run, &base, nloss);
            for (size_t i = 0; good && i < cells_out; i++) {
                const int pad = (int64_t)(i % (size_t)p->stride) >= p->k;
                const uint16_t want =
                    pad ? (form == 2 ? zb[i] : 0x7777) : lsr_bf16_from_float_flush(g32[i]);
                if (dst[i] != want) {
                    CHECK(0, "%s %s form %d: bf16 grad[%zu] = %#x, want %#x (float %.9g)", impl,
                          what, form, i, dst[i], want, (double)g32[i]);
                    good = 0;
                }
            }
            CHECK(good, "%s %s: bf16 gradient form %d", impl, what, form);
            ok &= good;
        }
    }
    free(zb);
    free(gb);
    free(inplace);
    free(g32);
    free(g);
    return ok;
}

static void round_logits_to_bf16(problem *p) {
    const size_t cells = (size_t)(p->n ? p->n : 1) * (size_t)p->stride;
    for (size_t i = 0; i < cells; i++)
        p->logits[i] = lsr_bf16_to_float(lsr_bf16_from_float(p->logits[i]));
}

/* bf16 logits and gradients, every option, small and large shapes (K up to
 * 100003, a streamed bf16 gradient), every ISA: compare_bf16's identities. */
static void test_bf16_logits(void) {
    int failures = 0, cases = 0;
    for (int soft = 0; soft <= 1; soft++)
        for (int pad = 0; pad <= 3; pad += 3)
            for (int64_t k = 1; k <= 10; k += (k < 3 ? 1 : 7)) {
                problem p;
                problem_init(&p, 21, k, pad, soft, 3.0, 0.0, !soft);
                round_logits_to_bf16(&p);
                for (unsigned bits = 0; bits < 3 * 16 * 3; bits++) {
                    cases++;
                    if (!compare_bf16(&p, options_from_bits(&p, bits, (int)(bits % isa_count)), 0))
                        failures++;
                }
                problem_free(&p);
            }
    static const int64_t shapes[][2] = {{1, 1000}, {5, 32000}, {33, 4097}, {2, 100003}, {0, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int soft = 0; soft <= 1; soft++) {
            problem p;
            problem_init(&p, shapes[s][0], shapes[s][1], (int64_t)rng_below(3), soft, 4.0, 0.0,
                         !soft);
            round_logits_to_bf16(&p);
            for (int isa = 0; isa < isa_count; isa++) {
                cases++;
                if (!compare_bf16(&p, options_from_bits(&p, (unsigned)rng_below(144), isa), 0))
                    failures++;
            }
            problem_free(&p);
        }
    /* 1040 x 32768 bf16 values: a 68 MB gradient, streamed with non-temporal
     * stores; the fast loss's identities only (the float call streams too,
     * and test_streaming_gradient holds that against the reference) */
    problem p;
    problem_init(&p, 1040, 32768, 1, 0, 4.0, 0.0, 1);
    round_logits_to_bf16(&p);
    for (int isa = 1; isa < isa_count; isa++) { /* the vector ISAs: the scalar one never streams */
        lsr_loss_options o = options_from_bits(&p, 0, isa);
        o.smoothing = 0.1f;
        o.class_weights = isa % 2 ? p.weights : NULL;
        cases++;
        if (!compare_bf16(&p, o, 1)) failures++;
    }
    problem_free(&p);
    printf("bf16 logits and gradients: %d cases, %d disagreements\n", cases, failures);
}

/* The fields a kernel fills, bit for bit (memcmp of the structs would
 * compare their padding too). */
static int same_chunk_sums(const chunk_sums *a, const chunk_sums *b) {
    return memcmp(&a->max, &b->max, sizeof a->max) == 0 && a->nonfinite == b->nonfinite &&
           memcmp(&a->sum_exp, &b->sum_exp, sizeof a->sum_exp) == 0 &&
           memcmp(&a->sum_z, &b->sum_z, sizeof a->sum_z) == 0 &&
           memcmp(&a->dot_a, &b->dot_a, sizeof a->dot_a) == 0 &&
           memcmp(&a->dot_b, &b->dot_b, sizeof a->dot_b) == 0;
}

/* The row kernels of every instruction set this CPU runs (the AVX-512 ones
 * with and without the AVX512_BF16 conversion), at the level of one chunk:
 * the bf16 gradient pass writes exactly lsr_bf16_from_float_flush of the
 * fused float value (ties to even, subnormals to signed zero, streamed or
 * not, at every alignment), and the fused pass 2 + 3 equals the two passes. */
static void test_bf16_row_kernels(void) {
    const row_kernels *sets[5];
    const char *names[5];
    int count = 0;
    sets[count] = &lsr__kernels_scalar, names[count++] = "scalar";
#if defined(LSR_HAVE_X86_KERNELS)
    if (lsr_isa_detect() >= LSR_ISA_AVX2) sets[count] = &lsr__kernels_avx2, names[count++] = "avx2";
    if (lsr_isa_detect() >= LSR_ISA_AVX512)
        sets[count] = &lsr__kernels_avx512, names[count++] = "avx512";
#if defined(LSR_HAVE_AVX512BF16_KERNELS)
    if (lsr__cpu_has_avx512_bf16())
        sets[count] = &lsr__kernels_avx512_bf16, names[count++] = "avx512+bf16";
#endif
#endif
    enum { LEN = 1000 };
    static float e[LEN], e2[LEN], a_none[1];
    static uint16_t g[LEN + 64], g2[LEN + 64], z[LEN];
    (void)a_none;
    /* g = e * 1 - 0: ties of either parity, subnormals of both signs,
     * values that round up to FLT_MIN, and ordinary values */
    for (int i = 0; i < LEN; i++) {
        const int kind = i % 6;
        uint32_t u = (uint32_t)rng_next();
        if (kind == 0) u = (u & 0x80ff0000u) | 0x3f008000u; /* a tie */
        if (kind == 1) u &= 0x807fffffu;                    /* subnormal */
        if (kind == 2) u = (u & 0x80000000u) | 0x007fff80u; /* subnormal, rounds up to FLT_MIN */
        memcpy(&e[i], &u, sizeof u);
        if (kind >= 3) e[i] = (float)rng_normal();
        z[i] = lsr_bf16_from_float((float)(3.0 * rng_normal()));
    }
    int failures = 0;
    for (int s = 0; s < count; s++)
        for (int offset = 0; offset < 40; offset += 13)
            for (int stream = 0; stream <= 1; stream++) {
                memset(g, 0, sizeof g);
                sets[s]->pass_scale[LSR_DTYPE_BFLOAT16](g + offset, e, LEN, 1.0f, NULL, 0.0f, 0.0f,
                                                        stream);
                sets[s]->stream_fence();
                for (int i = 0; i < LEN; i++) {
                    const uint16_t want = lsr_bf16_from_float_flush(e[i]);
                    if (g[offset + i] != want) {
                        CHECK(0, "%s pass_scale bf16 offset %d stream %d: [%d] %#x, want %#x (%a)",
                              names[s], offset, stream, i, g[offset + i], want, (double)e[i]);
                        failures++;
                        break;
                    }
                }
            }
    /* fused = separate, for each dtype pair, streamed or not, at several alignments */
    for (int s = 0; s < count; s++)
        for (int zt = 0; zt <= 1; zt++)
            for (int gt = 0; gt <= 1; gt++)
                for (int stream = 0; stream <= 1; stream++)
                    for (int offset = 0; offset < 40; offset += 13) {
                        static float zf[LEN], gf[LEN + 64], gf2[LEN + 64], e3[LEN];
                        for (int i = 0; i < LEN; i++)
                            zf[i] = lsr_bf16_to_float(z[i]);
                        const void *zz = zt ? (const void *)z : (const void *)zf;
                        void *ga = gt ? (void *)(g + offset) : (void *)(gf + offset);
                        void *gb = gt ? (void *)(g2 + offset) : (void *)(gf2 + offset);
                        chunk_sums c1, c2;
                        const float max = sets[s]->pass_max[zt](zz, LEN);
                        sets[s]->pass_exp_scale[zt][gt](&c1, e2, zz, LEN, max, NULL, ga, e, 0.5f,
                                                        0.01f, stream);
                        sets[s]->pass_exp[zt](&c2, e3, zz, LEN, max, NULL, NULL, NULL);
                        sets[s]->pass_scale[gt](gb, e, LEN, 0.5f, NULL, 0.0f, 0.01f, stream);
                        sets[s]->stream_fence();
                        const int same = same_chunk_sums(&c1, &c2) &&
                                         memcmp(e2, e3, sizeof e2) == 0 &&
                                         memcmp(ga, gb, (size_t)LEN * (gt ? 2 : 4)) == 0;
                        CHECK(same,
                              "%s: fused pass 2 + 3 differs from the two passes (z %d g %d "
                              "stream %d offset %d)",
                              names[s], zt, gt, stream, offset);
                        failures += !same;
                    }
    printf("bf16 row kernels (%d sets): %d disagreements\n", count, failures);
}

/* Rows of several chunks go one to a block and to the threads in stretches
 * whose lengths depend on the thread count: 1, 2, 3, 5 and 7 threads give
 * the same bits (loss, statistics, gradient), labels and soft targets,
 * uniform smoothing (pass 2 + 3 fused) and with a prior (not fused). */
static void test_long_rows_any_thread_count(void) {
    int failures = 0;
    static const int counts[] = {1, 2, 3, 5, 7};
    for (int soft = 0; soft <= 1; soft++)
        for (int prior = 0; prior <= 1; prior++) {
            problem p;
            problem_init(&p, 31, 9000, 3, soft, 3.0, 0.5, !soft);
            const size_t cells = (size_t)p.n * (size_t)p.stride;
            float *g0 = malloc(cells * sizeof(float)), *g = malloc(cells * sizeof(float));
            float *u = malloc((size_t)p.k * sizeof(float));
            for (int64_t j = 0; j < p.k; j++)
                u[j] = 1.0f / (float)p.k;
            float l0 = 0.0f;
            lsr_loss_stats s0;
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
                lsr_loss_options o = lsr_loss_options_default();
                o.smoothing = 0.1f;
                if (prior) o.prior = u;
                o.threads = counts[c];
                float l;
                lsr_loss_stats st;
                float *out = c ? g : g0;
                for (size_t i = 0; i < cells; i++)
                    out[i] = 7.0f;
                const lsr_status status = run_fast(&p, c ? &l : &l0, out, c ? &st : &s0, &o);
                CHECK(status == LSR_OK, "long rows, %d threads: %s", counts[c],
                      lsr_status_name(status));
                if (!c) continue;
                const int same = memcmp(&l, &l0, sizeof l) == 0 &&
                                 memcmp(&st, &s0, sizeof st) == 0 &&
                                 memcmp(g, g0, cells * sizeof(float)) == 0;
                CHECK(same, "long rows soft %d prior %d: %d threads differ from 1", soft, prior,
                      counts[c]);
                failures += !same;
            }
            free(g0);
            free(g);
            free(u);
            problem_free(&p);
        }
    printf("long rows over 1-7 threads: %d disagreements\n", failures);
}

/* A whole call whose gradient streams, 5 rows: with 1 thread the rows run
 * pipelined through the fused pass 2 + 3, with 2 threads they share each
 * row's chunks through the separate passes; compare holds both to the
 * reference and to each other, bit for bit. */
static void test_fused_and_shared_rows_agree(void) {
    problem p;
    problem_init(&p, 5, 3400000, 0, 0, 3.0, 0.0, 0); /* 68 MB of gradient */
    int failures = 0;
    for (int isa = 0; isa < isa_count; isa++) {
        lsr_loss_options o = options_from_bits(&p, 0, isa);
        o.smoothing = 0.1f;
        failures += !compare(&p, o, isa % 2);
    }
    printf("fused and shared rows: %d disagreements\n", failures);
    problem_free(&p);
}

/* bf16 logits that are NaN, infinite, or too far apart for float: the row
 * is named, its loss NaN, its gradient untouched, the other rows done; on
 * every instruction set, in the reference and in place. */
static void test_bf16_nonfinite_rows(void) {
    int64_t y[3] = {0, 1, 2};
    static const uint16_t bad[] = {0x7fc0, 0x7f80, 0xff80, 0x7f7f}; /* NaN, +inf, -inf, 3.39e38 */
    for (int kind = 0; kind < 4; kind++)
        for (int impl = 0; impl <= isa_count; impl++) /* every ISA, then the reference */
            for (int in_place = 0; in_place <= 1; in_place++) {
                uint16_t z[12], g[12];
                for (int i = 0; i < 12; i++)
                    z[i] = lsr_bf16_from_float((float)i * 0.5f), g[i] = 0x5555;
                z[5] = bad[kind];
                if (kind == 3) z[4] = 0xff7f; /* -3.39e38: the difference overflows */
                uint16_t *out = in_place ? z : g;
                const uint16_t row1[4] = {z[4], z[5], z[6], z[7]};
                lsr_loss_options o = lsr_loss_options_default();
                o.logits_dtype = o.grad_dtype = LSR_DTYPE_BFLOAT16;
                o.reduction = LSR_REDUCTION_NONE;
                float loss[3];
                lsr_status s;
                if (impl < isa_count) {
                    o.isa = isas[impl];
                    s = lsr_cross_entropy(loss, out, NULL, z, y, 3, 4, 4, &o);
                } else {
                    s = lsr_cross_entropy_reference(loss, out, NULL, z, y, 3, 4, 4, &o);
                }
                const uint16_t keep = in_place ? row1[0] : 0x5555;
                CHECK(s == LSR_ERROR_NONFINITE && strstr(lsr_last_error(), "row 1") &&
                          isnan(loss[1]) && !isnan(loss[0]) && !isnan(loss[2]) && out[4] == keep &&
                          out[0] != 0x5555 && out[11] != 0x5555,
                      "bf16 non-finite kind %d impl %d in place %d: %s '%s'", kind, impl, in_place,
                      lsr_status_name(s), lsr_last_error());
            }
}

/* Bad dtypes, in place across dtypes, and overlaps measured in the dtypes' bytes. */
static void test_bf16_bad_input(void) {
    int64_t y[2] = {0, 1};
    uint16_t zb[8] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x3f80, 0x4000, 0x4040, 0x4080};
    float loss = -5.0f, g[8];
    lsr_loss_options o = lsr_loss_options_default();
    o.logits_dtype = (lsr_dtype)2;
    CHECK(lsr_cross_entropy(&loss, g, NULL, zb, y, 2, 4, 4, &o) == LSR_ERROR_OPTION &&
              strstr(lsr_last_error(), "logits_dtype"),
          "bad logits_dtype: %s", lsr_last_error());
    o = lsr_loss_options_default();
    o.grad_dtype = (lsr_dtype)-1;
    CHECK(lsr_cross_entropy_reference(&loss, g, NULL, zb, y, 2, 4, 4, &o) == LSR_ERROR_OPTION &&
              strstr(lsr_last_error(), "grad_dtype"),
          "bad grad_dtype: %s", lsr_last_error());
    o = lsr_loss_options_default();
    o.logits_dtype = LSR_DTYPE_BFLOAT16; /* float gradient over bf16 logits */
    CHECK(lsr_cross_entropy(&loss, zb, NULL, zb, y, 2, 4, 4, &o) == LSR_ERROR_OVERLAP &&
              strstr(lsr_last_error(), "grad_dtype"),
          "in place across dtypes: %s", lsr_last_error());
    CHECK(loss == -5.0f && zb[0] == 0x3f80, "in place across dtypes wrote");
    /* bf16 grad starting in the second row of bf16 logits overlaps them; a
     * float grad after 8 bf16 values does not */
    o.grad_dtype = LSR_DTYPE_BFLOAT16;
    uint16_t both[16] = {0};
    CHECK(lsr_cross_entropy(&loss, both + 4, NULL, both, y, 2, 4, 4, &o) == LSR_ERROR_OVERLAP,
          "bf16 grad over bf16 logits: %s", lsr_last_error());
    float joint[12] = {0}; /* 8 bf16 logits (4 floats), then a float gradient of 8 at +4 */
    o.grad_dtype = LSR_DTYPE_FLOAT32;
    CHECK(lsr_cross_entropy(&loss, joint + 4, NULL, joint, y, 2, 4, 4, &o) == LSR_OK,
          "float grad after 8 bf16 logits (16 bytes): %s", lsr_last_error());
    CHECK(lsr_cross_entropy(&loss, joint + 3, NULL, joint, y, 2, 4, 4, &o) == LSR_ERROR_OVERLAP,
          "float grad over bf16 logits");
}

int main(void) {
    setup_isas();
    test_minimum_at_gap_ln91();
    test_others_minimum_at_gap_ln81();
    test_eps0_is_cross_entropy();
    test_others_far_away_target();
    test_one_class_loss_is_zero();
    test_smoothing_decomposition();
    test_ignored_rows();
    test_bad_input();
    test_overlaps_refused();
    test_nonfinite_logits_reported();
    test_far_logits_across_chunks();
    test_float_sums_past_range();
    test_long_rows_any_thread_count();
    test_unknown_status_name();
    test_finite_differences();
    test_large_logits();
    test_large_gaps();
    test_all_combinations();
    test_random_shapes();
    test_streaming_gradient();
    test_bf16_bad_input();
    test_bf16_nonfinite_rows();
    test_bf16_row_kernels();
    test_fused_and_shared_rows_agree();
    test_bf16_logits();
    return check_summary();
}
