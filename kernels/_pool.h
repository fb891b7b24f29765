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

#else
/* Never called on the generic target (callers check DC_HAVE_SIMD); defined so that the extension links. */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl) {
    (void)x; (void)y; (void)h; (void)wd; (void)c; (void)ow; (void)iy0; (void)ph; (void)pw; (void)sw; (void)pl;
}
#endif

#endif
