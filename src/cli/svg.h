/* The look every plot of the lsr command shares (lsr sweep's report, lsr
 * project): a frame with grid lines at round values
 * (1, 2, 2.5 or 5 x 10^n), axes that do not run below what a quantity can
 * take (no negative axis for a non-negative one), titles, legends outside
 * the data, and text escaped for XML. */
#ifndef LSR_CLI_SVG_H
#define LSR_CLI_SVG_H

#include <stdio.h>

/* An axis: from, to (multiples of step), step a round value. */
typedef struct svg_axis {
    double from, to, step;
} svg_axis;

/* The round step that cuts span into about ticks parts. */
double svg_tick_step(double span, int ticks);
/* An axis over the data's [lo, hi] (NaN or infinite: ignored), padded a
 * little, with round ends, kept within [least, most] (-INFINITY and
 * INFINITY: no bound; 0 for a non-negative quantity, 1 for a probability). */
svg_axis svg_axis_over(double lo, double hi, double least, double most);

/* A plot area: its corner and size in pixels and its two axes. */
typedef struct svg_frame {
    double x, y, w, h;
    svg_axis ax, ay;
} svg_frame;
double svg_px(const svg_frame *fr, double v);
double svg_py(const svg_frame *fr, double v);

/* The opening tag of a plot of w x h pixels (class "plot", white). */
void svg_begin(FILE *f, double w, double h);
void svg_end(FILE *f);
/* s, escaped for XML text and attributes. */
void svg_text(FILE *f, const char *s);
/* A title (bold) at x, y. */
void svg_title(FILE *f, double x, double y, const char *title);
/* The frame's box, grid lines and tick labels at its axes' steps, and the
 * axis labels (NULL: none) below and to the left. */
void svg_draw_frame(FILE *f, const svg_frame *fr, const char *xlabel, const char *ylabel);
/* A legend: one line per entry from x, y down, a swatch of colours[i] and
 * names[i]. */
void svg_legend(FILE *f, double x, double y, const char *const *names, const char *const *colours,
                int n);

#endif
