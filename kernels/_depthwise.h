/* Depthwise convolution, channels-last, depth multiplier 1 (the drivers repeat the input's channels for more): each
 * channel c of the output is the channel c of the input convolved with its own kh x kw filter w[i, j, c]. A tap is a
 * vector multiply-add along the channel axis, so the kernels below are written over _simd.h's vectors of channels:
 * the forward keeps a tile of neighbouring output pixels of a row in registers over the window (3-wide kernels at
 * strides 1 and 2, MobileNets': 8 pixels or 4 pixels x 2 vectors, each input column loaded once for every pixel
 * that reads it; other kernels 4 pixels, each weight vector loaded once for the 4), the input gradient gathers a tile
 * of input pixels in registers (3-wide kernels at stride 2; the drivers run the forward on the gradient at stride 1)
 * or scatters each output's gradient into the input row it read (other kernels), and the weight gradient keeps the
 * channel vectors of a kernel row's taps (3x3 kernels: of all 9 taps, and the bias) in registers along an output row.
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

/* The forward's `relu` argument: 1 for ReLU, DC_DW_RELU6 for ReLU6 (MobileNets'), applied in the registers before
 * the store. As a pass over each written row (dc_act_rows), ReLU6 cost the depthwise layers 20-30% at batch 1 (Zen 3,
 * 32x32x32 on one thread: 13.7 us without it, 17.9 with). */
#define DC_DW_RELU6 2

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

/* The bytes of a span to prefetch that each of `calls` calls along a row takes: whole cache lines, enough that the
 * row's last call has fetched the whole span. */
static inline size_t dc_dw_pf_slice(size_t bytes, size_t calls) { return (bytes / 64 + calls - 1) / calls * 64; }

/* The steps a tile takes across c channels: blocks of V vectors up to cv, then single vectors and the tail. */
static inline int dc_dw_channel_steps(int c, int cv, int V) {
    return cv / (V * V_LANES) + (c - cv + V_LANES - 1) / V_LANES;
}

/* The bias, then with relu ReLU, and with relu == DC_DW_RELU6 also the cap at 6 (dc_relu6f's bits: 6 - x < 0 exactly
 * when x > 6; a NaN stays), in the registers. */
static inline vf_t dc_dw_finish(vf_t a, const float* b, int c0, vmask_t m, int full, int relu) {
    if (b) a = V_ADD(a, DC_DW_LD(full, m, b + c0));
    if (relu) a = V_SELECT(V_LT0(a), a, V_ZERO); /* x < 0 -> 0; a NaN stays */
    if (relu == DC_DW_RELU6) a = V_SELECT(V_LT0(V_SUB(V_SET1(6.0f), a)), a, V_SET1(6.0f));
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
    const int nt = (ow + T - 1) / T, steps = dc_dw_channel_steps(c, cv, V);
    const size_t rowb = (size_t)wd * c * sizeof(float);
    const char* pf = (const char*)x + (ptrdiff_t)pfrow * (ptrdiff_t)rowb;
    const char* const pfe = pf + S * rowb;
    const size_t per = dc_dw_pf_slice(S * rowb, (size_t)nt * steps);
    const size_t yrowb = (size_t)ow * c * sizeof(float);
    const char* pw = (const char*)y + yrowb;
    const char* const pwe = pw + yrowb;
    const size_t perw = dc_dw_pf_slice(yrowb, (size_t)nt * steps);
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
            v = (relu && v < 0.0f) ? 0.0f : v;
            yp[k] = (relu == DC_DW_RELU6 && v > 6.0f) ? 6.0f : v;
        }
#endif
        ox += 1;
    }
}

#if DC_HAVE_SIMD
/* The input gradient of a 3-wide kernel at dilation 1 and stride 2 along one input row, gathered: a tile of P input
 * pixels (ix0 ..) x V channel vectors in registers over the kernel rows that read the row (nr of them: gradient rows
 * g[r], weight rows wr[r], in row-major order). Pixel ix takes tap j from output (ix + pl - j) / 2 when that divides:
 * with the tile's first pixel at parity PAR of ix + pl, every gradient column the tile reads is loaded once and
 * multiplied into the 1 to 3 pixels it reaches, the columns right to left, so that each pixel sees its taps in
 * row-major order (tap 0 from the column right of tap 2's): each pixel's sum is the chain of the scatter
 * (dc_dw_dx_row's loop), the same bits. With `clip`, the columns outside the gradient row (0 .. ow - 1) are
 * skipped. The scatter read and wrote the row's gradient once a tap (Zen 3, batch 64, one thread, 16x16x64 ->
 * 32x32x64: 2.3 ms -> 1.25). */
static inline __attribute__((always_inline)) void dc_dw_dx2_tile(
        const float* const* g, const float* const* wr, int nr, float* dx, int c, int ix0, int pl, int ow, int c0,
        vmask_t m, const int P, const int V, const int PAR, const int full, const int clip) {
    vf_t a[2][DC_DW_TMAX];
    const ptrdiff_t cs = c;
    const int ob = (ix0 + pl - PAR) / 2; /* column k of the tile is output ob + k */
    const int kmax = (P - 1 + PAR) / 2;
    DC_DW_UNROLL for (int v = 0; v < V; ++v)
        DC_DW_UNROLL for (int p = 0; p < P; ++p) a[v][p] = V_ZERO;
    for (int r = 0; r < nr; ++r) {
        vf_t w0[2], w1[2], w2[2];
        DC_DW_UNROLL for (int v = 0; v < V; ++v) {
            w0[v] = DC_DW_LD(full, m, wr[r] + c0 + v * V_LANES);
            w1[v] = DC_DW_LD(full, m, wr[r] + cs + c0 + v * V_LANES);
            w2[v] = DC_DW_LD(full, m, wr[r] + 2 * cs + c0 + v * V_LANES);
        }
        const float* gp = g[r] + (ptrdiff_t)ob * cs + c0;
        DC_DW_UNROLL for (int k = kmax; k >= -1; --k) {
            if (clip && (ob + k < 0 || ob + k >= ow)) continue;
            DC_DW_UNROLL for (int v = 0; v < V; ++v) {
                const vf_t u = DC_DW_LD(full, m, gp + k * cs + v * V_LANES);
                /* virtual pixel 2k + j (pixel 2k + j - PAR) takes it as tap j */
                if (2 * k - PAR >= 0 && 2 * k - PAR < P) a[v][2 * k - PAR] = V_FMA(u, w0[v], a[v][2 * k - PAR]);
                if (2 * k + 1 - PAR >= 0 && 2 * k + 1 - PAR < P)
                    a[v][2 * k + 1 - PAR] = V_FMA(u, w1[v], a[v][2 * k + 1 - PAR]);
                if (2 * k + 2 - PAR >= 0 && 2 * k + 2 - PAR < P)
                    a[v][2 * k + 2 - PAR] = V_FMA(u, w2[v], a[v][2 * k + 2 - PAR]);
            }
        }
    }
    DC_DW_UNROLL for (int v = 0; v < V; ++v)
        DC_DW_UNROLL for (int p = 0; p < P; ++p)
            dc_dw_put(dx + (ptrdiff_t)(ix0 + p) * cs + c0 + v * V_LANES, a[v][p], m, full);
}

/* `call` with PA the parity and CL the clipping as constants. */
#define DC_DW_PARCLIP(par, clip, call)                                  \
    do {                                                                \
        if (par) {                                                      \
            const int PA = 1;                                           \
            if (clip) { const int CL = 1; call; } else { const int CL = 0; call; } \
        } else {                                                        \
            const int PA = 0;                                           \
            if (clip) { const int CL = 1; call; } else { const int CL = 0; call; } \
        }                                                               \
    } while (0)

/* Tiles of P pixels along the input row (wd >= P; the last tile overlaps the one before, the same bits), V channel
 * vectors at a time, then single vectors, then the tail; the next input row's gradient is prefetched for writing a
 * slice between tiles (the caller's rows are contiguous). */
static inline __attribute__((always_inline)) void dc_dw_dx2_tiles(
        const float* const* g, const float* const* wr, int nr, float* dx, int wd, int c, int pl, int ow, const int P,
        const int V) {
    const int cf = c - c % V_LANES, cv = cf - cf % (V * V_LANES);
    const vmask_t tail = V_MASK(c - cf);
    const int nt = (wd + P - 1) / P, steps = dc_dw_channel_steps(c, cv, V);
    const size_t rowb = (size_t)wd * c * sizeof(float);
    const char* pw = (const char*)dx + rowb;
    const char* const pwe = pw + rowb;
    const size_t perw = dc_dw_pf_slice(rowb, (size_t)nt * steps);
    for (int o = 0; o < wd; o += P) {
        const int ix0 = o + P <= wd ? o : wd - P;
        const int par = (ix0 + pl) & 1, ob = (ix0 + pl - par) / 2;
        const int clip = ob - 1 < 0 || ob + (P - 1 + par) / 2 >= ow;
        for (int c0 = 0; c0 < c;) {
            for (const char* e = pw + perw; pw < e && pw < pwe; pw += 64) __builtin_prefetch(pw, 1, 3);
            if (c0 < cv) {
                DC_DW_PARCLIP(par, clip, dc_dw_dx2_tile(g, wr, nr, dx, c, ix0, pl, ow, c0, tail, P, V, PA, 1, CL));
                c0 += V * V_LANES;
            } else if (c0 < cf) {
                DC_DW_PARCLIP(par, clip, dc_dw_dx2_tile(g, wr, nr, dx, c, ix0, pl, ow, c0, tail, P, 1, PA, 1, CL));
                c0 += V_LANES;
            } else {
                DC_DW_PARCLIP(par, clip, dc_dw_dx2_tile(g, wr, nr, dx, c, ix0, pl, ow, c0, tail, P, 1, PA, 0, CL));
                c0 += V_LANES;
            }
        }
    }
}

/* The tile sizes of the forward at stride 2 (DC_DW_T2 x DC_DW_V2) at 128 channels and more, 8 pixels x 1 vector
 * below (the forward's stride-1 choice: each gradient column reaches up to 3 pixels, as an input column does
 * there); rows narrower than a tile take 4 pixels, then 1. */
static void dc_dw_dx2_row(const float* const* g, const float* const* wr, int nr, float* dx, int wd, int c, int pl,
                          int ow) {
    if (c >= 128 && wd >= DC_DW_T2) dc_dw_dx2_tiles(g, wr, nr, dx, wd, c, pl, ow, DC_DW_T2, DC_DW_V2);
    else if (c < 128 && wd >= DC_DW_T1N) dc_dw_dx2_tiles(g, wr, nr, dx, wd, c, pl, ow, DC_DW_T1N, DC_DW_V1N);
    else if (wd >= 4) dc_dw_dx2_tiles(g, wr, nr, dx, wd, c, pl, ow, 4, 1);
    else dc_dw_dx2_tiles(g, wr, nr, dx, wd, c, pl, ow, 1, 1);
}
#endif

/* Input row iy of one sample's input gradient dx (wd, c): for each tap (i, j) in row-major order whose kernel row
 * reads input row iy, each output of dy (oh, ow, c) reading the row through tap j adds its gradient times the tap's
 * weights into the input pixel it read (a scatter within the row: each row is one task's own). Each element's sum
 * runs over its taps in row-major order from zero. (A gather over each input pixel's taps tested every tap for
 * divisibility by the stride, per pixel and vector: 10x the forward at stride 2. 3-wide kernels at stride 2 take
 * dc_dw_dx2_row, whose tiles fix each pixel's parity, so that no tap is tested.) */
static void dc_dw_dx_row(const float* dy, const float* w, float* dx, int wd, int c, int kh, int kw, int sh, int sw,
                         int dh, int dw, int pt, int pl, int oh, int ow, int iy) {
#if DC_HAVE_SIMD
    if (kw == 3 && dw == 1 && sw == 2 && kh <= 16) { /* MobileNets' strided 3x3: gathered in register tiles */
        const float* g[16];
        const float* wr[16];
        int nr = 0;
        for (int i = 0; i < kh; ++i) {
            const int ny = iy + pt - i * dh;
            if (ny < 0 || ny % sh || ny / sh >= oh) continue;
            g[nr] = dy + (size_t)(ny / sh) * ow * c;
            wr[nr++] = w + (size_t)i * 3 * c;
        }
        dc_dw_dx2_row(g, wr, nr, dx, wd, c, pl, ow);
        return;
    }
#endif
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

/* The weight gradient of up to 3 kernel rows (R, from row i0) of a 3-wide kernel at dilation 1 and stride S, for the
 * channels c0 .. of one vector, along a whole output row: all 3R taps (and the bias, when db is not NULL) summed in
 * registers at once, one chain each. One tap a chain per kernel row (dc_dw_dw3) left 3 chains of 4-cycle FMAs: the
 * loop ran at the FMA's latency, not its throughput; 9 or 10 chains keep both pipes busy. Two outputs a step, each
 * input column loaded once for both (at stride 1, 4 columns for 6 taps a row). Each tap's sum still runs over the
 * outputs in order (the borders, where some taps leave the row, before and after): the bits of dc_dw_dw3. */
static inline __attribute__((always_inline)) void dc_dw_dw9(
        const float* x, const float* dy, float* dwp, float* db, int wd, int c, int dh, int iy0, int i0, int pl,
        int ob, int oe, int first, int last, int c0, vmask_t m, const int R, const int S, const int full) {
    const ptrdiff_t cs = c, rs = (ptrdiff_t)dh * wd * c;
    const float* xr = x + (ptrdiff_t)(iy0 + i0 * dh) * wd * cs + c0; /* kernel row i0, input column 0 */
    float* t = dwp + (ptrdiff_t)i0 * 3 * cs + c0;
    vf_t a[3][3], ab = V_ZERO;
    DC_DW_UNROLL for (int r = 0; r < R; ++r)
        DC_DW_UNROLL for (int j = 0; j < 3; ++j) a[r][j] = DC_DW_LD(full, m, t + (r * 3 + j) * cs);
    if (db) ab = DC_DW_LD(full, m, db + c0);
    /* the border outputs: each tap tested against the row */
#define DC_DW9_EDGE(o)                                                                      \
    do {                                                                                    \
        const vf_t g = DC_DW_LD(full, m, dy + (ptrdiff_t)(o) * cs + c0);                    \
        if (db) ab = V_ADD(ab, g);                                                          \
        DC_DW_UNROLL for (int j = 0; j < 3; ++j) {                                          \
            const int col = (o) * S - pl + j;                                               \
            if (col < 0 || col >= wd) continue;                                             \
            DC_DW_UNROLL for (int r = 0; r < R; ++r)                                        \
                a[r][j] = V_FMA(DC_DW_LD(full, m, xr + r * rs + col * cs), g, a[r][j]);     \
        }                                                                                   \
    } while (0)
    /* outputs ob .. oe - 1: the border ones before first, those from last on */
    if (first > oe) first = oe;
    if (first < ob) first = ob;
    if (last > oe) last = oe;
    if (last < first) last = first;
    for (int o = ob; o < first; ++o) DC_DW9_EDGE(o);
    const float* xp = xr + (ptrdiff_t)(first * S - pl) * cs;
    const float* gp = dy + (ptrdiff_t)first * cs + c0;
    int o = first;
    for (; o + 2 <= last; o += 2, xp += 2 * S * cs, gp += 2 * cs) {
        const vf_t g0 = DC_DW_LD(full, m, gp), g1 = DC_DW_LD(full, m, gp + cs);
        if (db) { ab = V_ADD(ab, g0); ab = V_ADD(ab, g1); }
        /* column k is tap k of output o and tap k - S of output o + 1: each tap sees o before o + 1 */
        DC_DW_UNROLL for (int k = 0; k < S + 3; ++k)
            DC_DW_UNROLL for (int r = 0; r < R; ++r) {
                const vf_t u = DC_DW_LD(full, m, xp + r * rs + k * cs);
                if (k < 3) a[r][k] = V_FMA(u, g0, a[r][k]);
                if (k >= S && k - S < 3) a[r][k - S] = V_FMA(u, g1, a[r][k - S]);
            }
    }
    for (; o < last; ++o, xp += S * cs, gp += cs) {
        const vf_t g0 = DC_DW_LD(full, m, gp);
        if (db) ab = V_ADD(ab, g0);
        DC_DW_UNROLL for (int k = 0; k < 3; ++k)
            DC_DW_UNROLL for (int r = 0; r < R; ++r)
                a[r][k] = V_FMA(DC_DW_LD(full, m, xp + r * rs + k * cs), g0, a[r][k]);
    }
    for (o = last; o < oe; ++o) DC_DW9_EDGE(o);
#undef DC_DW9_EDGE
    DC_DW_UNROLL for (int r = 0; r < R; ++r)
        DC_DW_UNROLL for (int j = 0; j < 3; ++j) dc_dw_put(t + (r * 3 + j) * cs, a[r][j], m, full);
    if (db) dc_dw_put(db + c0, ab, m, full);
}

/* dc_dw_dw9 over the channels (full vectors, then the tail) for R kernel rows, blk outputs at a time. */
static inline __attribute__((always_inline)) void dc_dw_dw9_rows(
        const float* x, const float* dy, float* dwp, float* db, int wd, int c, int dh, int iy0, int i0, int pl,
        int ow, int blk, int first, int last, const char** pf, const char* pfe, size_t per, const char** pg,
        const char* pge, size_t perg, const int R, const int S) {
    const int cf = c - c % V_LANES;
    const vmask_t tail = V_MASK(c - cf);
    for (int ob = 0; ob < ow; ob += blk) {
        const int oe = ob + blk < ow ? ob + blk : ow;
        for (int c0 = 0; c0 < c; c0 += V_LANES) {
            for (const char* e = *pf + per; *pf < e && *pf < pfe; *pf += 64) __builtin_prefetch(*pf, 0, 3);
            for (const char* e = *pg + perg; *pg < e && *pg < pge; *pg += 64) __builtin_prefetch(*pg, 0, 3);
            if (c0 < cf) dc_dw_dw9(x, dy, dwp, db, wd, c, dh, iy0, i0, pl, ob, oe, first, last, c0, tail, R, S, 1);
            else dc_dw_dw9(x, dy, dwp, db, wd, c, dh, iy0, i0, pl, ob, oe, first, last, c0, tail, R, S, 0);
        }
    }
}

/* A 3-wide kernel's weight (and bias) gradient of one output row at stride S (1 or 2), dilation 1 along the row: the
 * kernel rows i0 .. i1 - 1 three at a time (each tap its own chain, so the grouping leaves the bits), the bias with
 * the first group. Between channel vectors, the input rows the next output row adds and its gradient row are
 * prefetched a slice at a time (as the forward does), the caller's rows being consecutive. At stride 2 and 64
 * channels and more the row goes 4 outputs at a time, all channels each (the sums reloaded from memory between
 * blocks, still in output order): along a whole row one vector a pass, the 3 input rows' lines, read a half at a time,
 * were gone when the next vector came for the other half (Zen 3, batch 64, one thread, 32x32x64 -> 16x16x64: 1.45 ms
 * -> 1.10; at stride 1 the blocks were no faster). */
static inline __attribute__((always_inline)) void dc_dw_dw9_row(
        const float* x, const float* dy, float* dwp, float* db, int wd, int c, int dh, int iy0, int i0, int i1,
        int pl, int ow, int pfrow, const int S) {
    /* the outputs first .. last - 1 have their three taps inside the row */
    int first = (pl + S - 1) / S, last = wd - 3 + pl < 0 ? 0 : (wd - 3 + pl) / S + 1;
    if (first > ow) first = ow;
    if (last > ow) last = ow;
    if (last < first) last = first;
    const int blk = S == 2 && c >= 64 ? 4 : ow;
    const size_t rowb = (size_t)wd * c * sizeof(float), steps = (size_t)(c + V_LANES - 1) / V_LANES;
    const char* pf = (const char*)x + (ptrdiff_t)pfrow * (ptrdiff_t)rowb;
    const char* const pfe = pf + S * rowb;
    const size_t parts = steps * (size_t)((i1 - i0 + 2) / 3) * (size_t)((ow + blk - 1) / blk);
    const size_t per = dc_dw_pf_slice(S * rowb, parts);
    const size_t growb = (size_t)ow * c * sizeof(float);
    const char* pg = (const char*)dy + growb; /* the next output row's gradient */
    const char* const pge = pg + growb;
    const size_t perg = dc_dw_pf_slice(growb, parts);
    for (int i = i0; i < i1; i += 3, db = NULL) {
        const int R = i1 - i < 3 ? i1 - i : 3;
#define DC_DW9_GO(R) dc_dw_dw9_rows(x, dy, dwp, db, wd, c, dh, iy0, i, pl, ow, blk, first, last, &pf, pfe, per, &pg, \
                                    pge, perg, R, S)
        if (R == 3) DC_DW9_GO(3);
        else if (R == 2) DC_DW9_GO(2);
        else DC_DW9_GO(1);
#undef DC_DW9_GO
    }
}
#endif

/* gm (n) = g where ro > 0, else 0 (a NaN in ro passes nothing), the next n of g and ro prefetched (the caller's
 * rows are contiguous). */
static inline void dc_dw_mask_row(const float* g, const float* ro, float* gm, size_t n) {
    size_t k = 0;
#if DC_HAVE_SIMD
    for (; k + V_LANES <= n; k += V_LANES) {
        if (k % 16 == 0) {
            __builtin_prefetch(g + n + k, 0, 3);
            __builtin_prefetch(ro + n + k, 0, 3);
        }
        V_STOREU(gm + k, V_SELECT(V_GT(V_LOADU(ro + k), V_ZERO), V_ZERO, V_LOADU(g + k)));
    }
#endif
    for (; k < n; ++k) gm[k] = ro[k] > 0.0f ? g[k] : 0.0f;
}

/* Output row oy of one sample added into the partial weight gradient dwp (kh, kw, c) and, when dbp is not NULL,
 * bias gradient dbp (c): each tap's channel vector summed along the row in registers. dy, ro: the row (ow, c).
 * With ro and gm, the masked gradient row is written to gm first and read from there (the input gradient reads gm
 * next): a masking pass of its own read dy and ro and wrote gm, then the weight gradient read gm back from memory
 * (Zen 3, batch 64, one thread, 32x32x32: 1.0 + 1.2 ms -> 2.0 together); here gm is read while in cache. */
static void dc_dw_dw_row(const float* x, const float* dy, const float* ro, float* gm, float* dwp, float* dbp,
                         int h, int wd, int c, int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow) {
    int i0, i1;
    dc_dw_span(iy0, kh, dh, h, &i0, &i1);
    if (ro && gm) {
        dc_dw_mask_row(dy, ro, gm, (size_t)ow * c);
        dy = gm;
        ro = NULL;
    }
#if DC_HAVE_SIMD
    if (kw == 3 && dw == 1 && !ro && (sw == 1 || sw == 2) && i0 < i1) { /* MobileNets' 3x3: every tap at once */
        const int pfrow = iy0 + (kh - 1) * dh + 1; /* the next output row reads rows from pfrow on anew */
        if (sw == 1) dc_dw_dw9_row(x, dy, dwp, dbp, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, 1);
        else dc_dw_dw9_row(x, dy, dwp, dbp, wd, c, dh, iy0, i0, i1, pl, ow, pfrow, 2);
        return;
    }
    if (kw == 3 && !ro) { /* other 3-wide kernels: three taps a pass */
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
