/* Depthwise convolution, channels-last, depth multiplier 1 (the drivers repeat the input's channels for more): each
 * channel c of the output is the channel c of the input convolved with its own kh x kw filter w[i, j, c]. A tap is a
 * vector multiply-add along the channel axis, so the kernels below are written over _simd.h's vectors of channels:
 * the forward keeps 4 neighbouring output pixels of a row in registers over the window (each weight vector loaded
 * once for the 4), the input gradient gathers each input pixel's taps from the output gradient, and the weight
 * gradient keeps one tap's channel vector in registers along a whole output row.
 *
 * Every output element's sum runs over the taps in row-major order from zero, then the bias: the same order on the
 * vector and scalar paths, in the interior and at the borders (a padded tap is skipped, where the reference adds
 * 0 * w), whatever the thread count. The generic target (no DC_HAVE_SIMD) runs the same loops on scalars.
 *
 * Geometry: sample x (h, wd, c), weights w (kh, kw, c), output rows (ow, c); tap (i, j) of output (oy, ox) reads
 * x[oy * sh + i * dh - pt, ox * sw + j * dw - pl] ("dh", "dw": the dilation). `ro`, when not NULL, is the output
 * of a forward that fused ReLU: the gradient passes only where it is positive.
 */
#ifndef DROPCORE_DEPTHWISE_H
#define DROPCORE_DEPTHWISE_H

#include <stddef.h>
#include "_simd.h"

/* The tap rows i0 .. i1 - 1 (or columns) that fall inside 0 .. size - 1 for a window starting at `at`. */
static inline void dc_dw_span(int at, int k, int d, int size, int* i0, int* i1) {
    int a = 0, b = k;
    while (a < k && at + a * d < 0) ++a;
    while (b > a && at + (b - 1) * d >= size) --b;
    *i0 = a;
    *i1 = b;
}

/* The gradient value g of output element p (ReLU's mask applied when ro is given). */
static inline float dc_dw_grad(const float* dy, const float* ro, size_t p) {
    return (ro && !(ro[p] > 0.0f)) ? 0.0f : dy[p];
}

#if DC_HAVE_SIMD
#define DC_DW_LD(full, m, p) ((full) ? V_LOADU(p) : V_LOAD(m, p))

static inline vf_t dc_dw_finish(vf_t a, const float* b, int c0, vmask_t m, int full, int relu) {
    if (b) a = V_ADD(a, DC_DW_LD(full, m, b + c0));
    if (relu) a = V_SELECT(V_LT0(a), a, V_ZERO); /* x < 0 -> 0; a NaN stays */
    return a;
}

static inline void dc_dw_put(float* p, vf_t v, vmask_t m, int full) {
    if (full) V_STOREU(p, v); else V_STORE(p, m, v);
}

/* Four output pixels (ox .. ox + 3, every tap inside the row) for the channels c0 .. of one vector. */
static inline __attribute__((always_inline)) void dc_dw_tile4(
        const float* x, const float* w, const float* b, float* y, int wd, int c, int kw, int sw, int dh, int dw,
        int iy0, int i0, int i1, int ix0, int c0, vmask_t m, const int full, int relu) {
    vf_t a0 = V_ZERO, a1 = V_ZERO, a2 = V_ZERO, a3 = V_ZERO;
    const size_t step = (size_t)sw * c;
    for (int i = i0; i < i1; ++i) {
        const float* xr = x + ((size_t)(iy0 + i * dh) * wd + ix0) * c + c0;
        const float* wr = w + (size_t)i * kw * c + c0;
        for (int j = 0; j < kw; ++j) {
            const vf_t wv = DC_DW_LD(full, m, wr + (size_t)j * c);
            const float* xp = xr + (size_t)j * dw * c;
            a0 = V_FMA(DC_DW_LD(full, m, xp), wv, a0);
            a1 = V_FMA(DC_DW_LD(full, m, xp + step), wv, a1);
            a2 = V_FMA(DC_DW_LD(full, m, xp + 2 * step), wv, a2);
            a3 = V_FMA(DC_DW_LD(full, m, xp + 3 * step), wv, a3);
        }
    }
    dc_dw_put(y + c0, dc_dw_finish(a0, b, c0, m, full, relu), m, full);
    dc_dw_put(y + c + c0, dc_dw_finish(a1, b, c0, m, full, relu), m, full);
    dc_dw_put(y + 2 * (size_t)c + c0, dc_dw_finish(a2, b, c0, m, full, relu), m, full);
    dc_dw_put(y + 3 * (size_t)c + c0, dc_dw_finish(a3, b, c0, m, full, relu), m, full);
}

/* One output pixel, its taps clipped to the input (the borders), for the channels c0 .. of one vector. */
static inline __attribute__((always_inline)) void dc_dw_pixel(
        const float* x, const float* w, const float* b, float* y, int wd, int c, int kw, int dh, int dw, int iy0,
        int i0, int i1, int ix0, int j0, int j1, int c0, vmask_t m, const int full, int relu) {
    vf_t a = V_ZERO;
    for (int i = i0; i < i1; ++i) {
        const float* xr = x + ((size_t)(iy0 + i * dh) * wd + ix0) * c + c0;
        const float* wr = w + (size_t)i * kw * c + c0;
        for (int j = j0; j < j1; ++j)
            a = V_FMA(DC_DW_LD(full, m, xr + (size_t)j * dw * c), DC_DW_LD(full, m, wr + (size_t)j * c), a);
    }
    dc_dw_put(y + c0, dc_dw_finish(a, b, c0, m, full, relu), m, full);
}
#endif

/* Output row oy of one sample: y (ow, c) = relu?(depthwise(x, w) + b); b may be NULL. iy0 = oy * sh - pt. */
static void dc_dw_forward_row(const float* x, const float* w, const float* b, float* y, int h, int wd, int c,
                              int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow, int relu) {
    int i0, i1;
    dc_dw_span(iy0, kh, dh, h, &i0, &i1);
    const int span = (kw - 1) * dw;
    for (int ox = 0; ox < ow;) {
        const int ix0 = ox * sw - pl;
        float* yp = y + (size_t)ox * c;
#if DC_HAVE_SIMD
        const int cf = c - c % V_LANES;
        const vmask_t tail = V_MASK(c - cf);
        if (ox + 4 <= ow && ix0 >= 0 && ix0 + 3 * sw + span < wd) {
            for (int c0 = 0; c0 < cf; c0 += V_LANES)
                dc_dw_tile4(x, w, b, yp, wd, c, kw, sw, dh, dw, iy0, i0, i1, ix0, c0, tail, 1, relu);
            if (cf < c)
                dc_dw_tile4(x, w, b, yp, wd, c, kw, sw, dh, dw, iy0, i0, i1, ix0, cf, tail, 0, relu);
            ox += 4;
            continue;
        }
        int j0, j1;
        dc_dw_span(ix0, kw, dw, wd, &j0, &j1);
        for (int c0 = 0; c0 < cf; c0 += V_LANES)
            dc_dw_pixel(x, w, b, yp, wd, c, kw, dh, dw, iy0, i0, i1, ix0, j0, j1, c0, tail, 1, relu);
        if (cf < c)
            dc_dw_pixel(x, w, b, yp, wd, c, kw, dh, dw, iy0, i0, i1, ix0, j0, j1, cf, tail, 0, relu);
#else
        (void)span;
        int j0, j1;
        dc_dw_span(ix0, kw, dw, wd, &j0, &j1);
        for (int k = 0; k < c; ++k) yp[k] = 0.0f;
        for (int i = i0; i < i1; ++i)
            for (int j = j0; j < j1; ++j) {
                const float* xp = x + ((size_t)(iy0 + i * dh) * wd + ix0 + j * dw) * c;
                const float* wp = w + ((size_t)i * kw + j) * c;
                for (int k = 0; k < c; ++k) yp[k] += xp[k] * wp[k];
            }
        for (int k = 0; k < c; ++k) {
            float v = b ? yp[k] + b[k] : yp[k];
            yp[k] = (relu && v < 0.0f) ? 0.0f : v;
        }
#endif
        ox += 1;
    }
}

/* Input row iy of one sample's input gradient: dx (wd, c) = the sum over the taps that read each input pixel of
 * dy (oh, ow, c) times the tap's weights (a gather: each row is one task's own). */
static void dc_dw_dx_row(const float* dy, const float* ro, const float* w, float* dx, int wd, int c, int kh,
                         int kw, int sh, int sw, int dh, int dw, int pt, int pl, int oh, int ow, int iy) {
    for (int ix = 0; ix < wd; ++ix) {
        float* d = dx + (size_t)ix * c;
#if DC_HAVE_SIMD
        for (int c0 = 0; c0 < c; c0 += V_LANES) {
            const vmask_t m = V_MASK(c - c0);
            const int full = c - c0 >= V_LANES;
            vf_t a = V_ZERO;
            for (int i = 0; i < kh; ++i) {
                const int ny = iy + pt - i * dh;
                if (ny < 0 || ny % sh || ny / sh >= oh) continue;
                for (int j = 0; j < kw; ++j) {
                    const int nx = ix + pl - j * dw;
                    if (nx < 0 || nx % sw || nx / sw >= ow) continue;
                    const size_t p = ((size_t)(ny / sh) * ow + nx / sw) * c + c0;
                    vf_t g = DC_DW_LD(full, m, dy + p);
                    if (ro) g = V_SELECT(V_GT(DC_DW_LD(full, m, ro + p), V_ZERO), V_ZERO, g);
                    a = V_FMA(g, DC_DW_LD(full, m, w + ((size_t)i * kw + j) * c + c0), a);
                }
            }
            dc_dw_put(d + c0, a, m, full);
        }
#else
        for (int k = 0; k < c; ++k) d[k] = 0.0f;
        for (int i = 0; i < kh; ++i) {
            const int ny = iy + pt - i * dh;
            if (ny < 0 || ny % sh || ny / sh >= oh) continue;
            for (int j = 0; j < kw; ++j) {
                const int nx = ix + pl - j * dw;
                if (nx < 0 || nx % sw || nx / sw >= ow) continue;
                const size_t p = ((size_t)(ny / sh) * ow + nx / sw) * c;
                const float* wp = w + ((size_t)i * kw + j) * c;
                for (int k = 0; k < c; ++k) d[k] += dc_dw_grad(dy, ro, p + k) * wp[k];
            }
        }
#endif
    }
}

/* Output row oy of one sample added into the partial weight gradient dwp (kh, kw, c) and, when dbp is not NULL,
 * bias gradient dbp (c): each tap's channel vector summed along the row in registers. dy, ro: the row (ow, c). */
static void dc_dw_dw_row(const float* x, const float* dy, const float* ro, float* dwp, float* dbp, int h, int wd,
                         int c, int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow) {
    int i0, i1;
    dc_dw_span(iy0, kh, dh, h, &i0, &i1);
    for (int j = 0; j < kw; ++j) {
        /* the outputs ox whose tap j is inside the row: ox * sw + j * dw - pl in 0 .. wd - 1 */
        const int lo = j * dw - pl;
        int o0 = lo >= 0 ? 0 : (-lo + sw - 1) / sw;
        int o1 = wd - 1 - lo < 0 ? 0 : (wd - 1 - lo) / sw + 1;
        if (o1 > ow) o1 = ow;
        for (int i = i0; i < i1; ++i) {
            const float* xr = x + (size_t)(iy0 + i * dh) * wd * c;
            float* t = dwp + ((size_t)i * kw + j) * c;
#if DC_HAVE_SIMD
            for (int c0 = 0; c0 < c; c0 += V_LANES) {
                const vmask_t m = V_MASK(c - c0);
                const int full = c - c0 >= V_LANES;
                vf_t a = DC_DW_LD(full, m, t + c0);
                for (int ox = o0; ox < o1; ++ox) {
                    const size_t p = (size_t)ox * c + c0;
                    vf_t g = DC_DW_LD(full, m, dy + p);
                    if (ro) g = V_SELECT(V_GT(DC_DW_LD(full, m, ro + p), V_ZERO), V_ZERO, g);
                    a = V_FMA(DC_DW_LD(full, m, xr + (size_t)(ox * sw + lo) * c + c0), g, a);
                }
                dc_dw_put(t + c0, a, m, full);
            }
#else
            for (int ox = o0; ox < o1; ++ox) {
                const float* xp = xr + (size_t)(ox * sw + lo) * c;
                for (int k = 0; k < c; ++k) t[k] += xp[k] * dc_dw_grad(dy, ro, (size_t)ox * c + k);
            }
#endif
        }
    }
    if (dbp)
        for (int ox = 0; ox < ow; ++ox)
            for (int k = 0; k < c; ++k) dbp[k] += dc_dw_grad(dy, ro, (size_t)ox * c + k);
}

#endif
