/* The plots' shared look: svg.h. */
#include <math.h>

#include "svg.h"

#define SVG_FONT "font-family=\"sans-serif\" font-size=\"11\""

double svg_tick_step(double span, int ticks) {
    if (!(span > 0) || !isfinite(span)) return 1.0;
    const double raw = span / ticks, p = pow(10.0, floor(log10(raw)));
    static const double steps[] = {1.0, 2.0, 2.5, 5.0};
    for (int i = 0; i < 4; i++)
        if (steps[i] * p >= raw * (1 - 1e-9)) return steps[i] * p;
    return 10.0 * p;
}

svg_axis svg_axis_over(double lo, double hi, double least, double most) {
    if (!isfinite(lo) || !isfinite(hi) || lo > hi || !isfinite(hi - lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-9 * (fabs(lo) + fabs(hi)) || hi == lo) { /* one value: a span around it */
        const double half = lo != 0 ? fabs(lo) * 0.05 : 0.5;
        lo -= half;
        hi += half;
    }
    const double pad = 0.05 * (hi - lo);
    lo = fmax(lo - pad, least);
    hi = fmin(hi + pad, most);
    svg_axis a;
    a.step = svg_tick_step(hi - lo, 5);
    a.from = fmax(floor(lo / a.step + 1e-9) * a.step, least);
    a.to = fmin(ceil(hi / a.step - 1e-9) * a.step, most);
    if (a.to <= a.from) a.to = a.from + a.step;
    return a;
}

double svg_px(const svg_frame *fr, double v) {
    return fr->x + (v - fr->ax.from) / (fr->ax.to - fr->ax.from) * fr->w;
}

double svg_py(const svg_frame *fr, double v) {
    return fr->y + fr->h - (v - fr->ay.from) / (fr->ay.to - fr->ay.from) * fr->h;
}

void svg_begin(FILE *f, double w, double h) {
    fprintf(f,
            "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" " SVG_FONT ">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n",
            w, h);
}

void svg_end(FILE *f) { fputs("</svg>\n", f); }

void svg_text(FILE *f, const char *s) {
    for (; *s; s++)
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else if (*s == '\'')
            fputs("&apos;", f);
        else
            fputc(*s, f);
}

void svg_title(FILE *f, double x, double y, const char *title) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">", x, y);
    svg_text(f, title);
    fputs("</text>\n", f);
}

/* a tick's label: as many decimals as step needs (0.025: 3), no "-0" */
static void tick_label(char *buf, size_t size, double v, double step) {
    int decimals = 0;
    while (decimals < 9 && fabs(step * pow(10, decimals) - nearbyint(step * pow(10, decimals))) >
                               1e-6 * step * pow(10, decimals))
        decimals++;
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e15 || step < 1e-9) /* "%.*f" would not fit, or not tell ticks apart */
        snprintf(buf, size, "%.6g", v);
    else
        snprintf(buf, size, "%.*f", decimals, v);
}

/* The ticks of a: from, from + step, ... up to to; by count, so that no
 * axis (a non-finite or vanishing step) loops for ever. */
static int tick_count(const svg_axis *a) {
    const double parts = (a->to - a->from) / a->step;
    return isfinite(parts) && parts >= 0 ? (int)fmin(floor(parts + 1e-6), 100) + 1 : 0;
}

void svg_draw_frame(FILE *f, const svg_frame *fr, const char *xlabel, const char *ylabel) {
    char label[32];
    for (int i = 0, nx = tick_count(&fr->ax); i < nx; i++) {
        const double v = fr->ax.from + i * fr->ax.step, x = svg_px(fr, v);
        tick_label(label, sizeof label, v, fr->ax.step);
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                x, x, fr->y, fr->y + fr->h, x, fr->y + fr->h + 14, label);
    }
    for (int i = 0, ny = tick_count(&fr->ay); i < ny; i++) {
        const double v = fr->ay.from + i * fr->ay.step, y = svg_py(fr, v);
        tick_label(label, sizeof label, v, fr->ay.step);
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                fr->x, fr->x + fr->w, y, y, fr->x - 4, y + 4, label);
    }
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#888\"/>\n",
            fr->x, fr->y, fr->w, fr->h);
    if (xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", fr->x + fr->w / 2,
                fr->y + fr->h + 30);
        svg_text(f, xlabel);
        fputs("</text>\n", f);
    }
    if (ylabel) {
        const double x = fr->x - 42, y = fr->y + fr->h / 2;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                "transform=\"rotate(-90 %.1f %.1f)\">",
                x, y, x, y);
        svg_text(f, ylabel);
        fputs("</text>\n", f);
    }
}

void svg_legend(FILE *f, double x, double y, const char *const *names, const char *const *colours,
                int n) {
    for (int i = 0; i < n; i++) {
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                "<text x=\"%.1f\" y=\"%.1f\">",
                x, y + 16 * i, colours[i], x + 14, y + 9 + 16 * i);
        svg_text(f, names[i]);
        fputs("</text>\n", f);
    }
}
