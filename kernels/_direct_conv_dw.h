/* Direct weight (and bias) gradient of a convolution with few input channels, NHWC float32, on the vectors of
 * _simd.h: the backward's twin of _direct_conv.h, with no im2col panel.
 *
 *   dW[i, j, ci, co] += sum over outputs (oy, ox) of x[oy * sh + i - pt, ox * sw + j - pl, ci] * g[oy, ox, co]
 *   db[co]           += sum over outputs of g[oy, ox, co]
 *
 * Why: as a GEMM (an im2col panel of kh*kw*cin taps per output pixel, then panel^T g) LeNet's first layer (1 -> 6
 * channels, 5x5) is a product with 6 output columns that writes and reads a 25-float row per pixel for 6 multiply-
 * adds per float: it ran at 16% of the GEMM's rate, 2.49 ms of a 6.8 ms training step at batch 128. Here a register
 * tile of taps (R kernel rows x MT taps of each, the taps of a kernel row being neighbours in NHWC) x NV vectors of
 * output channels stays in registers over all the output pixels of the call: per pixel, NV vectors of g are loaded,
 * each tap's input value is broadcast from memory, and R * MT * NV multiply-adds follow. The bias gradient rides on
 * the first tile (g is in registers already).
 *
 * Padding: as in the forward, the input rows the outputs read are copied once into zero-padded scratch rows
 * (dc_direct_pad_rows, from the caller's scratch); without padding the rows are read in place.
 *
 * Order: each element's sum over the call's pixels is one chain of FMAs (row by row, pixel by pixel) started from
 * zero, then added to dW (or db). So the bits depend neither on the tile, nor on the target (AVX-512 and AVX2 agree)
 * nor on the threads: only on how the caller cuts the samples and rows into calls.
 *
 * Tiles: AVX-512 keeps up to 28 accumulators on one vector of 16 channels (LeNet's 25 taps x 6 channels in one
 * pass over g) or 24 on two; AVX2, with 16 registers, 12 on one vector of 8 channels (two kernel rows of 5 taps:
 * three passes for LeNet) or 10 on two, next to the g vectors, the bias accumulators and a broadcast.
 */
#ifndef DROPCORE_DIRECT_CONV_DW_H
#define DROPCORE_DIRECT_CONV_DW_H

#include "_direct_conv.h"

#if DC_HAVE_SIMD

/* p[lanes of m] += v. */
static inline void dc_dw_add(float* p, vf_t v, vmask_t m) { V_STORE(p, m, V_ADD(V_LOAD(m, p), v)); }

/* R kernel rows x MT taps x NV vectors of channels: for the `rows` output rows of `ow` pixels of the call,
 * acc[r][t] += x[r * rs + oy * oys + ox * step + t] * g[(oy * ow + ox) * ldg : NV vectors], then dw[r * ldr + t * ldt]
 * += acc[r][t] (and db += the sum of g, when db is not NULL). `x` points at the tile's first tap for the first output
 * pixel; `rs`: floats between kernel rows, `oys` between output rows. The last vector is masked by `tail`
 * (`partial`: it is not full). */
#define DC_DW_TILE(R, MT, NV)                                                                                      \
static void dc_dw_tile_##R##_##MT##_##NV(const float* x, long rs, long step, long oys, int rows, int ow,          \
                                         const float* g, int ldg, float* dw, long ldr, int ldt, float* db,          \
                                         vmask_t tail, int partial) {                                               \
    vf_t acc[R][MT][NV], accb[NV];                                                                                  \
    DC_UNROLL for (int v = 0; v < NV; ++v) {                                                                        \
        accb[v] = V_ZERO;                                                                                           \
        DC_UNROLL for (int r = 0; r < R; ++r) DC_UNROLL for (int t = 0; t < MT; ++t) acc[r][t][v] = V_ZERO;         \
    }                                                                                                               \
    for (int oy = 0; oy < rows; ++oy) {                                                                             \
        const float* xp[R]; /* a pointer per kernel row, each tap at a constant displacement from it */             \
        DC_UNROLL for (int r = 0; r < R; ++r) xp[r] = x + oy * oys + r * rs;                                        \
        const float* gp = g + (long)oy * ow * ldg;                                                                  \
        for (int ox = 0; ox < ow; ++ox, gp += ldg) {                                                                \
            vf_t gv[NV];                                                                                            \
            DC_UNROLL for (int v = 0; v < NV; ++v)                                                                  \
                gv[v] = (v == NV - 1 && partial) ? V_LOAD(tail, gp + V_LANES * v) : V_LOADU(gp + V_LANES * v);      \
            if (db) {                                                                                               \
                DC_UNROLL for (int v = 0; v < NV; ++v) accb[v] = V_ADD(accb[v], gv[v]);                             \
            }                                                                                                       \
            DC_UNROLL for (int r = 0; r < R; ++r)                                                                   \
                DC_UNROLL for (int t = 0; t < MT; ++t) {                                                            \
                    vf_t xv = V_BCAST(xp[r] + t);                                                                   \
                    DC_UNROLL for (int v = 0; v < NV; ++v) acc[r][t][v] = V_FMA(xv, gv[v], acc[r][t][v]);          \
                }                                                                                                   \
            DC_UNROLL for (int r = 0; r < R; ++r) xp[r] += step;                                                    \
        }                                                                                                           \
    }                                                                                                               \
    DC_UNROLL for (int r = 0; r < R; ++r)                                                                           \
        DC_UNROLL for (int t = 0; t < MT; ++t)                                                                      \
            DC_UNROLL for (int v = 0; v < NV; ++v)                                                                  \
                dc_dw_add(dw + r * ldr + (long)t * ldt + V_LANES * v, acc[r][t][v], (v == NV - 1) ? tail : V_FULL); \
    if (db) {                                                                                                       \
        DC_UNROLL for (int v = 0; v < NV; ++v) dc_dw_add(db + V_LANES * v, accb[v], (v == NV - 1) ? tail : V_FULL); \
    }                                                                                                               \
}

#define DC_DW_KEY(R, MT, NV) ((NV) * 100 + (R) * 10 + (MT))
#define DC_DW_DEFINE(R, MT, NV) DC_DW_TILE(R, MT, NV)
#define DC_DW_CASE(R, MT, NV)                                                                                       \
    case DC_DW_KEY(R, MT, NV): dc_dw_tile_##R##_##MT##_##NV(x, rs, step, oys, rows, ow, g, ldg, dw, ldr, ldt, db,    \
                                                            tail, partial); return;

/* The tiles each target has: every (R <= 5 rows, MT <= 8 taps) whose R * MT accumulators per vector fit beside
 * the NV g vectors, the NV bias accumulators and a broadcast (dc_dw_cap), so that every smaller tile a layer's
 * split leaves over is there too. */
#if V_LANES == 16
/* 32 zmm registers: 28 accumulators on one vector, 24 on two. */
static inline int dc_dw_cap(int nv) { return nv == 1 ? 28 : 12; }
#define DC_DW_TILES(X)                                                                                              \
    X(1, 1, 1) X(1, 2, 1) X(1, 3, 1) X(1, 4, 1) X(1, 5, 1) X(1, 6, 1) X(1, 7, 1) X(1, 8, 1) X(2, 1, 1)             \
    X(2, 2, 1) X(2, 3, 1) X(2, 4, 1) X(2, 5, 1) X(2, 6, 1) X(2, 7, 1) X(2, 8, 1) X(3, 1, 1) X(3, 2, 1)             \
    X(3, 3, 1) X(3, 4, 1) X(3, 5, 1) X(3, 6, 1) X(3, 7, 1) X(3, 8, 1) X(4, 1, 1) X(4, 2, 1) X(4, 3, 1)             \
    X(4, 4, 1) X(4, 5, 1) X(4, 6, 1) X(4, 7, 1) X(5, 1, 1) X(5, 2, 1) X(5, 3, 1) X(5, 4, 1) X(5, 5, 1)             \
    X(1, 1, 2) X(1, 2, 2) X(1, 3, 2) X(1, 4, 2) X(1, 5, 2) X(1, 6, 2) X(1, 7, 2) X(1, 8, 2) X(2, 1, 2)             \
    X(2, 2, 2) X(2, 3, 2) X(2, 4, 2) X(2, 5, 2) X(2, 6, 2) X(3, 1, 2) X(3, 2, 2) X(3, 3, 2) X(3, 4, 2)             \
    X(4, 1, 2) X(4, 2, 2) X(4, 3, 2) X(5, 1, 2) X(5, 2, 2)
#else
/* 16 ymm registers: 12 accumulators + g + bias + broadcast on one vector, 10 + 2 + 2 + 1 on two. */
static inline int dc_dw_cap(int nv) { return nv == 1 ? 12 : 5; }
#define DC_DW_TILES(X)                                                                                              \
    X(1, 1, 1) X(1, 2, 1) X(1, 3, 1) X(1, 4, 1) X(1, 5, 1) X(1, 6, 1) X(1, 7, 1) X(1, 8, 1) X(2, 1, 1)             \
    X(2, 2, 1) X(2, 3, 1) X(2, 4, 1) X(2, 5, 1) X(2, 6, 1) X(3, 1, 1) X(3, 2, 1) X(3, 3, 1) X(3, 4, 1)             \
    X(4, 1, 1) X(4, 2, 1) X(4, 3, 1) X(5, 1, 1) X(5, 2, 1) X(1, 1, 2) X(1, 2, 2) X(1, 3, 2) X(1, 4, 2)             \
    X(1, 5, 2) X(2, 1, 2) X(2, 2, 2) X(3, 1, 2) X(4, 1, 2) X(5, 1, 2)
#endif
#define DC_DW_MAX_ROWS 5
#define DC_DW_MAX_TAPS 8
/* Output channels per block: two vectors. */
#define DC_DW_BLOCK (2 * V_LANES)

DC_DW_TILES(DC_DW_DEFINE)

/* One tile of r rows x mt taps on nv vectors (a pair dc_dw_tiles picked, so that it exists). */
static inline void dc_dw_tile(int r, int mt, int nv, const float* x, long rs, long step, long oys, int rows, int ow,
                              const float* g, int ldg, float* dw, long ldr, int ldt, float* db, vmask_t tail,
                              int partial) {
    switch (DC_DW_KEY(r, mt, nv)) { DC_DW_TILES(DC_DW_CASE) default: return; }
}

/* The even split of `n` (taps of a kernel row, or kernel rows) into parts of at most `most`: the part size. */
static inline int dc_dw_even(int n, int most) {
    int parts = (n + most - 1) / most;
    return (n + parts - 1) / parts;
}

/* Output rows oy0 .. oy1 - 1 of sample `ni`: dw += their terms of the weight gradient, db (when not NULL) += of the
 * bias's. x: (n, h, wd, cin); g: the convolution's output gradient of those rows (the first of them, each ow x
 * cout); dw: (kh, kw, cin, cout). `pad`: dc_direct_scratch(oy1 - oy0, ...) floats when some window leaves the input
 * (NULL otherwise: the rows are read in place). */
static void dc_conv_dw_rows(const float* x, int h, int wd, int cin, const float* g, int kh, int kw, int cout, int sh,
                            int sw, int pt, int pl, int ow, long ni, int oy0, int oy1, float* dw, float* db,
                            float* pad) {
    const int span = kw * cin, rows = oy1 - oy0;
    const long step = (long)sw * cin, in_row = (long)wd * cin;
    const float* sample = x + ni * h * in_row;
    const long rs = pad ? dc_direct_padded_width(wd, kw, sw, pl, ow) * cin : in_row;
    const float* base = pad ? pad : sample + (long)oy0 * sh * in_row;
    if (pad) dc_direct_pad_rows(sample, h, wd, cin, kh, sh, pt, pl, oy0, oy1, rs, pad);
    for (int c0 = 0; c0 < cout; c0 += DC_DW_BLOCK) {
        int nb = (cout - c0 < DC_DW_BLOCK) ? cout - c0 : DC_DW_BLOCK;
        int nv = (nb + V_LANES - 1) / V_LANES, last = nb - V_LANES * (nv - 1);
        int cap = dc_dw_cap(nv);
        int mt_even = dc_dw_even(span, cap < DC_DW_MAX_TAPS ? cap : DC_DW_MAX_TAPS);
        int r_most = cap / mt_even < DC_DW_MAX_ROWS ? cap / mt_even : DC_DW_MAX_ROWS;
        int r_even = dc_dw_even(kh, r_most);
        vmask_t tail = V_MASK(last);
        for (int i0 = 0; i0 < kh; i0 += r_even) {
            int r = (kh - i0 < r_even) ? kh - i0 : r_even;
            for (int q0 = 0; q0 < span; q0 += mt_even) {
                int mt = (span - q0 < mt_even) ? span - q0 : mt_even;
                float* b = (db && i0 == 0 && q0 == 0) ? db + c0 : 0;  /* the bias on the first tile only */
                dc_dw_tile(r, mt, nv, base + i0 * rs + q0, rs, step, (long)sh * rs, rows, ow, g + c0, cout,
                           dw + ((long)i0 * span + q0) * cout + c0, (long)span * cout, cout, b, tail,
                           last < V_LANES);
            }
        }
    }
}

#else
/* Never called on the generic target (callers check DC_HAVE_FAST_GEMM); defined so that the extension links. */
static void dc_conv_dw_rows(const float* x, int h, int wd, int cin, const float* g, int kh, int kw, int cout, int sh,
                            int sw, int pt, int pl, int ow, long ni, int oy0, int oy1, float* dw, float* db,
                            float* pad) {
    (void)x; (void)h; (void)wd; (void)cin; (void)g; (void)kh; (void)kw; (void)cout; (void)sh; (void)sw; (void)pt;
    (void)pl; (void)ow; (void)ni; (void)oy0; (void)oy1; (void)dw; (void)db; (void)pad;
}
#endif

/* dc_conv_dw_rows for callers that cannot pass NULL (the Numba kernels): `has_bias` and `padded` say whether `db`
 * and `pad` count. */
static void dc_conv_dw_rows_flagged(const float* x, int h, int wd, int cin, const float* g, int kh, int kw, int cout,
                                    int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1, float* dw,
                                    float* db, float* pad, int has_bias, int padded) {
    dc_conv_dw_rows(x, h, wd, cin, g, kh, kw, cout, sh, sw, pt, pl, ow, ni, oy0, oy1, dw, has_bias ? db : 0,
                    padded ? pad : 0);
}

#endif
