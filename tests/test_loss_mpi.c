/* lsr_cross_entropy_mpi under mpirun -np P: each rank holds a shard of the
 * classes (unequal sizes, some empty), and every rank's loss, statistics
 * and gradient shard must match lsr_cross_entropy_reference on the
 * concatenated logits to 1e-6 (relative, or of the largest gradient entry
 * for the gradient), for every option; bad input on one rank is reported
 * by all.  Every rank draws the same problems (same seed), so each can
 * check its own part. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lsr/loss_mpi.h"
#include "rng.h"

static int rank, ranks;

static size_t at_least_1(int64_t x) { return x > 0 ? (size_t)x : 1; }

/* shard boundaries over K classes, from the shared rng: P + 1 cuts */
static void draw_shards(int64_t *cut, int64_t k) {
    cut[0] = 0;
    cut[ranks] = k;
    for (int r = 1; r < ranks; r++) /* uneven, and now and then empty */
        cut[r] = rng_below(4) == 0 ? cut[r - 1] : cut[r - 1] + rng_below(k - cut[r - 1] + 1);
}

static int close_to(double got, double want, double scale) {
    return fabs(got - want) <= 1e-6 * (fabs(want) + scale) || (isnan(got) && isnan(want));
}

static void one_case(int64_t n, int64_t k, double logit_scale, double offset) {
    int64_t cut[9];
    draw_shards(cut, k);
    const int64_t k0 = cut[rank], kl = cut[rank + 1] - cut[rank], stride = kl + 3;
    float *z = malloc(at_least_1(n * k) * sizeof(float));
    float *prior = malloc(at_least_1(k) * sizeof(float)),
          *w = malloc(at_least_1(k) * sizeof(float));
    int64_t *labels = malloc(at_least_1(n) * sizeof(int64_t));
    for (int64_t i = 0; i < n * k; i++)
        z[i] = (float)(offset + logit_scale * rng_normal());
    double sum = 0.0;
    for (int64_t j = 0; j < k; j++) {
        prior[j] = (float)(0.05 + rng_uniform());
        sum += prior[j];
        w[j] = (float)(0.1 + 1.9 * rng_uniform());
    }
    for (int64_t j = 0; j < k; j++)
        prior[j] = (float)(prior[j] / sum);
    for (int64_t i = 0; i < n; i++)
        labels[i] = rng_below(6) == 0 ? LSR_IGNORE_INDEX_DEFAULT : rng_below(k);
    static const float eps[] = {0.0f, 0.1f, 1.0f};
    lsr_loss_options o = lsr_loss_options_default();
    o.smoothing = eps[rng_below(3)];
    if (k > 1 && rng_below(2)) o.convention = LSR_SMOOTHING_OTHERS;
    const int with_prior = rng_below(3) == 0, with_weights = rng_below(3) == 0;
    if (rng_below(3) == 0) o.z_loss = 1e-3f;
    o.reduction = (lsr_reduction)rng_below(3);
    const int in_place = rng_below(4) == 0;

    /* the reference on the whole rows */
    const size_t nl = o.reduction == LSR_REDUCTION_NONE ? at_least_1(n) : 1;
    float *ref_loss = malloc(nl * sizeof(float)), *ref_grad = malloc(at_least_1(n * k) * 4);
    lsr_loss_stats ref_stats;
    lsr_loss_options ro = o;
    ro.prior = with_prior ? prior : NULL;
    ro.class_weights = with_weights ? w : NULL;
    const lsr_status rs =
        lsr_cross_entropy_reference(ref_loss, ref_grad, &ref_stats, z, labels, n, k, k, &ro);

    /* this rank's shard */
    float *mine = malloc(at_least_1(n * stride) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < stride; j++)
            mine[i * stride + j] = j < kl ? z[i * k + k0 + j] : 7.0f;
    float *grad = in_place ? mine : malloc(at_least_1(n * stride) * sizeof(float));
    if (!in_place)
        for (int64_t i = 0; i < n * stride; i++)
            grad[i] = 7.0f;
    float *loss = malloc(nl * sizeof(float));
    lsr_loss_stats stats;
    lsr_loss_options mo = o;
    mo.prior = with_prior ? prior + k0 : NULL;
    mo.class_weights = with_weights ? w + k0 : NULL;
    const lsr_status ms =
        lsr_cross_entropy_mpi(MPI_COMM_WORLD, loss, grad, &stats, mine, labels, n, kl, stride, &mo);

    char what[200];
    snprintf(what, sizeof what,
             "rank %d of %d: n=%lld k=%lld shard [%lld, %lld) eps=%g conv=%d prior=%d weights=%d "
             "z=%g red=%d in_place=%d",
             rank, ranks, (long long)n, (long long)k, (long long)k0, (long long)(k0 + kl),
             (double)o.smoothing, (int)o.convention, with_prior, with_weights, (double)o.z_loss,
             (int)o.reduction, in_place);
    CHECK(ms == rs, "%s: status %s, reference %s (%s)", what, lsr_status_name(ms),
          lsr_status_name(rs), lsr_last_error());
    if (ms == LSR_OK && rs == LSR_OK) {
        for (size_t i = 0; i < (o.reduction == LSR_REDUCTION_NONE ? (size_t)n : 1); i++)
            CHECK(close_to(loss[i], ref_loss[i], 1e-6), "%s: loss[%zu] %.9g reference %.9g", what,
                  i, (double)loss[i], (double)ref_loss[i]);
        double gmax = 0.0;
        for (int64_t i = 0; i < n * k; i++)
            gmax = fmax(gmax, fabs(ref_grad[i]));
        int bad = 0;
        for (int64_t i = 0; i < n && !bad; i++)
            for (int64_t j = 0; j < stride && !bad; j++) {
                const float got = grad[i * stride + j];
                if (j >= kl) {
                    bad = got != 7.0f;
                    CHECK(!bad, "%s: grad[%lld][%lld] past the shard written", what, (long long)i,
                          (long long)j);
                    continue;
                }
                const double want = ref_grad[i * k + k0 + j];
                bad = !(fabs(got - want) <= 1e-6 * (fabs(want) + gmax) + 1e-12);
                CHECK(!bad, "%s: grad[%lld][%lld] %.9g reference %.9g", what, (long long)i,
                      (long long)j, (double)got, want);
            }
        CHECK(stats.valid_rows == ref_stats.valid_rows && stats.top1_hits == ref_stats.top1_hits &&
                  close_to(stats.label_ce, ref_stats.label_ce, 1.0) &&
                  close_to(stats.prior_ce, ref_stats.prior_ce, 1.0) &&
                  close_to(stats.mean_max_prob, ref_stats.mean_max_prob, 1.0) &&
                  close_to(stats.mean_lse, ref_stats.mean_lse, 1.0),
              "%s: stats valid %lld/%lld hits %lld/%lld label_ce %.9g/%.9g prior_ce %.9g/%.9g "
              "max_prob %.9g/%.9g lse %.9g/%.9g",
              what, (long long)stats.valid_rows, (long long)ref_stats.valid_rows,
              (long long)stats.top1_hits, (long long)ref_stats.top1_hits, stats.label_ce,
              ref_stats.label_ce, stats.prior_ce, ref_stats.prior_ce, stats.mean_max_prob,
              ref_stats.mean_max_prob, stats.mean_lse, ref_stats.mean_lse);
    }
    free(z), free(prior), free(w), free(labels), free(ref_loss), free(ref_grad), free(mine);
    if (!in_place) free(grad);
    free(loss);
}

/* A NaN logit: NONFINITE on every rank, the row named, the loss NaN. */
static void nonfinite_row(void) {
    const int64_t n = 3, k = 2 * ranks;
    float *z = malloc((size_t)(n * 2) * sizeof(float)), grad[6], loss;
    for (int i = 0; i < 6; i++)
        z[i] = (float)i * 0.25f;
    if (rank == ranks - 1) z[2] = NAN; /* row 1, on the last rank only */
    int64_t labels[3] = {0, 1, k - 1};
    lsr_loss_options o = lsr_loss_options_default();
    const lsr_status s =
        lsr_cross_entropy_mpi(MPI_COMM_WORLD, &loss, grad, NULL, z, labels, n, 2, 2, &o);
    CHECK(s == LSR_ERROR_NONFINITE && strstr(lsr_last_error(), "row 1") && isnan(loss),
          "rank %d: a NaN on the last rank: %s '%s' loss %g", rank, lsr_status_name(s),
          lsr_last_error(), (double)loss);
    /* finite logits more than FLT_MAX apart, on the first and the last rank
     * (on one rank: in its two classes), as lsr_cross_entropy says */
    for (int i = 0; i < 6; i++)
        z[i] = (float)i * 0.25f;
    if (rank == 0) z[4] = -3e38f;        /* row 2 */
    if (rank == ranks - 1) z[5] = 3e38f; /* row 2 */
    const lsr_status t =
        lsr_cross_entropy_mpi(MPI_COMM_WORLD, &loss, grad, NULL, z, labels, n, 2, 2, &o);
    CHECK(t == LSR_ERROR_NONFINITE && strstr(lsr_last_error(), "row 2") && isnan(loss),
          "rank %d: logits -3e38 and 3e38 in one row: %s '%s' loss %g", rank, lsr_status_name(t),
          lsr_last_error(), (double)loss);
    float whole[2] = {-3e38f, 3e38f}, g2[2];
    int64_t y0 = 0;
    CHECK(lsr_cross_entropy_reference(&loss, g2, NULL, whole, &y0, 1, 2, 2, &o) ==
              LSR_ERROR_NONFINITE,
          "the reference takes -3e38 and 3e38 in one row (%s)", lsr_last_error());
    free(z);
}

/* Bad input on one rank: every rank returns an error, nothing written. */
static void bad_input(void) {
    float z[4] = {0.0f, 1.0f, 2.0f, 3.0f}, grad[4] = {5.0f, 5.0f, 5.0f, 5.0f}, loss = 5.0f;
    int64_t labels[2] = {0, 1};
    lsr_loss_options o = lsr_loss_options_default();
    /* rank 0's stride is too small */
    lsr_status s = lsr_cross_entropy_mpi(MPI_COMM_WORLD, &loss, grad, NULL, z, labels, 2, 2,
                                         rank == 0 ? 1 : 2, &o);
    CHECK(s == LSR_ERROR_SIZE && strstr(lsr_last_error(), rank == 0 ? "stride" : "rank 0"),
          "rank %d: a bad stride on rank 0: %s '%s'", rank, lsr_status_name(s), lsr_last_error());
    CHECK(loss == 5.0f && grad[0] == 5.0f, "rank %d: written after a refusal", rank);
    labels[1] = 2 * ranks; /* one past the last class */
    s = lsr_cross_entropy_mpi(MPI_COMM_WORLD, &loss, grad, NULL, z, labels, 2, 2, 2, &o);
    CHECK(s == LSR_ERROR_LABEL && strstr(lsr_last_error(), "labels[1]"), "rank %d: label: %s '%s'",
          rank, lsr_status_name(s), lsr_last_error());
    labels[1] = 1;
    float prior[2] = {0.25f, 0.25f}; /* sums to 0.5 per rank: 1 only with two ranks */
    o.prior = prior;
    s = lsr_cross_entropy_mpi(MPI_COMM_WORLD, &loss, grad, NULL, z, labels, 2, 2, 2, &o);
    CHECK((s == LSR_OK) == (ranks == 2) && (ranks == 2 || strstr(lsr_last_error(), "prior")),
          "rank %d: a prior summing to %g over the ranks: %s '%s'", rank, 0.5 * ranks,
          lsr_status_name(s), lsr_last_error());
    CHECK(loss == 5.0f || ranks == 2, "rank %d: written after a refusal", rank);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (ranks > 8) {
        if (rank == 0) fprintf(stderr, "test_loss_mpi: at most 8 ranks\n");
        MPI_Finalize();
        return 2;
    }
    rng_state = 0x5851f42d4c957f2dull; /* the same problems on every rank */
    static const int64_t shapes[][2] = {{0, 3},  {1, 1},    {5, 2},    {7, 3},    {16, 10},
                                        {9, 33}, {64, 257}, {3, 5000}, {2, 40000}};
    int cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int rep = 0; rep < 6; rep++, cases++)
            one_case(shapes[s][0], shapes[s][1], rep == 4 ? 30.0 : 3.0, rep == 5 ? 1000.0 : 0.0);
    nonfinite_row();
    bad_input();
    int failed = checks_failed, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("%d ranks, %d cases: %s\n", ranks, cases, any ? "FAILED" : "ok");
    const int code = check_summary();
    MPI_Finalize();
    return code;
}
