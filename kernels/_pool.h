/* Max and average pooling of one output row, NHWC float32, on the vectors of _simd.h (AVX-512 or AVX2 + FMA):
 * channels in vectors, the last one masked.
 *
 * Why: the channel loop of the portable Cython kernel only vectorizes for channel counts the compiler's vector
 * loop covers; with LeNet's 6 channels it ran scalar, 6x slower than the Numba kernel. Masked vectors cover any
 * channel count. A NaN in a window reaches the output, as in the reference (as a NaN, not necessarily that one).
 * The average keeps its sums in registers across the taps (the portable loop adds into the output row in memory,
 * a store and a load per tap) and adds the taps in the reference's row-major order from 0, then divides by the
 * count: the reference's bits.
 */
#ifndef DROPCORE_POOL_H
#define DROPCORE_POOL_H

#include <string.h>

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

/* y[ox * ldy + k] = max over the window's taps inside the input, for k < c; `x` is the sample (h, wd, c), `iy0` the
 * window's first input row (may be negative: padded rows never win). `ldy`: floats between output pixels (c, or
 * more where the output is a concatenation of which these are some of the channels). */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl, int ldy) {
    const int y0 = iy0 < 0 ? 0 : iy0, y1 = (iy0 + ph < h) ? iy0 + ph : h;
    for (int ox = 0; ox < ow; ++ox) {
        const int ix0 = ox * sw - pl;
        const int x0 = ix0 < 0 ? 0 : ix0, x1 = (ix0 + pw < wd) ? ix0 + pw : wd;
        float* yp = y + (long)ox * ldy;
        if (c <= V_LANES)
            dc_max_pool_pixel_1(x, yp, wd, c, 0, y0, y1, x0, x1);
        else
            for (int k0 = 0; k0 < c; k0 += 4 * V_LANES) dc_max_pool_pixel_4(x, yp, wd, c, k0, y0, y1, x0, x1);
    }
}

/* Up to NV vectors of channels from k0 on: the sum over the taps, divided by their count. */
#define DC_AVG_POOL_PIXEL(NV)                                                                                      \
static inline void dc_avg_pool_pixel_##NV(const float* x, float* y, int wd, int c, int k0, int y0, int y1, int x0, \
                                          int x1) {                                                               \
    vf_t sum[NV];                                                                                                 \
    vmask_t m[NV];                                                                                                \
    for (int j = 0; j < NV; ++j) {                                                                                \
        m[j] = V_MASK(c - k0 - V_LANES * j);                                                                      \
        sum[j] = V_ZERO;                                                                                          \
    }                                                                                                             \
    for (int iy = y0; iy < y1; ++iy)                                                                              \
        for (int ix = x0; ix < x1; ++ix) {                                                                        \
            const float* px = x + ((long)iy * wd + ix) * c + k0;                                                  \
            for (int j = 0; j < NV; ++j) sum[j] = V_ADD(sum[j], V_LOAD(m[j], px + V_LANES * j));                  \
        }                                                                                                         \
    const vf_t count = V_SET1((float)((y1 - y0) * (x1 - x0)));                                                    \
    for (int j = 0; j < NV; ++j) V_STORE(y + k0 + V_LANES * j, m[j], V_DIV(sum[j], count));                       \
}
DC_AVG_POOL_PIXEL(1)
DC_AVG_POOL_PIXEL(4)

/* y[ox * ldy + k] = the mean over the window's taps inside the input (TensorFlow's "same" rule: padding never
 * counts), for k < c; `ldy` as dc_max_pool_row's. */
static inline void dc_avg_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl, int ldy) {
    const int y0 = iy0 < 0 ? 0 : iy0, y1 = (iy0 + ph < h) ? iy0 + ph : h;
    for (int ox = 0; ox < ow; ++ox) {
        const int ix0 = ox * sw - pl;
        const int x0 = ix0 < 0 ? 0 : ix0, x1 = (ix0 + pw < wd) ? ix0 + pw : wd;
        float* yp = y + (long)ox * ldy;
        if (c <= V_LANES)
            dc_avg_pool_pixel_1(x, yp, wd, c, 0, y0, y1, x0, x1);
        else
            for (int k0 = 0; k0 < c; k0 += 4 * V_LANES) dc_avg_pool_pixel_4(x, yp, wd, c, k0, y0, y1, x0, x1);
    }
}

/* The max pooling of a block of convolution rows with each window's tap, for training's conv2d_max_pool: `conv` holds
 * prows * ph rows of ow pixels of c channels; y (prows x pow x c) gets each window's maximum and arg (uint8, the same
 * shape) the row-major index in the window of its first maximum (a later tap wins only when greater), or 255 with
 * a NaN where the window holds one (max_pool2d's bits: the same comparisons in the same order). */
static inline void dc_max_pool_arg_rows(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                        float* y, unsigned char* arg) {
    for (int py = 0; py < prows; ++py)
        for (int px = 0; px < pow_; ++px)
            for (int co = 0; co < c; co += V_LANES) {
                const vmask_t m = V_MASK(c - co);
                const float* first = conv + (((long)py * ph) * ow + (long)px * pw) * c + co;
                vf_t best = V_LOAD(m, first);
                vmask_t nan = V_NAN(best);
                vi_t tap = V_INT(0);
                for (int k = 1; k < ph * pw; ++k) {
                    const vf_t v = V_LOAD(m, first + ((long)(k / pw) * ow + k % pw) * c);
                    const vmask_t gt = V_GT(v, best); /* false against a NaN either side */
                    nan = V_OR(nan, V_NAN(v));
                    best = V_SELECT(gt, best, v);
                    tap = V_SELECT_INT(gt, tap, V_INT(k));
                }
                const long at = ((long)py * pow_ + px) * c + co;
                V_STORE(y + at, m, V_SELECT(nan, best, V_SET1(__builtin_nanf(""))));
                V_STORE_BYTES(arg + at, m, V_SELECT_INT(nan, tap, V_INT(255)));
            }
}

/* One pixel's c channels of the convolution's gradient rebuilt from its pooled window's cell: o = 0 + dv where av
 * is this pixel's `tap` (and, with relu, yv > 0), else +0. Whole vectors are read past the cell's channels when
 * `load_past` (more cells follow in the arrays) and written past o's when `store_past` (the pixel after it, written
 * next, is there): a masked load or store per pixel was most of LeNet's 6-channel unpooling on AVX2. */
static inline void dc_unpool_pixel(const float* dv, const float* yv, const unsigned char* av, int c, int tap, int relu,
                                   float* o, int load_past, int store_past) {
    for (int co = 0; co < c; co += V_LANES) {
        const vmask_t m = V_MASK(c - co);
        const int whole_in = c - co >= V_LANES || load_past;
        vmask_t hit = V_EQ_INT(whole_in ? V_LOADU_BYTES(av + co) : V_LOAD_BYTES(m, av + co), V_INT(tap));
        if (relu) hit = V_AND(hit, V_GT(whole_in ? V_LOADU(yv + co) : V_LOAD(m, yv + co), V_ZERO)); /* NaN: no */
        const vf_t v = V_SELECT(hit, V_ZERO, V_ADD(V_ZERO, whole_in ? V_LOADU(dv + co) : V_LOAD(m, dv + co)));
        if (c - co >= V_LANES || store_past) V_STOREU(o + co, v); else V_STORE(o + co, m, v);
    }
}

/* The pixels ox0 .. ox1 - 1 of an output row of channels that fit one vector (c <= V_LANES), each inside its
 * window: whole vectors read and written past the pixel's c channels (see dc_unpool_pixel), for all but the row's
 * last cell (`dvr`, `yvr`, `avr`: the pooled row) and the block's last pixel (`o_end`), which take the masked path. */
static inline void dc_unpool_run(const float* dvr, const float* yvr, const unsigned char* avr, int c, int pw, int i,
                                 int relu, int ox0, int ox1, int last_cell_px, float* o, const float* o_end) {
    for (int ox = ox0, px = ox0 / pw, j = ox0 % pw; ox < ox1; ++ox, o += c, j = (j + 1 == pw) ? 0 : j + 1,
         px += (j == 0)) {
        const long cell = (long)px * c;
        const vi_t tap = V_INT(i * pw + j);
        if (px == last_cell_px || o + c >= o_end) {
            dc_unpool_pixel(dvr + cell, yvr + cell, avr + cell, c, i * pw + j, relu, o, px != last_cell_px,
                            o + c < o_end);
            continue;
        }
        vmask_t hit = V_EQ_INT(V_LOADU_BYTES(avr + cell), tap);
        if (relu) hit = V_AND(hit, V_GT(V_LOADU(yvr + cell), V_ZERO));
        V_STOREU(o, V_SELECT(hit, V_ZERO, V_ADD(V_ZERO, V_LOADU(dvr + cell))));
    }
}

/* Rows oy0 .. oy1 - 1 (ow pixels of c channels each, into `out`) of a sample's convolution gradient, from the pooled
 * gradient dy, maxima y and taps arg of conv2d_max_pool (the sample's, poh x pow x c each; ph x pw windows, strides
 * equal to them): each window's gradient at its tap (with relu, where its maximum is positive) as 0 + dy, the value
 * max_pool2d_backward gives (a -0 becomes +0); +0 elsewhere, rows and columns past the last whole window too. The
 * same values as the drivers' portable loops (conv.py's and _cy_gemm.pyx's _unpool_rows). Not inlined: inside the
 * backward's OpenMP region its vectors went to the stack (`unused`: _cy_pool includes it too). */
static __attribute__((noinline, unused)) void dc_unpool_rows(const float* dy, const float* y,
                                                             const unsigned char* arg, int poh, int pow_, int c,
                                                             int ph, int pw, int relu, int oy0, int oy1, int ow,
                                                             float* out) {
    const int covered = (pow_ * pw < ow) ? pow_ * pw : ow; /* pixels inside a window */
    const float* o_end = out + (long)(oy1 - oy0) * ow * c;
    for (int oy = oy0; oy < oy1; ++oy) {
        const int py = oy / ph, i = oy - py * ph;
        float* o = out + (long)(oy - oy0) * ow * c;
        const long row = (long)py * pow_ * c;
        if (py >= poh) {
            memset(o, 0, (size_t)ow * c * sizeof(float));
            continue;
        }
        if (c <= V_LANES) {
            dc_unpool_run(dy + row, y + row, arg + row, c, pw, i, relu, 0, covered, py == poh - 1 ? pow_ - 1 : -1, o,
                          o_end);
        } else {
            for (int ox = 0; ox < covered; ++ox) {
                const int px = ox / pw;
                const long cell = row + (long)px * c;
                float* op = o + (long)ox * c;
                dc_unpool_pixel(dy + cell, y + cell, arg + cell, c, i * pw + (ox - px * pw), relu, op,
                                py < poh - 1 || px < pow_ - 1, op + c < o_end);
            }
        }
        memset(o + (long)covered * c, 0, (size_t)(ow - covered) * c * sizeof(float));
    }
}

/* dc_max_pool_arg_rows for the Numba kernels (through an LLVM symbol). */
static inline void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                          float* y, unsigned char* arg) {
    dc_max_pool_arg_rows(conv, ow, c, ph, pw, prows, pow_, y, arg);
}

#else
/* Never called on the generic target (callers check DC_HAVE_FAST_GEMM); defined so that the extension links. */
static inline void dc_unpool_rows(const float* dy, const float* y, const unsigned char* arg, int poh, int pow_, int c,
                                  int ph, int pw, int relu, int oy0, int oy1, int ow, float* out) {
    (void)dy; (void)y; (void)arg; (void)poh; (void)pow_; (void)c; (void)ph; (void)pw; (void)relu; (void)oy0;
    (void)oy1; (void)ow; (void)out;
}
static inline void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_,
                                          float* y, unsigned char* arg) {
    (void)conv; (void)ow; (void)c; (void)ph; (void)pw; (void)prows; (void)pow_; (void)y; (void)arg;
}
/* Never called on the generic target (callers check DC_HAVE_SIMD); defined so that the extension links. */
static inline void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl, int ldy) {
    (void)x; (void)y; (void)h; (void)wd; (void)c; (void)ow; (void)iy0; (void)ph; (void)pw; (void)sw; (void)pl;
    (void)ldy;
}
static inline void dc_avg_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                                   int sw, int pl, int ldy) {
    (void)x; (void)y; (void)h; (void)wd; (void)c; (void)ow; (void)iy0; (void)ph; (void)pw; (void)sw; (void)pl;
    (void)ldy;
}
#endif

#endif
