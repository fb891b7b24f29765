/* Direct convolution for layers whose weights fit in L1 (few input channels: 1-channel digits, RGB images, LeNet's
 * 6-channel second layer), NHWC float32, bias and ReLU fused, on the vectors of _simd.h (AVX-512 or AVX2 + FMA).
 *
 * Why: as a GEMM these layers are shallow (depth kw*cin = 3..30 per kernel row) and narrow (cout 6..64), so the
 * GEMM spends its time loading and storing its output tile once per kernel row and packing, not multiplying: they
 * ran at 17-80 GFLOP/s. Here a register tile of MR output pixels x NV vectors of output channels stays in registers
 * for the whole window (all kh kernel rows), each input value is broadcast from memory into its multiply-adds, and
 * the tile is written once, with the bias added and the ReLU applied.
 *
 * Padding: the input rows a task's outputs read are copied once into zero-padded scratch rows (from the caller),
 * so the inner loops never test bounds; without padding the rows are read in place.
 *
 * Each output is the same sum in the same order (bias first, then the taps by kernel row, column, input channel)
 * whatever the tile, the row split, the thread count or the target: AVX-512 and AVX2 give the same bits.
 *
 * Tiles: AVX-512 has 32 registers, so up to 24 accumulators over blocks of 64 channels (4 vectors); AVX2 has 16, so
 * up to 12 over blocks of 16 channels (2 vectors), each beside its NV weight vectors and a broadcast.
 */
#ifndef DROPCORE_DIRECT_CONV_H
#define DROPCORE_DIRECT_CONV_H

#include <string.h>

#include "_simd.h"

#if DC_HAVE_SIMD

/* Which layers run here is decided by the callers (geometry.direct_conv_pays: a 64-column block of the weights in
 * 32 KiB, so that it stays in L1 across the tiles). */

/* MR output pixels x NV vectors of channels: acc += rows[i][px * step + t] * w[i][t][:], t over the kw*cin taps of
 * kernel row i. `rows[i]` points at input row i of the window (already offset to the first pixel's window). The
 * last vector is masked by `tail` (`partial`: it is not full; on AVX2 a masked load costs more than a plain one). */
#define DC_DIRECT_TILE(MR, NV)                                                                                     \
static inline void dc_direct_tile_##MR##_##NV(int kh, int span, const float* const* rows, long step,            \
                                              const float* w, int ldw, const float* bias, float* y, int ldy,     \
                                              vmask_t tail, int partial, int relu) {                            \
    vf_t acc[MR][NV];                                                                                             \
    DC_UNROLL for (int j = 0; j < NV; ++j) {                                                                      \
        vf_t b = bias ? V_LOAD((j == NV - 1) ? tail : V_FULL, bias + V_LANES * j) : V_ZERO;                       \
        DC_UNROLL for (int p = 0; p < MR; ++p) acc[p][j] = b;                                                     \
    }                                                                                                             \
    for (int i = 0; i < kh; ++i) {                                                                                \
        const float* r = rows[i];                                                                                 \
        const float* wi = w + (long)i * span * ldw;                                                               \
        for (int t = 0; t < span; ++t) {                                                                          \
            vf_t wv[NV];                                                                                          \
            DC_UNROLL for (int j = 0; j < NV; ++j)                                                                \
                wv[j] = (j == NV - 1 && partial) ? V_LOAD(tail, wi + (long)t * ldw + V_LANES * j)                 \
                                                 : V_LOADU(wi + (long)t * ldw + V_LANES * j);                     \
            DC_UNROLL for (int p = 0; p < MR; ++p) {                                                              \
                vf_t xv = V_BCAST(r + p * step + t);                                                              \
                DC_UNROLL for (int j = 0; j < NV; ++j) acc[p][j] = V_FMA(xv, wv[j], acc[p][j]);                   \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    DC_UNROLL for (int p = 0; p < MR; ++p)                                                                        \
        DC_UNROLL for (int j = 0; j < NV; ++j) {                                                                  \
            vf_t v = acc[p][j];                                                                                   \
            if (relu) v = V_SELECT(V_LT0(v), v, V_ZERO); /* x < 0 -> 0; a NaN stays */                            \
            V_STORE(y + (long)p * ldy + V_LANES * j, (j == NV - 1) ? tail : V_FULL, v);                           \
        }                                                                                                         \
}

#define DC_DIRECT_ARGS kh, span, rows, step, w, ldw, bias, y, ldy, tail, partial, relu
#define DC_DIRECT_CASE(MR, NV) case MR: dc_direct_tile_##MR##_##NV(DC_DIRECT_ARGS); return;

#if V_LANES == 16
/* Tiles of up to 24 accumulators (with the NV weight vectors and a broadcast: within the 32 zmm registers), every
 * width up to the full one, so a row of ow pixels splits into equal tiles instead of a full tile and a ragged end. */
#define DC_DIRECT_NV 4
DC_DIRECT_TILE(1, 1) DC_DIRECT_TILE(2, 1) DC_DIRECT_TILE(3, 1) DC_DIRECT_TILE(4, 1) DC_DIRECT_TILE(5, 1)
DC_DIRECT_TILE(6, 1) DC_DIRECT_TILE(7, 1) DC_DIRECT_TILE(8, 1) DC_DIRECT_TILE(9, 1) DC_DIRECT_TILE(10, 1)
DC_DIRECT_TILE(11, 1) DC_DIRECT_TILE(12, 1) DC_DIRECT_TILE(13, 1) DC_DIRECT_TILE(14, 1) DC_DIRECT_TILE(15, 1)
DC_DIRECT_TILE(16, 1) DC_DIRECT_TILE(17, 1) DC_DIRECT_TILE(18, 1) DC_DIRECT_TILE(19, 1) DC_DIRECT_TILE(20, 1)
DC_DIRECT_TILE(21, 1) DC_DIRECT_TILE(22, 1) DC_DIRECT_TILE(23, 1) DC_DIRECT_TILE(24, 1)
DC_DIRECT_TILE(1, 2) DC_DIRECT_TILE(2, 2) DC_DIRECT_TILE(3, 2) DC_DIRECT_TILE(4, 2) DC_DIRECT_TILE(5, 2)
DC_DIRECT_TILE(6, 2) DC_DIRECT_TILE(7, 2) DC_DIRECT_TILE(8, 2) DC_DIRECT_TILE(9, 2) DC_DIRECT_TILE(10, 2)
DC_DIRECT_TILE(11, 2) DC_DIRECT_TILE(12, 2)
DC_DIRECT_TILE(1, 3) DC_DIRECT_TILE(2, 3) DC_DIRECT_TILE(3, 3) DC_DIRECT_TILE(4, 3) DC_DIRECT_TILE(5, 3)
DC_DIRECT_TILE(6, 3) DC_DIRECT_TILE(7, 3) DC_DIRECT_TILE(8, 3)
DC_DIRECT_TILE(1, 4) DC_DIRECT_TILE(2, 4) DC_DIRECT_TILE(3, 4) DC_DIRECT_TILE(4, 4) DC_DIRECT_TILE(5, 4)
DC_DIRECT_TILE(6, 4)

/* The largest tile width (pixels) for nv vectors of channels. */
static inline int dc_direct_full_tile(int nv) { return (nv == 1) ? 24 : (nv == 2) ? 12 : (nv == 3) ? 8 : 6; }

/* One tile of mr pixels, 1 <= mr <= dc_direct_full_tile(nv). */
static inline void dc_direct_tile(int mr, int nv, int kh, int span, const float* const* rows, long step,
                                  const float* w, int ldw, const float* bias, float* y, int ldy, vmask_t tail,
                                  int partial, int relu) {
    switch (nv) {
        case 1: switch (mr) {
            DC_DIRECT_CASE(1, 1) DC_DIRECT_CASE(2, 1) DC_DIRECT_CASE(3, 1) DC_DIRECT_CASE(4, 1) DC_DIRECT_CASE(5, 1)
            DC_DIRECT_CASE(6, 1) DC_DIRECT_CASE(7, 1) DC_DIRECT_CASE(8, 1) DC_DIRECT_CASE(9, 1) DC_DIRECT_CASE(10, 1)
            DC_DIRECT_CASE(11, 1) DC_DIRECT_CASE(12, 1) DC_DIRECT_CASE(13, 1) DC_DIRECT_CASE(14, 1)
            DC_DIRECT_CASE(15, 1) DC_DIRECT_CASE(16, 1) DC_DIRECT_CASE(17, 1) DC_DIRECT_CASE(18, 1)
            DC_DIRECT_CASE(19, 1) DC_DIRECT_CASE(20, 1) DC_DIRECT_CASE(21, 1) DC_DIRECT_CASE(22, 1)
            DC_DIRECT_CASE(23, 1) DC_DIRECT_CASE(24, 1) } return;
        case 2: switch (mr) {
            DC_DIRECT_CASE(1, 2) DC_DIRECT_CASE(2, 2) DC_DIRECT_CASE(3, 2) DC_DIRECT_CASE(4, 2) DC_DIRECT_CASE(5, 2)
            DC_DIRECT_CASE(6, 2) DC_DIRECT_CASE(7, 2) DC_DIRECT_CASE(8, 2) DC_DIRECT_CASE(9, 2) DC_DIRECT_CASE(10, 2)
            DC_DIRECT_CASE(11, 2) DC_DIRECT_CASE(12, 2) } return;
        case 3: switch (mr) {
            DC_DIRECT_CASE(1, 3) DC_DIRECT_CASE(2, 3) DC_DIRECT_CASE(3, 3) DC_DIRECT_CASE(4, 3) DC_DIRECT_CASE(5, 3)
            DC_DIRECT_CASE(6, 3) DC_DIRECT_CASE(7, 3) DC_DIRECT_CASE(8, 3) } return;
        default: switch (mr) {
            DC_DIRECT_CASE(1, 4) DC_DIRECT_CASE(2, 4) DC_DIRECT_CASE(3, 4) DC_DIRECT_CASE(4, 4) DC_DIRECT_CASE(5, 4)
            DC_DIRECT_CASE(6, 4) } return;
    }
}
#else
/* AVX2: tiles of up to 12 accumulators (with 2 weight vectors and a broadcast: 15 of the 16 ymm registers). */
#define DC_DIRECT_NV 2
DC_DIRECT_TILE(1, 1) DC_DIRECT_TILE(2, 1) DC_DIRECT_TILE(3, 1) DC_DIRECT_TILE(4, 1) DC_DIRECT_TILE(5, 1)
DC_DIRECT_TILE(6, 1) DC_DIRECT_TILE(7, 1) DC_DIRECT_TILE(8, 1) DC_DIRECT_TILE(9, 1) DC_DIRECT_TILE(10, 1)
DC_DIRECT_TILE(11, 1) DC_DIRECT_TILE(12, 1)
DC_DIRECT_TILE(1, 2) DC_DIRECT_TILE(2, 2) DC_DIRECT_TILE(3, 2) DC_DIRECT_TILE(4, 2) DC_DIRECT_TILE(5, 2)
DC_DIRECT_TILE(6, 2)

static inline int dc_direct_full_tile(int nv) { return (nv == 1) ? 12 : 6; }

static inline void dc_direct_tile(int mr, int nv, int kh, int span, const float* const* rows, long step,
                                  const float* w, int ldw, const float* bias, float* y, int ldy, vmask_t tail,
                                  int partial, int relu) {
    if (nv == 1) {
        switch (mr) {
            DC_DIRECT_CASE(1, 1) DC_DIRECT_CASE(2, 1) DC_DIRECT_CASE(3, 1) DC_DIRECT_CASE(4, 1) DC_DIRECT_CASE(5, 1)
            DC_DIRECT_CASE(6, 1) DC_DIRECT_CASE(7, 1) DC_DIRECT_CASE(8, 1) DC_DIRECT_CASE(9, 1) DC_DIRECT_CASE(10, 1)
            DC_DIRECT_CASE(11, 1) DC_DIRECT_CASE(12, 1)
        }
    } else {
        switch (mr) {
            DC_DIRECT_CASE(1, 2) DC_DIRECT_CASE(2, 2) DC_DIRECT_CASE(3, 2) DC_DIRECT_CASE(4, 2) DC_DIRECT_CASE(5, 2)
            DC_DIRECT_CASE(6, 2)
        }
    }
}
#endif
/* Output channels per block: the widest tile's vectors. */
#define DC_DIRECT_BLOCK (V_LANES * DC_DIRECT_NV)

/* Width (pixels) of the zero-padded rows of a padded layer: every window and the whole input row fit in it. */
static inline long dc_direct_padded_width(int wd, int kw, int sw, int pl, int ow) {
    long pw = (long)(ow - 1) * sw + kw;
    return (pw < wd + pl) ? wd + pl : pw;
}

/* Scratch floats dc_conv_direct_rows needs for `rows` output rows of a padded layer. */
static inline long dc_direct_scratch(int rows, int kh, int sh, int wd, int kw, int sw, int pl, int ow, int cin) {
    return ((long)(rows - 1) * sh + kh) * dc_direct_padded_width(wd, kw, sw, pl, ow) * cin;
}

/* Copy the input rows that output rows oy0 .. oy1 - 1 read (of the sample `sample`, h x wd x cin) into `pad`, rows of
 * `pad_row` floats (dc_direct_padded_width pixels), each input row at pixel `pl`, zero around it and for rows outside
 * the input: a window's taps of kernel row i for output (oy, ox) then start at pad + ((oy - oy0) * sh + i) * pad_row
 * + ox * sw * cin. Shared by the forward and the weight gradient (_direct_conv_dw.h). */
static inline void dc_direct_pad_rows(const float* sample, int h, int wd, int cin, int kh, int sh, int pt, int pl,
                                      int oy0, int oy1, long pad_row, float* pad) {
    const long in_row = (long)wd * cin;
    int first = oy0 * sh - pt, count = (oy1 - 1 - oy0) * sh + kh;
    for (int r = 0; r < count; ++r) {
        float* dst = pad + r * pad_row;
        int iy = first + r;
        memset(dst, 0, pad_row * sizeof(float));
        if (iy >= 0 && iy < h) memcpy(dst + (long)pl * cin, sample + iy * in_row, in_row * sizeof(float));
    }
}

/* Output rows oy0 .. oy1 - 1 of sample `ni` of y = relu?(conv(x, w) + b), into `y` (the first of those rows, each
 * ow x cout). x: (n, h, wd, cin), w: (kh, kw, cin, cout). `pad`: dc_direct_scratch(oy1 - oy0, ...) floats when some
 * window leaves the input, where the input rows these outputs read are copied once, zero-padded (NULL otherwise:
 * the rows are read in place). kh <= 64. */
static void dc_conv_direct_rows(const float* x, int h, int wd, int cin, const float* w, int kh, int kw, int cout,
                                const float* bias, int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1,
                                float* y, float* pad, int relu) {
    const float* rows[64];
    const int span = kw * cin;
    const long step = (long)sw * cin;
    const float* sample = x + ni * h * (long)wd * cin;
    const long in_row = (long)wd * cin;
    const long pad_row = pad ? dc_direct_padded_width(wd, kw, sw, pl, ow) * cin : 0;
    if (pad) dc_direct_pad_rows(sample, h, wd, cin, kh, sh, pt, pl, oy0, oy1, pad_row, pad);
    for (int oy = oy0; oy < oy1; ++oy) {
        float* yrow = y + (long)(oy - oy0) * ow * cout;
        for (int i = 0; i < kh; ++i)
            rows[i] = pad ? pad + ((long)(oy - oy0) * sh + i) * pad_row : sample + (long)(oy * sh + i) * in_row;
        for (int c0 = 0; c0 < cout; c0 += DC_DIRECT_BLOCK) {
            int nb = (cout - c0 < DC_DIRECT_BLOCK) ? cout - c0 : DC_DIRECT_BLOCK;
            int nv = (nb + V_LANES - 1) / V_LANES;
            int tiles = (ow + dc_direct_full_tile(nv) - 1) / dc_direct_full_tile(nv);
            int mr_even = (ow + tiles - 1) / tiles;  /* equal tiles: 28 pixels in two of 14, not 24 + 4 */
            int last = nb - V_LANES * (nv - 1);
            vmask_t tail = V_MASK(last);
            const float* b = bias ? bias + c0 : 0;
            for (int ox0 = 0; ox0 < ow; ox0 += mr_even) {
                int mr = (ow - ox0 < mr_even) ? ow - ox0 : mr_even;
                const float* shifted[64];
                for (int i = 0; i < kh; ++i) shifted[i] = rows[i] + ox0 * step;
                dc_direct_tile(mr, nv, kh, span, shifted, step, w + c0, cout, b, yrow + (long)ox0 * cout + c0, cout,
                               tail, last < V_LANES, relu);
            }
        }
    }
}

/* dc_conv_direct_rows for callers that cannot pass NULL (the Numba kernels): `has_bias` and `padded` say whether
 * `bias` and `pad` count. */
static void dc_conv_direct_rows_flagged(const float* x, int h, int wd, int cin, const float* w, int kh, int kw,
                                        int cout, const float* bias, int sh, int sw, int pt, int pl, int ow, long ni,
                                        int oy0, int oy1, float* y, float* pad, int relu, int has_bias, int padded) {
    dc_conv_direct_rows(x, h, wd, cin, w, kh, kw, cout, has_bias ? bias : 0, sh, sw, pt, pl, ow, ni, oy0, oy1, y,
                        padded ? pad : 0, relu);
}

#else
static inline long dc_direct_scratch(int rows, int kh, int sh, int wd, int kw, int sw, int pl, int ow, int cin) {
    (void)rows; (void)kh; (void)sh; (void)wd; (void)kw; (void)sw; (void)pl; (void)ow; (void)cin;
    return 0;
}
/* Never called on the generic target (callers check DC_HAVE_FAST_GEMM); defined so that the extension links. */
static void dc_conv_direct_rows(const float* x, int h, int wd, int cin, const float* w, int kh, int kw, int cout,
                                const float* bias, int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1,
                                float* y, float* pad, int relu) {
    (void)x; (void)h; (void)wd; (void)cin; (void)w; (void)kh; (void)kw; (void)cout; (void)bias; (void)sh;
    (void)sw; (void)pt; (void)pl; (void)ow; (void)ni; (void)oy0; (void)oy1; (void)y; (void)pad; (void)relu;
}
static void dc_conv_direct_rows_flagged(const float* x, int h, int wd, int cin, const float* w, int kh, int kw,
                                        int cout, const float* bias, int sh, int sw, int pt, int pl, int ow, long ni,
                                        int oy0, int oy1, float* y, float* pad, int relu, int has_bias, int padded) {
    (void)x; (void)h; (void)wd; (void)cin; (void)w; (void)kh; (void)kw; (void)cout; (void)bias; (void)sh;
    (void)sw; (void)pt; (void)pl; (void)ow; (void)ni; (void)oy0; (void)oy1; (void)y; (void)pad; (void)relu;
    (void)has_bias; (void)padded;
}
#endif

#endif
