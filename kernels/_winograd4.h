/* Winograd F(4x4, 3x3) convolution for AVX-512 and AVX2 + FMA, NHWC float32: 3x3 kernels at stride 1 (any
 * padding): the Cython forward of the layers of geometry.winograd4_pays, and training's input gradient of the
 * layers whose flipped kernel is one of them (dc_wino4_dx_rows).
 *
 * Why: F(2x2, 3x3) (_winograd.h) does 16 products per 4 outputs and channel pair; F(4x4, 3x3) does 36 per 16, 1.78x
 * fewer multiply-adds again (4x fewer than the direct sum), and its transforms cost about the same per output. Its
 * scratch per output is 1.78x smaller too. The price is rounding: the transforms' coefficients (1/4, 1/6, 1/24, 2, 4,
 * 5, 8) are not all exact in binary and the sums are longer, so results differ from the direct sum by a few times
 * F(2x2)'s rounding (measured in geometry.winograd4_pays's docstring). The weight gradient and training's pooled
 * forward keep F(2x2).
 *
 * Transforms (Lavin & Gray, 2016, points 0, +-1, +-2): Y = A^T [(G g G^T) . (B^T d B)] A with
 *   B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
 *          [0, 4, 0, -5, 0, 1]],
 *   G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]],
 *   A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]].
 *
 * Layout: U[e][ci][co], V[e][t][ci] and M[e][t][co] with e = 6 * xi + nu the 36 points. A tile's products and
 * transforms depend on that tile only (dc_gemm's row sums do not depend on the rows beside them), so results never
 * depend on the batch, on how tiles are grouped into tasks, or on the thread count; every operation is one of
 * _simd.h's, in the same order on both targets, so AVX-512 and AVX2 give the same bits.
 */
#ifndef DROPCORE_WINOGRAD4_H
#define DROPCORE_WINOGRAD4_H

#include "_gemm.h"
#include "_simd.h"

#if DC_HAVE_FAST_GEMM

/* o = B^T d for the 6 vectors d (a column or a row of the block): 4 d0 - 5 d2 + d4, then the pairs that share
 * their terms, then 4 d1 - 5 d3 + d5. */
static inline void dc_wino4_bt(const vf_t d[6], vf_t o[6]) {
    const vf_t four = V_SET1(4.0f), mfour = V_SET1(-4.0f), mfive = V_SET1(-5.0f), two = V_SET1(2.0f);
    o[0] = V_FMA(four, d[0], V_FMA(mfive, d[2], d[4]));
    const vf_t a = V_FMA(mfour, d[2], d[4]), b = V_FMA(mfour, d[1], d[3]);
    o[1] = V_ADD(a, b);
    o[2] = V_SUB(a, b);
    const vf_t c = V_SUB(d[4], d[2]), e = V_SUB(d[3], d[1]);
    o[3] = V_FMA(two, e, c);
    o[4] = V_FMA(V_SET1(-2.0f), e, c);
    o[5] = V_FMA(four, d[1], V_FMA(mfive, d[3], d[5]));
}

/* o = A^T m for the 6 vectors m: with p = m1 + m2, q = m1 - m2, r = m3 + m4, s = m3 - m4, o = (m0 + p + r,
 * q + 2 s, p + 4 r, q + 8 s + m5). */
static inline void dc_wino4_at(const vf_t m[6], vf_t o[4]) {
    const vf_t p = V_ADD(m[1], m[2]), q = V_SUB(m[1], m[2]), r = V_ADD(m[3], m[4]), s = V_SUB(m[3], m[4]);
    o[0] = V_ADD(V_ADD(m[0], p), r);
    o[1] = V_FMA(V_SET1(2.0f), s, q);
    o[2] = V_FMA(V_SET1(4.0f), r, p);
    o[3] = V_ADD(V_FMA(V_SET1(8.0f), s, q), m[5]);
}

/* o = G g for the 3 vectors g. */
static inline void dc_wino4_g(const vf_t g[3], vf_t o[6]) {
    const vf_t sixth = V_SET1(1.0f / 6.0f), twelfth = V_SET1(1.0f / 12.0f), t24 = V_SET1(1.0f / 24.0f);
    const vf_t even = V_ADD(g[0], g[2]);
    o[0] = V_MUL(V_SET1(0.25f), g[0]);
    o[1] = V_MUL(V_SET1(-1.0f / 6.0f), V_ADD(even, g[1]));
    o[2] = V_MUL(V_SET1(-1.0f / 6.0f), V_SUB(even, g[1]));
    const vf_t outer = V_FMA(t24, g[0], V_MUL(sixth, g[2]));
    o[3] = V_FMA(twelfth, g[1], outer);
    o[4] = V_FMA(V_SET1(-1.0f / 12.0f), g[1], outer);
    o[5] = g[2];
}

/* U[e] (cin x cout, planes cin * cout apart) = G g G^T for each kernel g = w[:, :, ci, co] of w (3 x 3 x cin x
 * cout). */
static inline void dc_wino4_weights(const float* w, int cin, int cout, float* u) {
    const long plane = (long)cin * cout;
    for (int ci = 0; ci < cin; ++ci)
        for (int co = 0; co < cout; co += V_LANES) {
            const int full = cout - co >= V_LANES;
            const vmask_t m = V_MASK(cout - co);
            vf_t t[6][3];
            for (int j = 0; j < 3; ++j) { /* column j of t = G g */
                vf_t g[3], o[6];
                for (int i = 0; i < 3; ++i) {
                    const float* p = w + ((long)(i * 3 + j) * cin + ci) * cout + co;
                    g[i] = full ? V_LOADU(p) : V_LOAD(m, p);
                }
                dc_wino4_g(g, o);
                for (int i = 0; i < 6; ++i) t[i][j] = o[i];
            }
            for (int i = 0; i < 6; ++i) { /* row i of U = t G^T */
                vf_t o[6];
                dc_wino4_g(t[i], o);
                float* ui = u + (long)(6 * i) * plane + (long)ci * cout + co;
                for (int j = 0; j < 6; ++j) {
                    if (full) V_STOREU(ui + j * plane, o[j]);
                    else V_STORE(ui + j * plane, m, o[j]);
                }
            }
        }
}

/* V = B^T d B of the 6x6 block d at (iy0, ix0) of sample ni, channels ci .. (mask m unless `full`; zero outside the
 * input when `checked`), into vr (plane e at vr + e * vplane). Columns first into a block on the stack, then rows:
 * the 36 vectors at once would spill AVX2's 16 registers anyway. */
static inline void dc_wino4_input_block(const float* x, int h, int wd, int cin, long ni, int iy0, int ix0, int ci,
                                        int checked, vmask_t m, int full, float* vr, long vplane) {
    vf_t s[6][6]; /* s[r][c] = (B^T d)[r][c] */
    for (int c = 0; c < 6; ++c) {
        vf_t d[6], o[6];
        const int ix = ix0 + c;
        for (int r = 0; r < 6; ++r) {
            const int iy = iy0 + r;
            if (checked && (iy < 0 || iy >= h || ix < 0 || ix >= wd)) {
                d[r] = V_ZERO;
                continue;
            }
            const float* p = x + (((ni * h + iy) * wd) + ix) * cin + ci;
            d[r] = full ? V_LOADU(p) : V_LOAD(m, p);
        }
        dc_wino4_bt(d, o);
        for (int r = 0; r < 6; ++r) s[r][c] = o[r];
    }
    for (int r = 0; r < 6; ++r) {
        vf_t o[6];
        dc_wino4_bt(s[r], o);
        float* p = vr + (long)(6 * r) * vplane;
        for (int c = 0; c < 6; ++c) {
            if (full) V_STOREU(p + c * vplane, o[c]);
            else V_STORE(p + c * vplane, m, o[c]);
        }
    }
}

/* The 4x4 outputs of tile t from M (A^T M A), bias and ReLU applied, channels co .. co + V_LANES (mask m). */
static inline void dc_wino4_tile_out(const float* mm, long mplane, long t, int cout, int co, vmask_t m,
                                     const float* bias, int relu, vf_t y[4][4]) {
    const int full = cout - co >= V_LANES;
    const float* base = mm + t * cout + co;
    vf_t r[4][6]; /* r = A^T M, column by column */
    for (int c = 0; c < 6; ++c) {
        vf_t q[6], o[4];
        for (int k = 0; k < 6; ++k) {
            const float* p = base + (6 * k + c) * mplane;
            q[k] = full ? V_LOADU(p) : V_LOAD(m, p);
        }
        dc_wino4_at(q, o);
        for (int i = 0; i < 4; ++i) r[i][c] = o[i];
    }
    const vf_t b = bias ? V_LOAD(m, bias + co) : V_ZERO;
    for (int i = 0; i < 4; ++i) {
        dc_wino4_at(r[i], y[i]);
        for (int j = 0; j < 4; ++j) {
            if (bias) y[i][j] = V_ADD(y[i][j], b);
            if (relu) y[i][j] = V_SELECT(V_LT0(y[i][j]), y[i][j], V_ZERO); /* x < 0 -> 0; a NaN passes */
        }
    }
}

/* Scratch floats dc_wino4_rows needs for `tiles` tiles: their V (cin) and M (cout), 36 planes each. */
static inline long dc_wino4_scratch(long tiles, int cin, int cout) { return 36 * tiles * (long)(cin + cout); }

/* Global tile rows g0 .. g1 (tile row g: sample g / th, tile row g % th, th tile rows a sample, tw tiles a row) of a
 * 3x3, stride-1 convolution (output oh x ow, padding pt, pl): into y (the whole batch's n x oh x ow x cout output)
 * or, with `pool`, the 2x2 max pooling of it (y: n x (oh / 2) x (ow / 2) x cout; each tile holds four windows; a
 * NaN in a window reaches it). `u`: dc_wino4_weights; `scratch`: dc_wino4_scratch((g1 - g0) * tw) floats. */
static inline void dc_wino4_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias,
                                 int pt, int pl, int oh, int ow, int th, long g0, long g1, float* y, int pool,
                                 int relu, float* scratch) {
    const int tw = (ow + 3) / 4;
    const long tiles = (g1 - g0) * tw;
    float* v = scratch;
    float* mm = scratch + 36 * tiles * cin;
    const long vplane = tiles * cin, mplane = tiles * cout;
    long t = 0;
    for (long g = g0; g < g1; ++g) {
        const long ni = g / th;
        const int ty = (int)(g % th);
        for (int tx = 0; tx < tw; ++tx, ++t) {
            const int iy0 = 4 * ty - pt, ix0 = 4 * tx - pl;
            const int inside = iy0 >= 0 && iy0 + 6 <= h && ix0 >= 0 && ix0 + 6 <= wd;
            for (int ci = 0; ci < cin; ci += V_LANES) {
                const int full = cin - ci >= V_LANES;
                const vmask_t m = V_MASK(cin - ci);
                if (inside && full) /* the common case, its checks folded away */
                    dc_wino4_input_block(x, h, wd, cin, ni, iy0, ix0, ci, 0, m, 1, v + t * cin + ci, vplane);
                else
                    dc_wino4_input_block(x, h, wd, cin, ni, iy0, ix0, ci, 1, m, full, v + t * cin + ci, vplane);
            }
        }
    }
    for (int e = 0; e < 36; ++e)
        dc_gemm((int)tiles, cout, cin, v + e * vplane, cin, 1, u + (long)e * cin * cout, cout, mm + e * mplane, cout,
                0);
    const int ph = oh / 2, pw = ow / 2;
    t = 0;
    for (long g = g0; g < g1; ++g) {
        const long ni = g / th;
        const int ty = (int)(g % th);
        for (int tx = 0; tx < tw; ++tx, ++t)
            for (int co = 0; co < cout; co += V_LANES) {
                const vmask_t m = V_MASK(cout - co);
                vf_t q[4][4];
                dc_wino4_tile_out(mm, mplane, t, cout, co, m, bias, relu, q);
                if (!pool) {
                    float* ys = y + ni * oh * (long)ow * cout;
                    for (int i = 0; i < 4; ++i)
                        for (int j = 0; j < 4; ++j) {
                            const int oy = 4 * ty + i, ox = 4 * tx + j;
                            if (oy < oh && ox < ow) V_STORE(ys + ((long)oy * ow + ox) * cout + co, m, q[i][j]);
                        }
                    continue;
                }
                float* ys = y + ni * ph * (long)pw * cout;
                for (int a = 0; a < 2; ++a)
                    for (int b = 0; b < 2; ++b) {
                        const int py = 2 * ty + a, px = 2 * tx + b;
                        if (py >= ph || px >= pw) continue; /* a last odd row or column: no window */
                        /* the window's first maximum, row-major (a later tap wins only when greater, as
                         * max_pool2d: -0 before +0 stays -0); a NaN in it reaches the output */
                        vf_t best = q[2 * a][2 * b];
                        vmask_t nan = V_NAN(best);
                        for (int k = 1; k < 4; ++k) {
                            const vf_t w = q[2 * a + k / 2][2 * b + k % 2];
                            nan = V_OR(nan, V_NAN(w));
                            best = V_SELECT(V_GT(w, best), best, w);
                        }
                        best = V_SELECT(nan, best, V_SET1(__builtin_nanf("")));
                        V_STORE(ys + ((long)py * pw + px) * cout + co, m, best);
                    }
            }
    }
}

/* Training's input gradient of a 3x3 stride-1 convolution (padding pt, pl; input h x wd x c, output oh x ow x cout)
 * for one sample: the full 3x3 convolution of its output gradient `dy` with the kernel turned 180 degrees and its
 * channels swapped (`u`: its dc_wino4_weights, 36 x cout x c), padded by 2 - pt, 2 - pl; tile rows ty0 .. ty1 of
 * `dx` (every pixel of them written). `scratch`: dc_wino4_scratch((ty1 - ty0) * ((wd + 3) / 4), cout, c) floats.
 * The Cython and the Numba backward both call it (the Numba kernels through a symbol): the same bits. */
static inline void dc_wino4_dx_rows(const float* dy, int oh, int ow, int cout, const float* u, int c, int pt, int pl,
                                    int h, int wd, int ty0, int ty1, float* dx, float* scratch) {
    dc_wino4_rows(dy, oh, ow, cout, u, c, 0, 2 - pt, 2 - pl, h, wd, (h + 3) / 4, ty0, ty1, dx, 0, 0, scratch);
}

#else
/* Never called without AVX-512 or AVX2 (callers check DC_HAVE_FAST_GEMM); defined so that the extension links. */
static inline void dc_wino4_dx_rows(const float* dy, int oh, int ow, int cout, const float* u, int c, int pt, int pl,
                                    int h, int wd, int ty0, int ty1, float* dx, float* scratch) {
    (void)dy; (void)oh; (void)ow; (void)cout; (void)u; (void)c; (void)pt; (void)pl; (void)h; (void)wd; (void)ty0;
    (void)ty1; (void)dx; (void)scratch;
}
static inline void dc_wino4_weights(const float* w, int cin, int cout, float* u) {
    (void)w; (void)cin; (void)cout; (void)u;
}
static inline long dc_wino4_scratch(long tiles, int cin, int cout) { return 36 * tiles * (long)(cin + cout); }
static inline void dc_wino4_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias,
                                 int pt, int pl, int oh, int ow, int th, long g0, long g1, float* y, int pool,
                                 int relu, float* scratch) {
    (void)x; (void)h; (void)wd; (void)cin; (void)u; (void)cout; (void)bias; (void)pt; (void)pl; (void)oh; (void)ow;
    (void)th; (void)g0; (void)g1; (void)y; (void)pool; (void)relu; (void)scratch;
}
#endif

#endif
