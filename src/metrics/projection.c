/* The penultimate layer seen as Mueller, Kornblith and Hinton (2019) show
 * it: activations projected onto the plane through three classes'
 * templates (rows of the last layer's weight matrix), and how tight each
 * class's cluster is in that plane. */
#include <math.h>
#include <string.h>

#include "projection.h"

lsr_status lsr_template_plane(double *origin, double *e1, double *e2, const float *t0,
                              const float *t1, const float *t2, int64_t d) {
    /* e1 along t1 - t0; e2 the part of t2 - t0 orthogonal to it (Gram-Schmidt
     * in double, twice for the rounding) */
    double n1 = 0.0;
    for (int64_t i = 0; i < d; i++) {
        origin[i] = t0[i];
        e1[i] = (double)t1[i] - t0[i];
        e2[i] = (double)t2[i] - t0[i];
        n1 += e1[i] * e1[i];
    }
    if (!(n1 > 0.0))
        return lsr__fail(LSR_ERROR_OPTION, "the first two templates are equal: no plane");
    n1 = sqrt(n1);
    for (int64_t i = 0; i < d; i++)
        e1[i] /= n1;
    for (int pass = 0; pass < 2; pass++) {
        double dot = 0.0;
        for (int64_t i = 0; i < d; i++)
            dot += e1[i] * e2[i];
        for (int64_t i = 0; i < d; i++)
            e2[i] -= dot * e1[i];
    }
    double n2 = 0.0;
    for (int64_t i = 0; i < d; i++)
        n2 += e2[i] * e2[i];
    if (!(n2 > 1e-24 * n1 * n1))
        return lsr__fail(LSR_ERROR_OPTION, "the three templates lie on a line: no plane");
    n2 = sqrt(n2);
    for (int64_t i = 0; i < d; i++)
        e2[i] /= n2;
    return LSR_OK;
}

void lsr_project_plane(float *xy, const float *acts, int64_t n, int64_t d, const double *origin,
                       const double *e1, const double *e2) {
    for (int64_t r = 0; r < n; r++) {
        const float *a = acts + r * d;
        double x = 0.0, y = 0.0;
        for (int64_t i = 0; i < d; i++) {
            const double v = (double)a[i] - origin[i];
            x += v * e1[i];
            y += v * e2[i];
        }
        xy[2 * r] = (float)x;
        xy[2 * r + 1] = (float)y;
    }
}

double lsr_cluster_tightness(const float *xy, const int *group, int64_t n, int groups) {
    double cx[LSR_PROJECT_MAX_GROUPS] = {0}, cy[LSR_PROJECT_MAX_GROUPS] = {0};
    int64_t count[LSR_PROJECT_MAX_GROUPS] = {0};
    if (groups < 2 || groups > LSR_PROJECT_MAX_GROUPS) return NAN;
    for (int64_t r = 0; r < n; r++) {
        cx[group[r]] += xy[2 * r];
        cy[group[r]] += xy[2 * r + 1];
        count[group[r]]++;
    }
    double mx = 0.0, my = 0.0;
    for (int g = 0; g < groups; g++) {
        if (count[g] == 0) return NAN;
        cx[g] /= (double)count[g];
        cy[g] /= (double)count[g];
        mx += cx[g] / groups;
        my += cy[g] / groups;
    }
    double within = 0.0, between = 0.0;
    for (int64_t r = 0; r < n; r++) {
        const int g = group[r];
        const double dx = xy[2 * r] - cx[g], dy = xy[2 * r + 1] - cy[g];
        within += (dx * dx + dy * dy) / ((double)count[g] * groups); /* mean of the classes' */
    }
    for (int g = 0; g < groups; g++)
        between += ((cx[g] - mx) * (cx[g] - mx) + (cy[g] - my) * (cy[g] - my)) / groups;
    return between > 0.0 ? within / between : NAN;
}
