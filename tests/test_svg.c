/* The plots' axes (src/cli/svg.c): ticks at 1, 2, 2.5 or 5 x 10^n, about
 * the number asked for; an axis covers its data, its ends are ticks, and it
 * never leaves the quantity's range (no negative axis for a non-negative
 * quantity, even when a mean minus its standard deviation is below 0). */
#include <math.h>
#include <stdint.h>

#include "../src/cli/svg.h"
#include "check.h"
#include "rng.h"

/* x is m x 10^n with m in {1, 2, 2.5, 5} */
static int round_value(double x) {
    const double mantissa = x / pow(10.0, floor(log10(x) + 1e-12));
    static const double allowed[] = {1.0, 2.0, 2.5, 5.0};
    for (int i = 0; i < 4; i++)
        if (fabs(mantissa - allowed[i]) < 1e-9 * allowed[i]) return 1;
    return 0;
}

/* v a whole number of steps (to a tolerance of the arithmetic) */
static int on_tick(double v, double step) {
    const double k = v / step;
    return fabs(k - nearbyint(k)) < 1e-6;
}

static void test_tick_steps(void) {
    rng_state = 7;
    for (int i = 0; i < 20000; i++) {
        const double span = pow(10.0, 12.0 * rng_uniform() - 6.0);
        const int ticks = 2 + (int)(rng_uniform() * 8);
        const double step = svg_tick_step(span, ticks);
        CHECK(round_value(step), "span %g: step %g is not a round value", span, step);
        /* the smallest round step giving at most ticks parts: the next smaller
         * round value is at most half as large, so span / step >= ticks / 2 */
        CHECK(span / step <= ticks * (1 + 1e-9) && span / step >= ticks / 2.0 * (1 - 1e-9),
              "span %g, %d ticks: step %g gives %g parts", span, ticks, step, span / step);
    }
    CHECK(svg_tick_step(0.2, 5) == 0.05 || fabs(svg_tick_step(0.2, 5) - 0.05) < 1e-15,
          "0.2 in 5: %g", svg_tick_step(0.2, 5));
    CHECK(svg_tick_step(0, 5) == 1.0 && svg_tick_step(NAN, 5) == 1.0,
          "an empty span has a step of 1");
}

static void check_axis(double lo, double hi, double least, double most) {
    const svg_axis a = svg_axis_over(lo, hi, least, most);
    CHECK(round_value(a.step), "[%g, %g]: step %g", lo, hi, a.step);
    CHECK(a.from >= least && a.to <= most && a.from < a.to, "[%g, %g] in [%g, %g]: axis [%g, %g]",
          lo, hi, least, most, a.from, a.to);
    CHECK((a.from <= lo || a.from == least) && (a.to >= hi || a.to == most),
          "[%g, %g]: axis [%g, %g] leaves data out", lo, hi, a.from, a.to);
    CHECK((on_tick(a.from, a.step) || a.from == least) && (on_tick(a.to, a.step) || a.to == most),
          "[%g, %g]: ends %g, %g are not ticks of %g", lo, hi, a.from, a.to, a.step);
    /* the step is at least a fifth of the padded span (svg_tick_step with 5
     * ticks), and rounding each end out to a tick adds less than a step at
     * each end (clamping to least or most only removes): at most 7 parts */
    const double parts = (a.to - a.from) / a.step;
    CHECK(parts >= 1 - 1e-9 && parts <= 7 + 1e-6, "[%g, %g]: %g parts", lo, hi, parts);
}

static void test_axes(void) {
    rng_state = 11;
    for (int i = 0; i < 20000; i++) {
        const double scale = pow(10.0, 8.0 * rng_uniform() - 4.0);
        double lo = scale * (2 * rng_uniform() - 1), hi = lo + scale * rng_uniform();
        check_axis(lo, hi, -INFINITY, INFINITY);
        if (lo >= 0) check_axis(lo, hi, 0, INFINITY);
        if (lo >= 0 && hi <= 1) check_axis(lo, hi, 0, 1);
    }
    /* a non-negative quantity whose mean - sd is below 0 (an ECE of
     * 0.01 +- 0.015): the axis starts at 0 */
    svg_axis a = svg_axis_over(-0.005, 0.025, 0, 1);
    CHECK(a.from == 0, "ECE axis from %g", a.from);
    a = svg_axis_over(0.9, 1.003, 0, 1); /* an accuracy + sd above 1 */
    CHECK(a.to == 1, "accuracy axis to %g", a.to);
    a = svg_axis_over(0.3, 0.3, 0, INFINITY); /* one value */
    CHECK(a.from <= 0.3 && a.to >= 0.3 && a.from < a.to, "one value: [%g, %g]", a.from, a.to);
    a = svg_axis_over(-1e308, 1e308, -INFINITY, INFINITY); /* a span past the doubles */
    CHECK(isfinite(a.from) && isfinite(a.to) && isfinite(a.step), "overflowing span: [%g, %g]",
          a.from, a.to);
    a = svg_axis_over(NAN, NAN, 0, 1);
    CHECK(a.from == 0 && a.to == 1, "no data: [%g, %g]", a.from, a.to);
}

int main(void) {
    test_tick_steps();
    test_axes();
    return check_summary();
}
