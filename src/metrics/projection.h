/* The penultimate layer's picture (projection.c; lsr project). */
#ifndef LSR_PROJECTION_H
#define LSR_PROJECTION_H

#include <stdint.h>

#include "../common/common.h"

#define LSR_PROJECT_MAX_GROUPS 8

/* The plane through three templates t0, t1, t2 (d values each): origin t0,
 * orthonormal e1 (towards t1) and e2 (d doubles each).  LSR_ERROR_OPTION when
 * the templates do not span a plane. */
lsr_status lsr_template_plane(double *origin, double *e1, double *e2, const float *t0,
                              const float *t1, const float *t2, int64_t d);
/* xy (n, 2): the coordinates of acts (n, d) in that plane. */
void lsr_project_plane(float *xy, const float *acts, int64_t n, int64_t d, const double *origin,
                       const double *e1, const double *e2);
/* Within-class over between-class spread of points xy (n, 2) in groups
 * 0..groups-1: the mean over the groups of the mean squared distance to the
 * group's centroid, over the mean squared distance of the centroids to
 * their mean.  Smaller is tighter.  NaN for an empty group or fewer than 2. */
double lsr_cluster_tightness(const float *xy, const int *group, int64_t n, int groups);

#endif
