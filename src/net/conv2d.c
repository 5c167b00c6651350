/* 2-D convolution, channels last, as im2col + one sgemm over the batch.
 * The weight is (F, KH, KW, C); a row of the column matrix holds the
 * KH x KW x C input patch of one output position, so the output
 * (B * OH * OW, F) = col W^T is already channels last. */
#include <string.h>

#include "net.h"

// col (B * OH * OW, K * K * C) from in (B, H, W, C); each kernel row of a
// patch is one contiguous stretch of K * C input values, clipped at the edges
static void im2col(float *col, const float *in, const lsr_layer *l, int batch) {
    const int H = l->in.h, W = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
    const int K = l->kernel, S = l->stride;
    const size_t row_len = (size_t)K * K * C;
    const int64_t rows = (int64_t)batch * OH * OW;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int b = (int)(r / (OH * OW)), oy = (int)(r / OW % OH), ox = (int)(r % OW);
        float *dst = col + (size_t)r * row_len;
        const int ix0 = ox * S - l->pad_left;
        const int kx_lo = ix0 < 0 ? -ix0 : 0, kx_hi = ix0 + K > W ? W - ix0 : K;
        for (int ky = 0; ky < K; ky++, dst += (size_t)K * C) {
            const int iy = oy * S - l->pad_top + ky;
            if (iy < 0 || iy >= H || kx_lo >= kx_hi) {
                memset(dst, 0, (size_t)K * C * sizeof(float));
                continue;
            }
            if (kx_lo > 0) memset(dst, 0, (size_t)kx_lo * C * sizeof(float));
            memcpy(dst + (size_t)kx_lo * C, in + (((size_t)b * H + iy) * W + ix0 + kx_lo) * C,
                   (size_t)(kx_hi - kx_lo) * C * sizeof(float));
            if (kx_hi < K) memset(dst + (size_t)kx_hi * C, 0, (size_t)(K - kx_hi) * C * sizeof(float));
        }
    }
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

// out (B, OH, OW, F), in (B, H, W, C), weight (F, K, K, C), bias (F), col scratch
void lsr_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                        float *col, const lsr_layer *l, int batch) {
    const int F = l->units, row_len = l->kernel * l->kernel * l->in.c;
    const int rows = batch * l->out.h * l->out.w;
    im2col(col, in, l, batch);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        memcpy(out + (size_t)r * F, bias, (size_t)F * sizeof(float));
    lsr_gemm(0, 1, rows, F, row_len, 1.0f, col, row_len, weight, row_len, 1.0f, out, F);
}

// din (B, H, W, C) or NULL; dweight (F, K, K, C) and dbias (F) accumulated (NULL: skipped);
// col as the forward left it
void lsr_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                         const float *col, const float *weight, float *dcol, const lsr_layer *l,
                         int batch) {
    const int F = l->units, row_len = l->kernel * l->kernel * l->in.c;
    const int rows = batch * l->out.h * l->out.w;
    if (dweight) {
        lsr_gemm(1, 0, F, row_len, rows, 1.0f, dout, F, col, row_len, 1.0f, dweight, row_len);
#pragma omp parallel for schedule(static)
        for (int f = 0; f < F; f++) {
            float s = 0.0f;
            for (int r = 0; r < rows; r++) s += dout[(size_t)r * F + f];
            dbias[f] += s;
        }
    }
    if (!din) return;
    lsr_gemm(0, 0, rows, row_len, F, 1.0f, dout, F, weight, row_len, 0.0f, dcol, row_len);
    col2im(din, dcol, l, batch);
}
