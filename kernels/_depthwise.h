/* Depthwise convolution, channels-last, depth multiplier 1 (the drivers repeat the input's channels for more): each
 * channel c of the output is the channel c of the input convolved with its own kh x kw filter w[i, j, c]. A tap is a
 * vector multiply-add along the channel axis, so the kernels below are written over _simd.h's vectors of channels:
 * the forward keeps a tile of neighbouring output pixels of a row in registers over the window (3-wide kernels at
 * strides 1 and 2, MobileNets': 8 pixels or 4 pixels x 2 vectors, each input column loaded once for every pixel
 * that reads it; other kernels 4 pixels, each weight vector loaded once for the 4), the input gradient scatters each
 * output's gradient into the input row it read (the drivers run the forward on the gradient at stride 1), and the
 * weight gradient keeps the channel vectors of a kernel row's taps in registers along a whole output row.
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

/* Four output pixels (ox .. ox + 3, every tap inside the row) for the channels c0 .. of one vector: the kernels
 * other than 3 wide at dilation 1 and strides 1 or 2 (those take dc_dw_tile3 below). */
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

/* The tiles of dc_dw_tile3 (T pixels x V channel vectors) at stride 1 (at fewer than 128 channels: "N", at 128 and
 * more: "W") and at stride 2. 8 independent chains of FMAs are what 2 FMA pipes of latency 4 need. AVX2's 16
 * registers hold 8 accumulators and the weights of a kernel row for them (3 a vector). A tile of T pixels reads
 * (T - 1) * S + 3 columns of each of 3 input rows; at 128 channels (512 bytes a pixel) 8 columns apart map to one L1
 * set, as the 3 rows do: 8 pixels at stride 2 put 9 lines in an 8-way set, and each line, fetched for one half (a
 * vector of 8 channels), was gone when the next vector wanted the other (and at batch 64 the lines came from
 * memory twice). 4 pixels x 2 vectors read 9 columns (6 at stride 1), both halves of each line at once (Zen 3,
 * batch 64, one thread: 16x16x128 at stride 2 0.55 ms -> 0.45, at stride 1 1.48 -> 1.24; below 128 channels 8 x 1
 * was the faster). AVX-512's vectors are whole lines, and its 32 registers hold 16 accumulators. */
#if V_LANES >= 16
#define DC_DW_T1N 8
#define DC_DW_V1N 2
#define DC_DW_T1W 8
#define DC_DW_V1W 2
#define DC_DW_T2 4
#define DC_DW_V2 2
#else
#define DC_DW_T1N 8
#define DC_DW_V1N 1
#define DC_DW_T1W 4
#define DC_DW_V1W 2
#define DC_DW_T2 4
#define DC_DW_V2 2
#endif
#define DC_DW_TMAX 8
#define DC_DW_UNROLL _Pragma("GCC unroll 64")

/* T output pixels (ox0 .. ox0 + T - 1) of a 3-wide kernel at dilation 1 and stride S for the channels of V vectors
 * from c0 (V > 1: full vectors only), T, V and S constants (an unrolled tile). The input columns the tile reads,
 * ix0 .. ix0 + (T - 1) * S + 2, are each loaded once, left to right, and multiplied into every pixel whose window
 * holds them (3 at stride 1, 1 or 2 at stride 2): each pixel still sees its taps in row-major order, since for a
 * pixel the column grows with j. With `clip` (1: any columns, 2: the first, 3: the last), the columns outside the
 * row are skipped, as the padded taps of dc_dw_pixel are (the border tiles); the kernel rows are i0 .. i1 - 1, those
 * inside the input. Each pixel's sum is the one chain of dc_dw_pixel, so the tile a pixel falls in does not change
 * its bits. */
static inline __attribute__((always_inline)) void dc_dw_tile3(
        const float* x, const float* w, const float* b, float* y, int wd, int c, int dh, int iy0, int i0, int i1,
        int ix0, int c0, vmask_t m, const int T, const int V, const int S, const int full, const int clip, int relu) {
    vf_t a[2][DC_DW_TMAX];
    const int ncol = (T - 1) * S + 3;
    const int klo = ix0 < 0 ? -ix0 : 0, khi = wd - ix0; /* the columns k inside the row: klo <= k < khi */
    DC_DW_UNROLL for (int v = 0; v < V; ++v)
        DC_DW_UNROLL for (int p = 0; p < T; ++p) a[v][p] = V_ZERO;
    /* pointers stepped in 64 bits: int index arithmetic in the loops, under -fwrapv (the extensions' flags), cost
     * sign extensions and multiplies each row */
    const ptrdiff_t cs = c, rs = (ptrdiff_t)dh * wd * c;
    const float* xr = x + ((ptrdiff_t)(iy0 + i0 * dh) * wd + ix0) * cs + c0;
    const float* wr = w + (ptrdiff_t)i0 * 3 * cs + c0;
    for (int i = i0; i < i1; ++i, xr += rs, wr += 3 * cs) {
        const float* xp = xr;
        vf_t w0[2], w1[2], w2[2];
        DC_DW_UNROLL for (int v = 0; v < V; ++v) {
            w0[v] = DC_DW_LD(full, m, wr + v * V_LANES);
            w1[v] = DC_DW_LD(full, m, wr + cs + v * V_LANES);
            w2[v] = DC_DW_LD(full, m, wr + 2 * cs + v * V_LANES);
        }
        DC_DW_UNROLL for (int k = 0; k < ncol; ++k, xp += cs) {
            if ((clip == 1 && (k < klo || k >= khi)) || (clip == 2 && k == 0) || (clip == 3 && k == ncol - 1))
                continue;
            DC_DW_UNROLL for (int v = 0; v < V; ++v) {
                const vf_t u = DC_DW_LD(full, m, xp + v * V_LANES);
                /* column k is tap j of pixel (k - j) / S */
                if (k % S == 0 && k / S < T) a[v][k / S] = V_FMA(u, w0[v], a[v][k / S]);
                if (k >= 1 && (k - 1) % S == 0 && (k - 1) / S < T)
                    a[v][(k - 1) / S] = V_FMA(u, w1[v], a[v][(k - 1) / S]);
                if (k >= 2 && (k - 2) % S == 0 && (k - 2) / S < T)
                    a[v][(k - 2) / S] = V_FMA(u, w2[v], a[v][(k - 2) / S]);
            }
        }
    }
    DC_DW_UNROLL for (int v = 0; v < V; ++v)
        DC_DW_UNROLL for (int p = 0; p < T; ++p) {
            const int cv = c0 + v * V_LANES;
            dc_dw_put(y + p * cs + cv, dc_dw_finish(a[v][p], b, cv, m, full, relu), m, full);
        }
}

/* `call` with CL the clipped variant `clip` as a constant. */
#define DC_DW_CLIP(clip, call)                              \
    do {                                                    \
        if ((clip) == 0) { const int CL = 0; call; }        \
        else if ((clip) == 2) { const int CL = 2; call; }   \
        else if ((clip) == 3) { const int CL = 3; call; }   \
        else { const int CL = 1; call; }                    \
    } while (0)

/* Tiles of T pixels along an output row of ow >= T pixels, V channel vectors at a time (then single vectors, then
 * the partial one): the last tile ends at the row's end, overlapping the one before when T does not divide ow (the
 * overlapped pixels are written twice, the same bits). The tiles whose columns leave the row take the clipped
 * variant. Between tiles, the input rows the next output row adds (from pfrow) are prefetched a slice at a time,
 * and at stride 1 the next output row (the caller's rows are contiguous) for writing: the hardware's prefetchers,
 * seeing a row read a vector of channels at a time across its pixels, left most of it to the demand loads (Zen 3,
 * batch 64, one thread, the data from memory: stride 2 at 64 channels 1.75 ms -> 1.08, stride 1 at 128 channels
 * 1.75 -> 1.39, and 1.36 -> 1.15 with the output's lines). Both are hints: a row past the batch never faults. */
static inline __attribute__((always_inline)) void dc_dw_row3_tiles(
        const float* x, const float* w, const float* b, float* y, int wd, int c, int dh, int iy0, int i0, int i1,
        int pl, int ow, int pfrow, const int T, const int V, const int S, int relu) {
    const int cf = c - c % V_LANES, cv = cf - cf % (V * V_LANES);
    const vmask_t tail = V_MASK(c - cf);
    const int nt = (ow + T - 1) / T, steps = cv / (V * V_LANES) + (c - cv + V_LANES - 1) / V_LANES;
    const size_t rowb = (size_t)wd * c * sizeof(float);
    const char* pf = (const char*)x + (ptrdiff_t)pfrow * (ptrdiff_t)rowb;
    const char* const pfe = pf + S * rowb;
    const size_t per = (S * rowb / 64 + (size_t)nt * steps - 1) / ((size_t)nt * steps) * 64;
    const size_t yrowb = (size_t)ow * c * sizeof(float);
    const char* pw = (const char*)y + yrowb;
    const char* const pwe = pw + yrowb;
    const size_t perw = (yrowb / 64 + (size_t)nt * steps - 1) / ((size_t)nt * steps) * 64;
    for (int o = 0; o < ow; o += T) {
        const int ox = o + T <= ow ? o : ow - T;
        const int ix0 = ox * S - pl;
        float* yp = y + (size_t)ox * c;
        const int klo = ix0 < 0 ? -ix0 : 0, khi = wd - ix0, ncol = (T - 1) * S + 3;
        /* the clipped variants: 2 and 3 (a padding of 1 on the left, the last column past the right) skip a
         * constant column, 1 tests each column (those tests cost the 32x32x32 layer 12% at batch 64) */
        const int clip = klo == 0 && khi >= ncol ? 0
                       : klo == 1 && khi >= ncol ? 2
                       : klo == 0 && khi == ncol - 1 ? 3 : 1;
        for (int c0 = 0; c0 < c;) {
            for (const char* e = pf + per; pf < e && pf < pfe; pf += 64) __builtin_prefetch(pf, 0, 3);
            if (S == 1)
                for (const char* e = pw + perw; pw < e && pw < pwe; pw += 64) __builtin_prefetch(pw, 1, 3);
            if (c0 < cv) {
                DC_DW_CLIP(clip, dc_dw_tile3(x, w, b, yp, wd, c, dh, iy0, i0, i1, ix0, c0, tail, T, V, S, 1, CL, relu));
                c0 += V * V_LANES;
            } else if (c0 < cf) {
                DC_DW_CLIP(clip, dc_dw_tile3(x, w, b, yp, wd, c, dh, iy0, i0, i1, ix0, c0, tail, T, 1, S, 1, CL, relu));
                c0 += V_LANES;
            } else {
                DC_DW_CLIP(clip, dc_dw_tile3(x, w, b, yp, wd, c, dh, iy0, i0, i1, ix0, c0, tail, T, 1, S, 0, CL, relu));
                c0 += V_LANES;
            }
        }
    }
}

/* An output row of a 3-wide kernel at dilation 1 and stride S: the widest tile that fits the row (T, then 4 pixels,
 * then 1). */
static inline __attribute__((always_inline)) void dc_dw_row3(
        const float* x, const float* w, const float* b, float* y, int wd, int c, int dh, int iy0, int i0, int i1,
        int pl, int ow, int pfrow, const int T, const int V, const int S, int relu) {
    if (ow >= T)
        dc_dw_row3_tiles(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, T, V, S, relu);
    else if (T > 4 && ow >= 4)
        dc_dw_row3_tiles(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, 4, V, S, relu);
    else
        dc_dw_row3_tiles(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, 1, V, S, relu);
}

static void dc_dw_row3_s1(const float* x, const float* w, const float* b, float* y, int wd, int c, int dh,
                          int iy0, int i0, int i1, int pl, int ow, int pfrow, int relu) {
    if (c >= 128) dc_dw_row3(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, DC_DW_T1W, DC_DW_V1W, 1, relu);
    else dc_dw_row3(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, DC_DW_T1N, DC_DW_V1N, 1, relu);
}

static void dc_dw_row3_s2(const float* x, const float* w, const float* b, float* y, int wd, int c, int dh,
                          int iy0, int i0, int i1, int pl, int ow, int pfrow, int relu) {
    dc_dw_row3(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, DC_DW_T2, DC_DW_V2, 2, relu);
}
#endif

/* Output row oy of one sample: y (ow, c) = relu?(depthwise(x, w) + b); b may be NULL. iy0 = oy * sh - pt. */
static void dc_dw_forward_row(const float* x, const float* w, const float* b, float* y, int h, int wd, int c,
                              int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow, int relu) {
    int i0, i1;
    dc_dw_span(iy0, kh, dh, h, &i0, &i1);
#if DC_HAVE_SIMD
    if (kw == 3 && dw == 1) { /* MobileNets' 3x3 kernels; the next output row reads rows from pfrow on anew */
        const int pfrow = iy0 + (kh - 1) * dh + 1;
        if (sw == 1) { dc_dw_row3_s1(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, relu); return; }
        if (sw == 2) { dc_dw_row3_s2(x, w, b, y, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, relu); return; }
    }
#endif
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

/* Input row iy of one sample's input gradient dx (wd, c): for each tap (i, j) in row-major order whose kernel row
 * reads input row iy, each output of dy (oh, ow, c) reading the row through tap j adds its gradient times the tap's
 * weights into the input pixel it read (a scatter within the row: each row is one task's own). Each element's sum
 * runs over its taps in row-major order from zero. (A gather over each input pixel's taps tested every tap for
 * divisibility by the stride, per pixel and vector: 10x the forward at stride 2.) */
static void dc_dw_dx_row(const float* dy, const float* w, float* dx, int wd, int c, int kh, int kw, int sh, int sw,
                         int dh, int dw, int pt, int pl, int oh, int ow, int iy) {
    for (size_t k = 0; k < (size_t)wd * c; ++k) dx[k] = 0.0f;
    for (int i = 0; i < kh; ++i) {
        const int ny = iy + pt - i * dh;
        if (ny < 0 || ny % sh || ny / sh >= oh) continue;
        const float* g = dy + (size_t)(ny / sh) * ow * c;
        for (int j = 0; j < kw; ++j) {
            const int lo = j * dw - pl; /* output ox reads input column ox * sw + lo */
            int o0 = lo >= 0 ? 0 : (-lo + sw - 1) / sw;
            int o1 = wd - 1 - lo < 0 ? 0 : (wd - 1 - lo) / sw + 1;
            if (o1 > ow) o1 = ow;
            const float* wv = w + ((size_t)i * kw + j) * c;
            for (int ox = o0; ox < o1; ++ox) {
                float* d = dx + (size_t)(ox * sw + lo) * c;
                const float* gv = g + (size_t)ox * c;
#if DC_HAVE_SIMD
                int c0 = 0;
                for (; c0 + V_LANES <= c; c0 += V_LANES)
                    V_STOREU(d + c0, V_FMA(V_LOADU(gv + c0), V_LOADU(wv + c0), V_LOADU(d + c0)));
                if (c0 < c) {
                    const vmask_t m = V_MASK(c - c0);
                    V_STORE(d + c0, m, V_FMA(V_LOAD(m, gv + c0), V_LOAD(m, wv + c0), V_LOAD(m, d + c0)));
                }
#else
                for (int k = 0; k < c; ++k) d[k] += gv[k] * wv[k];
#endif
            }
        }
    }
}

#if DC_HAVE_SIMD
/* Taps 0, 1 and 2 of a kernel row (partials t, t + c, t + 2c) for the channels c0 .. of one vector, summed along an
 * output row: each gradient vector loaded once for the three taps (1.33 loads a multiply-add instead of 2). Each
 * tap's sum still runs over the outputs in order (the borders, where fewer taps read the row, before and after):
 * the bits of one tap at a time. */
static inline __attribute__((always_inline)) void dc_dw_dw3(const float* xr, const float* dy, float* t, int c,
                                                            int sw, int dw, int pl, int ow, int wd, int c0,
                                                            vmask_t m, const int full) {
    int o0[3], o1[3], lo[3];
    vf_t a[3];
    int first = 0, last = ow;
    DC_UNROLL for (int j = 0; j < 3; ++j) {
        lo[j] = j * dw - pl;
        o0[j] = lo[j] >= 0 ? 0 : (-lo[j] + sw - 1) / sw;
        o1[j] = wd - 1 - lo[j] < 0 ? 0 : (wd - 1 - lo[j]) / sw + 1;
        if (o1[j] > ow) o1[j] = ow;
        if (o0[j] > first) first = o0[j];
        if (o1[j] < last) last = o1[j];
        a[j] = DC_DW_LD(full, m, t + (size_t)j * c + c0);
    }
    if (last < first) last = first; /* no output reads the row through all three: each tap alone */
    DC_UNROLL for (int j = 0; j < 3; ++j)
        for (int ox = o0[j]; ox < (first < o1[j] ? first : o1[j]); ++ox)
            a[j] = V_FMA(DC_DW_LD(full, m, xr + (size_t)(ox * sw + lo[j]) * c + c0),
                         DC_DW_LD(full, m, dy + (size_t)ox * c + c0), a[j]);
    for (int ox = first; ox < last; ++ox) {
        const vf_t g = DC_DW_LD(full, m, dy + (size_t)ox * c + c0);
        const float* xp = xr + (size_t)(ox * sw) * c + c0;
        a[0] = V_FMA(DC_DW_LD(full, m, xp + (ptrdiff_t)lo[0] * c), g, a[0]);
        a[1] = V_FMA(DC_DW_LD(full, m, xp + (ptrdiff_t)lo[1] * c), g, a[1]);
        a[2] = V_FMA(DC_DW_LD(full, m, xp + (ptrdiff_t)lo[2] * c), g, a[2]);
    }
    DC_UNROLL for (int j = 0; j < 3; ++j) {
        for (int ox = (last > o0[j] ? last : o0[j]); ox < o1[j]; ++ox)
            a[j] = V_FMA(DC_DW_LD(full, m, xr + (size_t)(ox * sw + lo[j]) * c + c0),
                         DC_DW_LD(full, m, dy + (size_t)ox * c + c0), a[j]);
        dc_dw_put(t + (size_t)j * c + c0, a[j], m, full);
    }
}
#endif

/* Output row oy of one sample added into the partial weight gradient dwp (kh, kw, c) and, when dbp is not NULL,
 * bias gradient dbp (c): each tap's channel vector summed along the row in registers. dy, ro: the row (ow, c). */
static void dc_dw_dw_row(const float* x, const float* dy, const float* ro, float* dwp, float* dbp, int h, int wd,
                         int c, int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow) {
    int i0, i1;
    dc_dw_span(iy0, kh, dh, h, &i0, &i1);
#if DC_HAVE_SIMD
    if (kw == 3 && !ro) { /* 3-wide kernels (MobileNets'): three taps a pass */
        const int cf = c - c % V_LANES;
        const vmask_t tail = V_MASK(c - cf);
        for (int i = i0; i < i1; ++i) {
            const float* xr = x + (size_t)(iy0 + i * dh) * wd * c;
            float* t = dwp + (size_t)i * kw * c;
            for (int c0 = 0; c0 < cf; c0 += V_LANES) dc_dw_dw3(xr, dy, t, c, sw, dw, pl, ow, wd, c0, tail, 1);
            if (cf < c) dc_dw_dw3(xr, dy, t, c, sw, dw, pl, ow, wd, cf, tail, 0);
        }
        kw = 0; /* done: only the bias below */
    }
#endif
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
