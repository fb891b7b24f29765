/* Max pooling of one output row, NHWC float32, on AVX-512: channels in 16-lane vectors, the last one masked.
 *
 * Why: the channel loop of the portable Cython kernel only vectorizes for channel counts the compiler's vector
 * loop covers; with LeNet's 6 channels it ran scalar, 6x slower than the Numba kernel. Masked vectors cover any
 * channel count. A NaN in a window reaches the output, as in the reference (as a NaN, not necessarily that one).
 */
#ifndef DROPCORE_AVX512_POOL_H
#define DROPCORE_AVX512_POOL_H

#include "_avx512_gemm.h"

#if DC_HAVE_AVX512

/* Up to NV vectors of channels from k0 on: max over the taps, NaN tracked apart (maxps drops a NaN in its first
 * operand) so that the running maxima are independent chains of one instruction each. */
#define DC_MAX_POOL_PIXEL(NV)                                                                                      \
static inline void dc_max_pool_pixel_##NV(const float* x, float* y, int wd, int c, int k0, int y0, int y1, int x0, \
                                          int x1) {                                                               \
    __m512 best[NV];                                                                                              \
    __mmask16 m[NV], nan[NV];                                                                                     \
    for (int j = 0; j < NV; ++j) {                                                                                \
        m[j] = dc_mask(c - k0 - 16 * j < 0 ? 0 : c - k0 - 16 * j);                                                \
        best[j] = _mm512_set1_ps(-__builtin_inff());                                                              \
        nan[j] = 0;                                                                                               \
    }                                                                                                             \
    for (int iy = y0; iy < y1; ++iy)                                                                              \
        for (int ix = x0; ix < x1; ++ix) {                                                                        \
            const float* px = x + ((long)iy * wd + ix) * c + k0;                                                  \
            for (int j = 0; j < NV; ++j) {                                                                        \
                __m512 v = _mm512_maskz_loadu_ps(m[j], px + 16 * j);                                              \
                best[j] = _mm512_max_ps(best[j], v);                                                              \
                nan[j] |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);                                                 \
            }                                                                                                     \
        }                                                                                                         \
    for (int j = 0; j < NV; ++j)                                                                                  \
        _mm512_mask_storeu_ps(y + k0 + 16 * j, m[j],                                                              \
                              _mm512_mask_blend_ps(nan[j], best[j], _mm512_set1_ps(__builtin_nanf(""))));       \
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
        if (c <= 16)
            dc_max_pool_pixel_1(x, yp, wd, c, 0, y0, y1, x0, x1);
        else
            for (int k0 = 0; k0 < c; k0 += 64) dc_max_pool_pixel_4(x, yp, wd, c, k0, y0, y1, x0, x1);
    }
}

#else
/* Never called without AVX-512 (callers check DC_HAVE_AVX512); defined so that the extension still links. */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl) {
    (void)x; (void)y; (void)h; (void)wd; (void)c; (void)ow; (void)iy0; (void)ph; (void)pw; (void)sw; (void)pl;
}
#endif

#endif
