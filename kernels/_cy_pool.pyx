# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time max and average pooling forward (NHWC, float32), one OpenMP task per (sample, output row).

The taps of a window are visited in the reference's order (row-major), so the average is bit-identical to it.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY

cimport openmp

cdef enum:
    SERIAL_WORK = 32768  # below this many element operations one thread is faster than waking a team


cdef int _threads(Py_ssize_t work, Py_ssize_t tasks) noexcept nogil:
    """OpenMP threads for a region: one for small work (a team costs more than it saves), else up to ``tasks``."""
    if work < SERIAL_WORK:
        return 1
    return <int>max(1, min(<Py_ssize_t>openmp.omp_get_max_threads(), tasks))


def max_pool2d_forward(const float[:, :, :, ::1] x, int ph, int pw, int sh, int sw, int pt, int pl,
                       float[:, :, :, ::1] y):
    """Max over each window into ``y``; padded positions never win, NaN propagates."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t t
    cdef int ni, oy, ox, i, j, iy, ix, k
    cdef float v, m
    for t in prange(<Py_ssize_t>n * oh, nogil=True, schedule="static",
                   num_threads=_threads(<Py_ssize_t>n * oh * ow * c * ph * pw, <Py_ssize_t>n * oh)):
        ni = <int>(t // oh)
        oy = <int>(t % oh)
        for ox in range(ow):
            for k in range(c):
                y[ni, oy, ox, k] = -INFINITY
            for i in range(ph):
                iy = oy * sh - pt + i
                if iy < 0 or iy >= h:
                    continue
                for j in range(pw):
                    ix = ox * sw - pl + j
                    if ix < 0 or ix >= wd:
                        continue
                    for k in range(c):
                        v = x[ni, iy, ix, k]
                        m = y[ni, oy, ox, k]
                        if v > m or v != v:  # once NaN, m stays NaN (v > NaN is false)
                            y[ni, oy, ox, k] = v


def avg_pool2d_forward(const float[:, :, :, ::1] x, int ph, int pw, int sh, int sw, int pt, int pl,
                       float[:, :, :, ::1] y):
    """Mean over each window's non-padded positions into ``y`` (TensorFlow's rule for "same")."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t t
    cdef int ni, oy, ox, i, j, iy, ix, k, count
    cdef float inv
    for t in prange(<Py_ssize_t>n * oh, nogil=True, schedule="static",
                   num_threads=_threads(<Py_ssize_t>n * oh * ow * c * ph * pw, <Py_ssize_t>n * oh)):
        ni = <int>(t // oh)
        oy = <int>(t % oh)
        for ox in range(ow):
            for k in range(c):
                y[ni, oy, ox, k] = 0
            count = 0
            for i in range(ph):
                iy = oy * sh - pt + i
                if iy < 0 or iy >= h:
                    continue
                for j in range(pw):
                    ix = ox * sw - pl + j
                    if ix < 0 or ix >= wd:
                        continue
                    count = count + 1
                    for k in range(c):
                        y[ni, oy, ox, k] = y[ni, oy, ox, k] + x[ni, iy, ix, k]
            inv = <float>count
            for k in range(c):
                y[ni, oy, ox, k] = y[ni, oy, ox, k] / inv
