/* Winograd F(2x2, 3x3) convolution for AVX-512, NHWC float32: 3x3 kernels at stride 1 (any padding).
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
#ifndef DROPCORE_AVX512_WINOGRAD_H
#define DROPCORE_AVX512_WINOGRAD_H

#include "_avx512_gemm.h"

#if DC_HAVE_AVX512

/* U[e] (cin x cout, rows `cout` apart, planes `cin * cout` apart) = G g G^T for each kernel g = w[:, :, ci, co]
 * of w (3 x 3 x cin x cout); G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. */
static inline void dc_wino_weights(const float* w, int cin, int cout, float* u) {
    const long plane = (long)cin * cout;
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int ci = 0; ci < cin; ++ci)
        for (int co = 0; co < cout; co += 16) {
            const __mmask16 m = dc_mask(cout - co);
            __m512 g[3][3], t[4][3];
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j) g[i][j] = _mm512_maskz_loadu_ps(m, w + ((long)(i * 3 + j) * cin + ci) * cout + co);
            for (int j = 0; j < 3; ++j) { /* t = G g */
                t[0][j] = g[0][j];
                t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][j], g[1][j]), g[2][j]));
                t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][j], g[1][j]), g[2][j]));
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; ++i) { /* U = t G^T */
                float* ui = u + (long)(4 * i) * plane + (long)ci * cout + co;
                _mm512_mask_storeu_ps(ui, m, t[i][0]);
                _mm512_mask_storeu_ps(ui + plane, m,
                                      _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])));
                _mm512_mask_storeu_ps(ui + 2 * plane, m,
                                      _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])));
                _mm512_mask_storeu_ps(ui + 3 * plane, m, t[i][2]);
            }
        }
}

/* V[e][t][ci] = (B^T d B)[e] for the tiles t of tile rows ty0 .. ty1 (tw tiles a row) of sample ni, d the 4x4 input
 * block at (2 ty - pt, 2 tx - pl), zero outside the input; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
 * [0, 1, 0, -1]]. `vplane`: floats between two e planes of V. */
static inline void dc_wino_input(const float* x, int h, int wd, int cin, int pt, int pl, long ni, int ty0, int ty1,
                                 int tw, float* v, long vplane) {
    const __m512 zero = _mm512_setzero_ps();
    long t = 0;
    for (int ty = ty0; ty < ty1; ++ty)
        for (int tx = 0; tx < tw; ++tx, ++t) {
            const int iy0 = 2 * ty - pt, ix0 = 2 * tx - pl;
            for (int ci = 0; ci < cin; ci += 16) {
                const __mmask16 m = dc_mask(cin - ci);
                __m512 d[4][4], s[4][4];
                for (int r = 0; r < 4; ++r)
                    for (int c = 0; c < 4; ++c) {
                        const int iy = iy0 + r, ix = ix0 + c;
                        d[r][c] = (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                                      ? _mm512_maskz_loadu_ps(m, x + (((ni * h + iy) * wd) + ix) * cin + ci)
                                      : zero;
                    }
                for (int c = 0; c < 4; ++c) { /* s = B^T d */
                    s[0][c] = _mm512_sub_ps(d[0][c], d[2][c]);
                    s[1][c] = _mm512_add_ps(d[1][c], d[2][c]);
                    s[2][c] = _mm512_sub_ps(d[2][c], d[1][c]);
                    s[3][c] = _mm512_sub_ps(d[1][c], d[3][c]);
                }
                for (int r = 0; r < 4; ++r) { /* V = s B */
                    float* vr = v + (long)(4 * r) * vplane + t * cin + ci;
                    _mm512_mask_storeu_ps(vr, m, _mm512_sub_ps(s[r][0], s[r][2]));
                    _mm512_mask_storeu_ps(vr + vplane, m, _mm512_add_ps(s[r][1], s[r][2]));
                    _mm512_mask_storeu_ps(vr + 2 * vplane, m, _mm512_sub_ps(s[r][2], s[r][1]));
                    _mm512_mask_storeu_ps(vr + 3 * vplane, m, _mm512_sub_ps(s[r][1], s[r][3]));
                }
            }
        }
}

/* The 2x2 outputs of tile t from M (A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]), bias and ReLU applied, for
 * channels co .. co + 16 (mask m). */
static inline void dc_wino_tile_out(const float* mm, long mplane, long t, int cout, int co, __mmask16 m,
                                    const float* bias, int relu, __m512 y[2][2]) {
    __m512 q[4][4], r[2][4];
    for (int e = 0; e < 16; ++e) q[e / 4][e % 4] = _mm512_maskz_loadu_ps(m, mm + e * mplane + t * cout + co);
    for (int c = 0; c < 4; ++c) {
        r[0][c] = _mm512_add_ps(_mm512_add_ps(q[0][c], q[1][c]), q[2][c]);
        r[1][c] = _mm512_sub_ps(_mm512_sub_ps(q[1][c], q[2][c]), q[3][c]);
    }
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + co) : _mm512_setzero_ps();
    for (int i = 0; i < 2; ++i) {
        y[i][0] = _mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2]);
        y[i][1] = _mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3]);
        for (int j = 0; j < 2; ++j) {
            if (bias) y[i][j] = _mm512_add_ps(y[i][j], b);
            if (relu) /* x < 0 -> 0; a NaN passes */
                y[i][j] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y[i][j], _mm512_setzero_ps(), _CMP_LT_OQ), y[i][j],
                                               _mm512_setzero_ps());
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
            for (int co = 0; co < cout; co += 16) {
                const __mmask16 m = dc_mask(cout - co);
                __m512 q[2][2];
                dc_wino_tile_out(mm, tiles * cout, t, cout, co, m, bias, relu, q);
                if (pool) {
                    /* the first maximum, row-major (a later tap wins only when greater), as max_pool2d */
                    __mmask16 nan = 0;
                    __m512 best = q[0][0];
                    __m512i tap = _mm512_setzero_si512();
                    for (int k = 0; k < 4; ++k) {
                        const __m512 v = q[k / 2][k % 2];
                        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                        if (k) {
                            const __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                            best = _mm512_mask_blend_ps(gt, best, v);
                            tap = _mm512_mask_blend_epi32(gt, tap, _mm512_set1_epi32(k));
                        }
                    }
                    best = _mm512_mask_blend_ps(nan, best, _mm512_set1_ps(__builtin_nanf("")));
                    const long at = ((long)ty * pw_ + tx) * cout + co;
                    _mm512_mask_storeu_ps(y + at, m, best);
                    if (arg) {
                        tap = _mm512_mask_blend_epi32(nan, tap, _mm512_set1_epi32(255));
                        _mm_mask_storeu_epi8(arg + at, m, _mm512_cvtepi32_epi8(tap));
                    }
                } else {
                    for (int i = 0; i < 2; ++i)
                        for (int j = 0; j < 2; ++j) {
                            const int oy = 2 * ty + i, ox = 2 * tx + j;
                            if (oy < oh && ox < ow) _mm512_mask_storeu_ps(y + ((long)oy * ow + ox) * cout + co, m, q[i][j]);
                        }
                }
            }
        }
}

#else
/* Never called without AVX-512 (callers check DC_HAVE_AVX512); defined so that the extension still links. */
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
