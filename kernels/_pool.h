/* Max pooling of one output row, NHWC float32, on the vectors of _simd.h (AVX-512 or AVX2 + FMA): channels in
 * vectors, the last one masked.
 *
 * Why: the channel loop of the portable Cython kernel only vectorizes for channel counts the compiler's vector
 * loop covers; with LeNet's 6 channels it ran scalar, 6x slower than the Numba kernel. Masked vectors cover any
 * channel count. A NaN in a window reaches the output, as in the reference (as a NaN, not necessarily that one).
 */
#ifndef DROPCORE_POOL_H
#define DROPCORE_POOL_H

#include "_simd.h"

#if DC_HAVE_SIMD

/* Up to NV vectors of channels from k0 on: max over the taps, NaN tracked apart (maxps drops a NaN in its first
 * operand) so that the running maxima are independent chains of one instruction each. */
#define DC_MAX_POOL_PIXEL(NV)                                                                                      \
static inline void dc_max_pool_pixel_##NV(const float* x, float* y, int wd, int c, int k0, int y0, int y1, int x0, \
                                          int x1) {                                                               \
    vf_t best[NV];                                                                                                \
    vmask_t m[NV], nan[NV];                                                                                       \
    for (int j = 0; j < NV; ++j) {                                                                                \
        m[j] = V_MASK(c - k0 - V_LANES * j);                                                                      \
        best[j] = V_SET1(-__builtin_inff());                                                                      \
        nan[j] = V_NONE;                                                                                          \
    }                                                                                                             \
    for (int iy = y0; iy < y1; ++iy)                                                                              \
        for (int ix = x0; ix < x1; ++ix) {                                                                        \
            const float* px = x + ((long)iy * wd + ix) * c + k0;                                                  \
            for (int j = 0; j < NV; ++j) {                                                                        \
                vf_t v = V_LOAD(m[j], px + V_LANES * j);                                                          \
                best[j] = V_MAX(best[j], v);                                                                      \
                nan[j] = V_OR(nan[j], V_NAN(v));                                                                  \
            }                                                                                                     \
        }                                                                                                         \
    for (int j = 0; j < NV; ++j)                                                                                  \
        V_STORE(y + k0 + V_LANES * j, m[j], V_SELECT(nan[j], best[j], V_SET1(__builtin_nanf(""))));              \
}
DC_MAX_POOL_PIXEL(1)
DC_MAX_POOL_PIXEL(4)

/* y[ox, :] = max over the window's taps inside the input; `x` is the sample (h, wd, c), `iy0` the window's first
 * input row (may be negative: padded rows never win). */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl) {
    const int y0 = iy0 < 0 ? 0 : iy0, y1 = (iy0 + ph < h) ? iy0 + ph : h;
    for (int ox = 0; ox < ow; ++ox) {
        const int ix0 = ox * sw - pl;
        const int x0 = ix0 < 0 ? 0 : ix0, x1 = (ix0 + pw < wd) ? ix0 + pw : wd;
        float* yp = y + (long)ox * c;
        if (c <= V_LANES)
            dc_max_pool_pixel_1(x, yp, wd, c, 0, y0, y1, x0, x1);
        else
            for (int k0 = 0; k0 < c; k0 += 4 * V_LANES) dc_max_pool_pixel_4(x, yp, wd, c, k0, y0, y1, x0, x1);
    }
}

/* The max pooling of a block of convolution rows with each window's tap, for training's conv2d_max_pool: `conv` holds
 * prows * ph rows of ow pixels of c channels; y (prows x pow x c) gets each window's maximum and arg (uint8, the same
 * shape) the row-major index in the window of its first maximum (a later tap wins only when greater), or 255 with
 * a NaN where the window holds one (max_pool2d's bits: the same comparisons in the same order). */
static inline void dc_max_pool_arg_rows(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                        float* y, unsigned char* arg) {
    for (int py = 0; py < prows; ++py)
        for (int px = 0; px < pow_; ++px)
            for (int co = 0; co < c; co += V_LANES) {
                const vmask_t m = V_MASK(c - co);
                const float* first = conv + (((long)py * ph) * ow + (long)px * pw) * c + co;
                vf_t best = V_LOAD(m, first);
                vmask_t nan = V_NAN(best);
                vi_t tap = V_INT(0);
                for (int k = 1; k < ph * pw; ++k) {
                    const vf_t v = V_LOAD(m, first + ((long)(k / pw) * ow + k % pw) * c);
                    const vmask_t gt = V_GT(v, best); /* false against a NaN either side */
                    nan = V_OR(nan, V_NAN(v));
                    best = V_SELECT(gt, best, v);
                    tap = V_SELECT_INT(gt, tap, V_INT(k));
                }
                const long at = ((long)py * pow_ + px) * c + co;
                V_STORE(y + at, m, V_SELECT(nan, best, V_SET1(__builtin_nanf(""))));
                V_STORE_BYTES(arg + at, m, V_SELECT_INT(nan, tap, V_INT(255)));
            }
}

/* dc_max_pool_arg_rows for the Numba kernels (through an LLVM symbol). */
static inline void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                          float* y, unsigned char* arg) {
    dc_max_pool_arg_rows(conv, ow, c, ph, pw, prows, pow_, y, arg);
}

#else
static inline void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                          float* y, unsigned char* arg) {
    (void)conv; (void)ow; (void)c; (void)ph; (void)pw; (void)prows; (void)pow_; (void)y; (void)arg;
}
/* Never called on the generic target (callers check DC_HAVE_SIMD); defined so that the extension links. */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl) {
    (void)x; (void)y; (void)h; (void)wd; (void)c; (void)ow; (void)iy0; (void)ph; (void)pw; (void)sw; (void)pl;
}
#endif

#endif
