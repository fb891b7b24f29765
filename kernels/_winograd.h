/* Winograd F(2x2, 3x3) convolution for AVX-512 and AVX2 + FMA, NHWC float32: 3x3 kernels at stride 1 (any
 * padding).
 *
 * Why: at batch 1, mnist_cnn's second convolution (32 -> 64 channels, 21 MFLOP) is half of a prediction and ran
 * near the multiply-add peak of the cores; no schedule of the direct products goes faster. Winograd's minimal
 * filtering (Lavin & Gray, 2016) computes each 2x2 block of outputs from a 4x4 block of inputs with 16 products
 * per channel pair instead of 36: the layer becomes 16 GEMMs of (tiles x cin) by (cin x cout), 2.25x fewer
 * multiply-adds, plus transforms that are additions over whole vectors of channels. The transforms' coefficients
 * are 0, +-1 and 1/2 (exact in binary); the result differs from the direct sum by rounding only (a few ulps).
 *
 * A 2x2 block of outputs is a window of a 2x2 max pooling (strides 2): the pooled variant writes one pooled pixel
 * per tile and never the convolution's output.
 *
 * Layout: U[e][ci][co] and V[e][t][ci], M[e][t][co] with e = 4 * xi + nu the 16 points of the transform; each
 * tile's products and transforms depend on that tile only, so results never depend on the batch, on how tiles are
 * split into tasks, or on the thread count.
 */
#ifndef DROPCORE_WINOGRAD_H
#define DROPCORE_WINOGRAD_H

#include "_gemm.h"
#include "_simd.h"

/* Written once over the vectors of _simd.h (16 lanes on AVX-512, 8 on AVX2), its 16 products on dc_gemm. */
#define DC_HAVE_WINOGRAD DC_HAVE_FAST_GEMM

#if DC_HAVE_WINOGRAD

/* U[e] (cin x cout, rows `cout` apart, planes `cin * cout` apart) = G g G^T for each kernel g = w[:, :, ci, co]
 * of w (3 x 3 x cin x cout); G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. */
static inline void dc_wino_weights(const float* w, int cin, int cout, float* u) {
    const long plane = (long)cin * cout;
    const vf_t half = V_SET1(0.5f);
    /* Column by column of g (3 vectors live, 12 of t), whole vectors with plain loads and stores (the 9 + 12 vectors
     * at once spilled AVX2's registers), and U's rows 0-1 then 2-3: its planes are cin * cout floats apart (16 KiB
     * for 64 x 64), and 16 streams of stores into one cache set exceed L1's 8 ways. Zen 3, 64 x 64: ~35 -> 24.6 ->
     * 17.4 us, paid on every prediction of a model that trains (its weights change in place, so Model.predict
     * transforms them per call) and on every training step. */
    for (int rows = 0; rows < 4; rows += 2)
    for (int ci = 0; ci < cin; ++ci)
        for (int co = 0; co < cout; co += V_LANES) {
            const int full = cout - co >= V_LANES;
            const vmask_t m = V_MASK(cout - co);
            vf_t t[4][3];
            for (int j = 0; j < 3; ++j) { /* t = G g */
                vf_t g[3];
                for (int i = 0; i < 3; ++i) {
                    const float* p = w + ((long)(i * 3 + j) * cin + ci) * cout + co;
                    g[i] = full ? V_LOADU(p) : V_LOAD(m, p);
                }
                t[0][j] = g[0];
                t[1][j] = V_MUL(half, V_ADD(V_ADD(g[0], g[1]), g[2]));
                t[2][j] = V_MUL(half, V_ADD(V_SUB(g[0], g[1]), g[2]));
                t[3][j] = g[2];
            }
            for (int i = rows; i < rows + 2; ++i) { /* U = t G^T */
                float* ui = u + (long)(4 * i) * plane + (long)ci * cout + co;
                const vf_t u0 = t[i][0], u1 = V_MUL(half, V_ADD(V_ADD(t[i][0], t[i][1]), t[i][2]));
                const vf_t u2 = V_MUL(half, V_ADD(V_SUB(t[i][0], t[i][1]), t[i][2])), u3 = t[i][2];
                if (full) {
                    V_STOREU(ui, u0); V_STOREU(ui + plane, u1);
                    V_STOREU(ui + 2 * plane, u2); V_STOREU(ui + 3 * plane, u3);
                } else {
                    V_STORE(ui, m, u0); V_STORE(ui + plane, m, u1); V_STORE(ui + 2 * plane, m, u2);
                    V_STORE(ui + 3 * plane, m, u3);
                }
            }
        }
}

/* Tap (r, c) of the 4x4 block whose first tap is (iy0, ix0) of sample ni, channels ci ..: zero outside the input
 * (`checked`: the block may leave it), masked by `m` unless `full`. */
static inline vf_t dc_wino_tap(const float* x, int h, int wd, int cin, long ni, int iy0, int ix0, int ci, int r, int c,
                               int checked, vmask_t m, int full) {
    const int iy = iy0 + r, ix = ix0 + c;
    if (checked && (iy < 0 || iy >= h || ix < 0 || ix >= wd)) return V_ZERO;
    const float* p = x + (((ni * h + iy) * wd) + ix) * cin + ci;
    return full ? V_LOADU(p) : V_LOAD(m, p);
}

/* V = B^T d B of the 4x4 block d at (iy0, ix0), channels ci .., into vr (plane e at vr + e * vplane); B^T = [[1, 0,
 * -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]. Row r of s = B^T d, then row r of V = s B: two taps of each
 * column per row, so that a handful of vectors are live (the whole 4x4 block at once spilled AVX2's 16 registers
 * and cost a third of the layer). The additions are those of B^T d then s B, in that order. */
static inline void dc_wino_input_block(const float* x, int h, int wd, int cin, long ni, int iy0, int ix0, int ci,
                                       int checked, vmask_t m, int full, float* vr, long vplane) {
    for (int r = 0; r < 4; ++r) {
        vf_t s[4];
        for (int c = 0; c < 4; ++c) {
#define DC_TAP(row) dc_wino_tap(x, h, wd, cin, ni, iy0, ix0, ci, row, c, checked, m, full)
            switch (r) {
                case 0: s[c] = V_SUB(DC_TAP(0), DC_TAP(2)); break;
                case 1: s[c] = V_ADD(DC_TAP(1), DC_TAP(2)); break;
                case 2: s[c] = V_SUB(DC_TAP(2), DC_TAP(1)); break;
                default: s[c] = V_SUB(DC_TAP(1), DC_TAP(3)); break;
            }
#undef DC_TAP
        }
        float* p = vr + (long)(4 * r) * vplane;
        const vf_t v0 = V_SUB(s[0], s[2]), v1 = V_ADD(s[1], s[2]), v2 = V_SUB(s[2], s[1]), v3 = V_SUB(s[1], s[3]);
        if (full) {
            V_STOREU(p, v0); V_STOREU(p + vplane, v1); V_STOREU(p + 2 * vplane, v2); V_STOREU(p + 3 * vplane, v3);
        } else {
            V_STORE(p, m, v0); V_STORE(p + vplane, m, v1);
            V_STORE(p + 2 * vplane, m, v2); V_STORE(p + 3 * vplane, m, v3);
        }
    }
}

/* V[e][t][ci] = (B^T d B)[e] for the tiles t of tile rows ty0 .. ty1 (tw tiles a row) of sample ni, d the 4x4 input
 * block at (2 ty - pt, 2 tx - pl), zero outside the input. `vplane`: floats between two e planes of V. Blocks inside
 * the input and whole vectors of channels (nearly all of them) take plain loads and stores without bounds checks. */
static inline void dc_wino_input(const float* x, int h, int wd, int cin, int pt, int pl, long ni, int ty0, int ty1,
                                 int tw, float* v, long vplane) {
    long t = 0;
    for (int ty = ty0; ty < ty1; ++ty)
        for (int tx = 0; tx < tw; ++tx, ++t) {
            const int iy0 = 2 * ty - pt, ix0 = 2 * tx - pl;
            const int inside = iy0 >= 0 && iy0 + 4 <= h && ix0 >= 0 && ix0 + 4 <= wd;
            for (int ci = 0; ci < cin; ci += V_LANES) {
                const int full = cin - ci >= V_LANES;
                const vmask_t m = V_MASK(cin - ci);
                if (inside && full) /* the common case, its checks folded away */
                    dc_wino_input_block(x, h, wd, cin, ni, iy0, ix0, ci, 0, m, 1, v + t * cin + ci, vplane);
                else
                    dc_wino_input_block(x, h, wd, cin, ni, iy0, ix0, ci, 1, m, full, v + t * cin + ci, vplane);
            }
        }
}

/* The 2x2 outputs of tile t from M (A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]), bias and ReLU applied, for
 * channels co .. co + V_LANES (mask m). */
static inline void dc_wino_tile_out(const float* mm, long mplane, long t, int cout, int co, vmask_t m,
                                    const float* bias, int relu, vf_t y[2][2]) {
    /* column by column, so that 12 vectors are live rather than 24 (AVX2 has 16 registers) */
    vf_t r[2][4];
    const int full = cout - co >= V_LANES;
    const float* base = mm + t * cout + co;
    for (int c = 0; c < 4; ++c) {
        vf_t q[4];
        for (int k = 0; k < 4; ++k) {
            const float* p = base + (4 * k + c) * mplane;
            q[k] = full ? V_LOADU(p) : V_LOAD(m, p);
        }
        r[0][c] = V_ADD(V_ADD(q[0], q[1]), q[2]);
        r[1][c] = V_SUB(V_SUB(q[1], q[2]), q[3]);
    }
    const vf_t b = bias ? V_LOAD(m, bias + co) : V_ZERO;
    for (int i = 0; i < 2; ++i) {
        y[i][0] = V_ADD(V_ADD(r[i][0], r[i][1]), r[i][2]);
        y[i][1] = V_SUB(V_SUB(r[i][1], r[i][2]), r[i][3]);
        for (int j = 0; j < 2; ++j) {
            if (bias) y[i][j] = V_ADD(y[i][j], b);
            if (relu) y[i][j] = V_SELECT(V_LT0(y[i][j]), y[i][j], V_ZERO); /* x < 0 -> 0; a NaN passes */
        }
    }
}

/* Output tile rows ty0 .. ty1 of sample ni of a 3x3, stride-1 convolution: into y (the sample's oh x ow x cout
 * output) or, with `pool`, the 2x2 max pooling of it (y: the sample's (oh / 2) x (ow / 2) x cout output; a NaN in
 * a window reaches it) and, when `arg` is not NULL (shaped like y), each window's first maximum: its tap 0..3
 * (row-major), 255 where a NaN is in it (training's conv2d_max_pool). `u`: dc_wino_weights; `scratch`:
 * 16 * tiles * (cin + cout) floats for the band's tiles. */
static inline void dc_wino_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias,
                                int pt, int pl, int oh, int ow, long ni, int ty0, int ty1, float* y, int pool,
                                int relu, float* scratch, unsigned char* arg) {
    const int tw = (ow + 1) / 2;
    const long tiles = (long)(ty1 - ty0) * tw;
    float* v = scratch;
    float* mm = scratch + 16 * tiles * cin;
    dc_wino_input(x, h, wd, cin, pt, pl, ni, ty0, ty1, tw, v, tiles * cin);
    for (int e = 0; e < 16; ++e)
        dc_gemm((int)tiles, cout, cin, v + e * tiles * cin, cin, 1, u + (long)e * cin * cout, cout,
               mm + e * tiles * cout, cout, 0);
    const int pw_ = ow / 2, ph_ = oh / 2;
    for (int ty = ty0; ty < ty1; ++ty)
        for (int tx = 0; tx < tw; ++tx) {
            const long t = (long)(ty - ty0) * tw + tx;
            if (pool && (ty >= ph_ || tx >= pw_)) continue; /* a last odd row or column: no window of the pooling */
            for (int co = 0; co < cout; co += V_LANES) {
                const vmask_t m = V_MASK(cout - co);
                vf_t q[2][2];
                dc_wino_tile_out(mm, tiles * cout, t, cout, co, m, bias, relu, q);
                if (pool) {
                    /* the first maximum, row-major (a later tap wins only when greater), as max_pool2d */
                    vmask_t nan = V_NONE;
                    vf_t best = q[0][0];
                    vi_t tap = V_INT(0);
                    for (int k = 0; k < 4; ++k) {
                        const vf_t v = q[k / 2][k % 2];
                        nan = V_OR(nan, V_NAN(v));
                        if (k) {
                            const vmask_t gt = V_GT(v, best);
                            best = V_SELECT(gt, best, v);
                            tap = V_SELECT_INT(gt, tap, V_INT(k));
                        }
                    }
                    best = V_SELECT(nan, best, V_SET1(__builtin_nanf("")));
                    const long at = ((long)ty * pw_ + tx) * cout + co;
                    V_STORE(y + at, m, best);
                    if (arg) V_STORE_BYTES(arg + at, m, V_SELECT_INT(nan, tap, V_INT(255)));
                } else {
                    for (int i = 0; i < 2; ++i)
                        for (int j = 0; j < 2; ++j) {
                            const int oy = 2 * ty + i, ox = 2 * tx + j;
                            if (oy < oh && ox < ow) V_STORE(y + ((long)oy * ow + ox) * cout + co, m, q[i][j]);
                        }
                }
            }
        }
}

/* Q[e][t][co] = (A dY A^T)[e] for the tiles t of tile rows ty0 .. ty1 (tw tiles a row) of one sample's output
 * gradient `dy` (oh x ow x cout), dY the tile's 2x2 block at (2 ty, 2 tx), zero past the output; A = [[1, 0], [1, 1],
 * [1, -1], [0, -1]] (the transpose of the output transform's A^T). `qplane`: floats between two e planes of Q. */
static inline void dc_wino_dy(const float* dy, int oh, int ow, int cout, int ty0, int ty1, int tw, float* q,
                              long qplane) {
    long t = 0;
    for (int ty = ty0; ty < ty1; ++ty)
        for (int tx = 0; tx < tw; ++tx, ++t)
            for (int co = 0; co < cout; co += V_LANES) {
                const vmask_t m = V_MASK(cout - co);
                vf_t g[2][2], r[4][2];
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 2; ++j) {
                        const int oy = 2 * ty + i, ox = 2 * tx + j;
                        g[i][j] = (oy < oh && ox < ow) ? V_LOAD(m, dy + ((long)oy * ow + ox) * cout + co) : V_ZERO;
                    }
                for (int j = 0; j < 2; ++j) { /* r = A dY */
                    r[0][j] = g[0][j];
                    r[1][j] = V_ADD(g[0][j], g[1][j]);
                    r[2][j] = V_SUB(g[0][j], g[1][j]);
                    r[3][j] = V_SUB(V_ZERO, g[1][j]);
                }
                for (int i = 0; i < 4; ++i) { /* Q = r A^T */
                    float* p = q + (long)(4 * i) * qplane + t * cout + co;
                    V_STORE(p, m, r[i][0]);
                    V_STORE(p + qplane, m, V_ADD(r[i][0], r[i][1]));
                    V_STORE(p + 2 * qplane, m, V_SUB(r[i][0], r[i][1]));
                    V_STORE(p + 3 * qplane, m, V_SUB(V_ZERO, r[i][1]));
                }
            }
}

/* The weight gradient of tile rows ty0 .. ty1 of sample ni, in Winograd's domain: dU[e] (cin x cout) += V[e]^T Q[e],
 * V the input's transform (as the forward's) and Q the output gradient's (dc_wino_dy). The kernel's gradient is
 * G^T dU G, once dU is summed over every tile (the caller's). 16 products of (cin x tiles) by (tiles x cout): 2.25x
 * fewer multiply-adds than the weight gradient's im2col product. `x`: the layer's input (h x wd x cin per sample),
 * `dy`: sample ni's output gradient (oh x ow x cout); `scratch`: 16 * tiles * (cin + cout) floats. */
static inline void dc_wino_dw_rows(const float* x, int h, int wd, int cin, const float* dy, int cout, int pt, int pl,
                                   int oh, int ow, long ni, int ty0, int ty1, float* du, float* scratch) {
    const int tw = (ow + 1) / 2;
    const long tiles = (long)(ty1 - ty0) * tw;
    float* v = scratch;
    float* q = scratch + 16 * tiles * cin;
    dc_wino_input(x, h, wd, cin, pt, pl, ni, ty0, ty1, tw, v, tiles * cin);
    dc_wino_dy(dy, oh, ow, cout, ty0, ty1, tw, q, tiles * cout);
    for (int e = 0; e < 16; ++e) /* element (ci, t) of V[e]^T at v[t * cin + ci] */
        dc_gemm(cin, cout, (int)tiles, v + e * tiles * cin, 1, cin, q + e * tiles * cout, cout,
                du + (long)e * cin * cout, cout, 1);
}

#else
/* Never called without AVX-512 or AVX2 (callers check DC_HAVE_WINOGRAD); defined so that the extension links. */
static inline void dc_wino_dw_rows(const float* x, int h, int wd, int cin, const float* dy, int cout, int pt, int pl,
                                   int oh, int ow, long ni, int ty0, int ty1, float* du, float* scratch) {
    (void)x; (void)h; (void)wd; (void)cin; (void)dy; (void)cout; (void)pt; (void)pl; (void)oh; (void)ow; (void)ni;
    (void)ty0; (void)ty1; (void)du; (void)scratch;
}
static inline void dc_wino_weights(const float* w, int cin, int cout, float* u) {
    (void)w; (void)cin; (void)cout; (void)u;
}
static inline void dc_wino_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias,
                                int pt, int pl, int oh, int ow, long ni, int ty0, int ty1, float* y, int pool,
                                int relu, float* scratch, unsigned char* arg) {
    (void)arg;
    (void)x; (void)h; (void)wd; (void)cin; (void)u; (void)cout; (void)bias; (void)pt; (void)pl; (void)oh; (void)ow;
    (void)ni; (void)ty0; (void)ty1; (void)y; (void)pool; (void)relu; (void)scratch;
}
#endif

/* dc_wino_rows with flags for the optional bias and arg (the Numba kernels pass arrays, never NULL). */
static inline void dc_wino_rows_flagged(const float* x, int h, int wd, int cin, const float* u, int cout,
                                        const float* bias, int has_bias, int pt, int pl, int oh, int ow, long ni,
                                        int ty0, int ty1, float* y, int pool, int relu, float* scratch,
                                        unsigned char* arg, int has_arg) {
    dc_wino_rows(x, h, wd, cin, u, cout, has_bias ? bias : 0, pt, pl, oh, ow, ni, ty0, ty1, y, pool, relu, scratch,
                 has_arg ? arg : 0);
}

#endif
