/* 2-D convolution, channels last, as im2col + one sgemm over the batch.
 * The weight is (F, KH, KW, C); a row of the column matrix holds the
 * KH x KW x C input patch of one output position, so the output
 * (B * OH * OW, F) = col W^T is already channels last. */
#include <stddef.h>
#include <string.h>

#include "net.h"

// each kernel row of a patch is one contiguous stretch of K * C input
// values, clipped at the image's edges
void lsr_conv2d_patch(float *dst, const float *in, const lsr_layer *l, int64_t r) {
    const int H = l->in.h, W = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
    const int K = l->kernel, S = l->stride;
    const int b = (int)(r / (OH * OW)), oy = (int)(r / OW % OH), ox = (int)(r % OW);
    const int ix0 = ox * S - l->pad_left;
    const int lo = ix0 < 0 ? -ix0 : 0, hi = ix0 + K > W ? W - ix0 : K;
    const int span = K * C, short_span = span <= 64; /* short: plain loops beat the calls */
    for (int ky = 0; ky < K; ky++, dst += span) {
        const int iy = oy * S - l->pad_top + ky;
        const int a = iy < 0 || iy >= H || lo >= hi ? span : lo * C, z = a == span ? span : hi * C;
        /* in[off + j] lines up with dst[j]; it is read for j in [a, z) only */
        const ptrdiff_t off = (((ptrdiff_t)b * H + iy) * W + ix0) * C;
        if (short_span) {
            for (int j = 0; j < span; j++)
                dst[j] = j >= a && j < z ? in[off + j] : 0.0f;
            continue;
        }
        memset(dst, 0, (size_t)a * sizeof(float));
        if (a < z) memcpy(dst + a, in + off + a, (size_t)(z - a) * sizeof(float));
        memset(dst + z, 0, (size_t)(span - z) * sizeof(float));
    }
}

// col (B * OH * OW, K * K * C) from in (B, H, W, C)
void lsr_conv2d_im2col(float *col, const float *in, const lsr_layer *l, int batch) {
    const size_t row_len = (size_t)l->kernel * l->kernel * l->in.c;
    const int64_t rows = (int64_t)batch * l->out.h * l->out.w;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        lsr_conv2d_patch(col + (size_t)r * row_len, in, l, r);
}

// din (B, H, W, C) = the sum of the patches in col; one sample per thread
static void col2im(float *din, const float *col, const lsr_layer *l, int batch) {
    const int H = l->in.h, W = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
    const int K = l->kernel, S = l->stride;
    const size_t row_len = (size_t)K * K * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        float *img = din + (size_t)b * H * W * C;
        memset(img, 0, (size_t)H * W * C * sizeof(float));
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                const float *src = col + (((size_t)b * OH + oy) * OW + ox) * row_len;
                for (int ky = 0; ky < K; ky++) {
                    const int iy = oy * S - l->pad_top + ky;
                    for (int kx = 0; kx < K; kx++, src += C) {
                        const int ix = ox * S - l->pad_left + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        float *dst = img + ((size_t)iy * W + ix) * C;
                        for (int c = 0; c < C; c++)
                            dst[c] += src[c];
                    }
                }
            }
    }
}

// blocks of 128 columns, each summed down the rows in row order (vectors
// across the columns), so the result does not depend on the thread count
void lsr_bias_grad(float *dbias, const float *dout, int rows, int F) {
    enum { BLOCK = 128 };
    const int blocks = (F + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        const int f0 = blk * BLOCK, n = F - f0 < BLOCK ? F - f0 : BLOCK;
        float acc[BLOCK] = {0};
        for (int r = 0; r < rows; r++) {
            const float *d = dout + (size_t)r * F + f0;
            for (int f = 0; f < n; f++)
                acc[f] += d[f];
        }
        for (int f = 0; f < n; f++)
            dbias[f0 + f] += acc[f];
    }
}

int lsr_conv2d_is_dense(const lsr_layer *l) {
    return l->out.h == 1 && l->out.w == 1 && l->kernel == l->in.h && l->kernel == l->in.w &&
           l->pad_top == 0 && l->pad_left == 0;
}

// out (B, OH, OW, F), in (B, H, W, C), weight (F, K, K, C), bias (F), col scratch
// (unused when the kernel covers the whole input: then col would be in itself)
void lsr_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                        float *col, const lsr_layer *l, int batch) {
    const int F = l->units, row_len = l->kernel * l->kernel * l->in.c;
    const int rows = batch * l->out.h * l->out.w;
    if (lsr_conv2d_is_dense(l))
        col = (float *)in;
    else
        lsr_conv2d_im2col(col, in, l, batch);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        memcpy(out + (size_t)r * F, bias, (size_t)F * sizeof(float));
    lsr_gemm(0, 1, rows, F, row_len, 1.0f, col, row_len, weight, row_len, 1.0f, out, F);
}

// din (B, H, W, C) or NULL; dweight (F, K, K, C) and dbias (F) accumulated (NULL: skipped);
// col as the forward left it, or (when lsr_conv2d_is_dense) the forward's input
void lsr_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                         const float *col, const float *weight, float *dcol, const lsr_layer *l,
                         int batch) {
    const int F = l->units, row_len = l->kernel * l->kernel * l->in.c;
    const int rows = batch * l->out.h * l->out.w;
    if (lsr_conv2d_is_dense(l)) dcol = din;
    if (dweight) {
        lsr_gemm(1, 0, F, row_len, rows, 1.0f, dout, F, col, row_len, 1.0f, dweight, row_len);
        lsr_bias_grad(dbias, dout, rows, F);
    }
    if (!din) return;
    lsr_gemm(0, 0, rows, row_len, F, 1.0f, dout, F, weight, row_len, 0.0f, dcol, row_len);
    if (dcol != din) col2im(din, dcol, l, batch);
}
