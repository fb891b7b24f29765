# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time element-wise inference kernels: relu, dropout / relu_dropout (counter-based masks), softmax,
sigmoid and batch normalization with moving statistics. float32, ``nogil``, OpenMP ``prange``.

Dropout masks are bit-identical to :mod:`dropcore.kernels.reference.rng`: element ``i`` of the noise shape is kept
when ``mix32(mix32(i ^ k0) + k1) >= threshold``, with ``mix32`` the lowbias32 hash in uint32 arithmetic.
Every element's result depends on its own index only, so the output never depends on the thread count.
"""
from cython.parallel cimport prange
from libc.math cimport expf, fabsf
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

cimport openmp

include "_cy_threads.pxi"

cdef enum:
    CHUNK = 16384  # elements per OpenMP task


def set_num_threads(int n):
    """Threads the next OpenMP regions started from the calling thread use (within the process-wide cap); returns
    OpenMP's previous count for the calling thread."""
    cdef int before = openmp.omp_get_max_threads()
    openmp.omp_set_num_threads(n)
    return before


def get_max_threads():
    """Threads an OpenMP region started now from the calling thread may use (within the process-wide cap)."""
    return max_threads()


cdef inline uint32_t _mix32(uint32_t x) noexcept nogil:
    x ^= x >> 16
    x *= <uint32_t>0x7FEB352D
    x ^= x >> 15
    x *= <uint32_t>0x846CA68B
    x ^= x >> 16
    return x


cdef inline uint32_t _keep(uint32_t index, uint32_t k0, uint32_t k1, uint32_t thr) noexcept nogil:
    # Only the low 32 bits of the index enter the hash, as in the reference (which masks after the xor): callers
    # pass them, and count in 32 bits, since AVX2 cannot narrow 64-bit lanes (a loop that did stayed scalar).
    return _mix32(_mix32(index ^ k0) + k1) >= thr


cdef inline float _kept(float v, uint32_t keep) noexcept nogil:
    """``v`` where ``keep`` (0 or 1), else +0.0: a select on the bits, which GCC vectorizes on AVX2 (a conditional
    was control flow it did not: the AVX2 dropout ran 5x slower than Numba's)."""
    cdef uint32_t bits
    memcpy(&bits, &v, 4)
    bits = bits & (<uint32_t>0 - keep)
    memcpy(&v, &bits, 4)
    return v


def random_bits(Py_ssize_t n, uint32_t k0, uint32_t k1):
    """The 32-bit hash values of indices ``0..n-1`` (for tests against the reference)."""
    import numpy as np
    out = np.empty(n, dtype=np.uint32)
    cdef uint32_t[::1] o = out
    cdef Py_ssize_t i
    for i in range(n):
        o[i] = _mix32(_mix32((<uint32_t>i) ^ k0) + k1)
    return out


def relu_forward(const float[::1] x, float[::1] y):
    cdef Py_ssize_t n = x.shape[0], t, i, hi
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* xp = &x[0] if n else NULL
    cdef float* yp = &y[0] if n else NULL
    cdef float v
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n, tasks)):
        hi = min(n, (t + 1) * CHUNK)
        for i in range(t * CHUNK, hi):
            v = xp[i]
            yp[i] = 0 if v <= 0 else v  # NaN passes through


cdef inline void _dropout_run(const float* x, float* y, Py_ssize_t index0, Py_ssize_t count, uint32_t k0,
                              uint32_t k1, uint32_t thr, float scale, int relu) noexcept nogil:
    """``count`` contiguous elements whose noise indices start at ``index0``; branch-free so it vectorizes (on the
    Zen 3's AVX2, a 32 x 12 x 12 x 64 dropout: 1.2 ms scalar, 0.13 ms vectorized; Numba's: 0.25 ms)."""
    cdef uint32_t i, n = <uint32_t>count, base = <uint32_t>index0
    cdef float v
    cdef uint32_t keep
    for i in range(n):
        v = x[i]
        keep = _keep(base + i, k0, k1, thr) & <uint32_t>(1 - (relu & (v <= 0)))  # NaN is kept (v <= 0 is false)
        y[i] = _kept(v * scale, keep)


def dropout_forward(const float[::1] x, float[::1] y, uint32_t k0, uint32_t k1, uint32_t thr, float scale,
                    bint relu, Py_ssize_t offset=0):
    """Per-element (inverted) dropout, with ReLU first when ``relu``; index = ``offset`` + flat index in ``x``."""
    cdef Py_ssize_t n = x.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* xp = &x[0] if n else NULL
    cdef float* yp = &y[0] if n else NULL
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n, tasks)):
        lo = t * CHUNK
        _dropout_run(xp + lo, yp + lo, offset + lo, min(n, lo + CHUNK) - lo, k0, k1, thr, scale, relu)


def dropout_channels_forward(const float[:, :, ::1] x, float[:, :, ::1] y, uint32_t k0, uint32_t k1,
                             uint32_t thr, float scale, bint relu, Py_ssize_t offset=0):
    """Per-channel dropout of ``x`` viewed as (N, S, C): noise index ``offset + n * C + c``."""
    cdef Py_ssize_t n = x.shape[0], s = x.shape[1], c = x.shape[2], t, si
    cdef uint32_t k, base
    cdef float v
    for t in prange(n, nogil=True, schedule="static", num_threads=team_size(n * s * c, n)):
        base = <uint32_t>(offset + t * c)
        for si in range(s):
            for k in range(<uint32_t>c):
                v = x[t, si, k]
                y[t, si, k] = _kept(v * scale, _keep(base + k, k0, k1, thr) & <uint32_t>(1 - (relu & (v <= 0))))


def mask_forward(float[::1] m, uint32_t k0, uint32_t k1, uint32_t thr, float scale, Py_ssize_t offset=0):
    """A dropout mask of 0 or ``scale`` for a general noise shape (flattened), indices from ``offset``."""
    cdef Py_ssize_t n = m.shape[0], t, lo
    cdef uint32_t i, base
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef float* mp = &m[0] if n else NULL
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n, tasks)):
        lo = t * CHUNK
        base = <uint32_t>(offset + lo)
        for i in range(<uint32_t>(min(n, lo + CHUNK) - lo)):
            mp[lo + i] = _kept(scale, _keep(base + i, k0, k1, thr))


def sigmoid_forward(const float[::1] x, float[::1] y):
    """Logistic function through ``exp(-|x|)``: never overflows."""
    cdef Py_ssize_t n = x.shape[0], t, i, hi
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef float v, e, r
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n, tasks)):
        hi = min(n, (t + 1) * CHUNK)
        for i in range(t * CHUNK, hi):
            v = x[i]
            e = expf(-fabsf(v))
            r = 1 / (1 + e)
            y[i] = r if v >= 0 else e * r


def softmax_forward(const float[:, ::1] x, float[:, ::1] y):
    """Softmax of each row (max-subtracted)."""
    cdef Py_ssize_t rows = x.shape[0], k = x.shape[1], r, j
    cdef float m, total, e, inv
    for r in prange(rows, nogil=True, schedule="static", num_threads=team_size(rows * k, rows)):
        m = x[r, 0]
        for j in range(1, k):
            if x[r, j] > m:
                m = x[r, j]
        total = 0
        for j in range(k):
            e = expf(x[r, j] - m)
            y[r, j] = e
            total = total + e
        inv = 1 / total
        for j in range(k):
            y[r, j] = y[r, j] * inv


def batch_norm_forward(const float[:, ::1] x, const float[::1] mean, const float[::1] scale,
                       const float[::1] beta, float[:, ::1] y):
    """``(x - mean) * scale + beta`` per channel (the last axis), ``scale = gamma / sqrt(var + eps)``."""
    cdef Py_ssize_t rows = x.shape[0], c = x.shape[1], r, k
    for r in prange(rows, nogil=True, schedule="static", num_threads=team_size(rows * c, rows)):
        for k in range(c):
            y[r, k] = (x[r, k] - mean[k]) * scale[k] + beta[k]
