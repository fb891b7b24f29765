# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time max and average pooling forward (NHWC, float32), one OpenMP task per (sample, output row).

Raw pointers and clipped windows, channels innermost: the channel loops are contiguous runs the C compiler
vectorizes (memoryview indexing in the inner loop kept it scalar, 20x slower than the Numba kernel).
The taps of a window are visited in the reference's order (row-major), so the average is bit-identical to it.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY

cimport openmp

include "_cy_threads.pxi"

cdef extern from "_pool.h" nogil:
    int DC_HAVE_SIMD
    void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw, int sw,
                         int pl)


cdef inline void _max_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                          int sw, int pl) noexcept nogil:
    """One output row of the max pool: ``y`` holds ``ow * c`` values, ``x`` is the sample (h, wd, c)."""
    cdef int ox, iy, ix, k, ix0
    cdef float v, m
    cdef float* yv
    cdef const float* xv
    for ox in range(ow):
        yv = y + ox * c
        for k in range(c):
            yv[k] = -INFINITY
        ix0 = ox * sw - pl
        for iy in range(max(iy0, 0), min(iy0 + ph, h)):
            for ix in range(max(ix0, 0), min(ix0 + pw, wd)):
                xv = x + (iy * wd + ix) * c
                for k in range(c):
                    v = xv[k]
                    m = yv[k]
                    yv[k] = v if (v > m) | (v != v) else m  # a NaN in the window reaches the output


cdef inline void _avg_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                          int sw, int pl) noexcept nogil:
    """One output row of the average pool over each window's non-padded taps (TensorFlow's "same" rule)."""
    cdef int ox, iy, ix, k, ix0, count
    cdef float inv
    cdef float* yv
    cdef const float* xv
    for ox in range(ow):
        yv = y + ox * c
        for k in range(c):
            yv[k] = 0
        ix0 = ox * sw - pl
        count = 0
        for iy in range(max(iy0, 0), min(iy0 + ph, h)):
            for ix in range(max(ix0, 0), min(ix0 + pw, wd)):
                count = count + 1
                xv = x + (iy * wd + ix) * c
                for k in range(c):
                    yv[k] = yv[k] + xv[k]
        inv = <float>count
        for k in range(c):
            yv[k] = yv[k] / inv


def pool2d_forward(const float[:, :, :, ::1] x, int ph, int pw, int sh, int sw, int pt, int pl,
                   float[:, :, :, ::1] y, bint average):
    """Max (or, with ``average``, mean) over each window into ``y``; padded positions never count."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, t
    cdef int ni, oy
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef float* yp = &y[0, 0, 0, 0]
    cdef int nthreads = team_size(rows * ow * c * ph * pw, rows)
    for t in prange(rows, nogil=True, schedule="static", num_threads=nthreads):
        ni = <int>(t // oh)
        oy = <int>(t % oh)
        if average:
            _avg_row(xp + <Py_ssize_t>ni * h * wd * c, yp + t * ow * c, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl)
        elif DC_HAVE_SIMD:  # masked vectors: fast for any channel count (see _pool.h)
            dc_max_pool_row(xp + <Py_ssize_t>ni * h * wd * c, yp + t * ow * c, h, wd, c, ow, oy * sh - pt, ph, pw,
                            sw, pl)
        else:
            _max_row(xp + <Py_ssize_t>ni * h * wd * c, yp + t * ow * c, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl)


def global_pool2d_forward(const float[:, :, ::1] x, float[:, ::1] y, bint average):
    """Max (or, with ``average``, mean) of ``x`` (N, H * W, C) over its rows into ``y`` (N, C); NaN propagates."""
    cdef int n = x.shape[0], hw = x.shape[1], c = x.shape[2]
    cdef int ni, p, k
    cdef float v, m
    cdef float* yv
    cdef const float* xv
    cdef const float* xp = &x[0, 0, 0]
    cdef float* yp = &y[0, 0]
    # One task per sample: a batch of one then runs on one thread, but the pass reads each input once, which is
    # short next to the convolution that produced the map; splitting the channels too would only add scheduling.
    cdef int nthreads = team_size(<Py_ssize_t>n * hw * c, n)
    for ni in prange(n, nogil=True, schedule="static", num_threads=nthreads):
        yv = yp + <Py_ssize_t>ni * c
        xv = xp + <Py_ssize_t>ni * hw * c
        for k in range(c):
            yv[k] = 0 if average else -INFINITY
        # Rows in order, channels innermost (a contiguous run the compiler vectorizes): per channel, the sum runs
        # in the order NumPy's reference sums the rows and the division matches its mean, so the average is
        # bit-identical to it (the tests allow for a rounding, should NumPy's order change).
        for p in range(hw):
            if average:
                for k in range(c):
                    yv[k] = yv[k] + xv[k]
            else:
                for k in range(c):
                    v = xv[k]
                    m = yv[k]
                    yv[k] = v if (v > m) | (v != v) else m  # a NaN in the sample reaches the output
            xv = xv + c
        if average:
            for k in range(c):
                yv[k] = yv[k] / <float>hw
