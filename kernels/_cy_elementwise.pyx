# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time element-wise kernels: relu, dropout / relu_dropout (counter-based masks), softmax, sigmoid and
batch normalization with moving statistics for inference; their backward passes, Gaussian noise, batch
normalization with batch statistics and the fused losses for training. float32, ``nogil``, OpenMP ``prange``.

Dropout masks are bit-identical to :mod:`dropcore.kernels.reference.rng`: element ``i`` of the noise shape is kept
when ``mix32(mix32(i ^ k0) + k1) >= threshold``, with ``mix32`` the lowbias32 hash in uint32 arithmetic.
Every element's result depends on its own index only, so the output never depends on the thread count; the
reductions (a row's softmax and loss sums, batch normalization's per-channel sums) run in an order fixed by the
shapes alone: a row within one task, batch statistics as float64 partials over fixed chunks of rows added in
chunk order.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, expf, fabsf, log1pf, logf, nextafterf, sqrt
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport openmp

include "_cy_threads.pxi"
include "_cy_arrays.pxi"

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


def relu_forward(cnp.ndarray x not None, cnp.ndarray y not None):
    """``y = max(x, 0)`` element by element, for C-contiguous float32 arrays of any shape and as many elements
    (NaN passes through); ``y`` may be ``x``."""
    cdef const float* xp = f32_data(x, -1, False, "relu_forward: x")
    cdef float* yp = f32_data(y, -1, True, "relu_forward: y")
    cdef Py_ssize_t n = same_size(x, y, "relu_forward"), t, i, hi
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef float v
    cdef int nthreads = team_size(n, tasks)
    if nthreads == 1:  # no OpenMP region (see softmax_forward)
        with nogil:
            for i in range(n):
                v = xp[i]
                yp[i] = 0 if v <= 0 else v
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
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


cdef enum:
    KEEP_BLOCK = 256  # channels whose keep bits per-channel dropout hashes at a time (a buffer on the task's stack)


cdef inline void _dropout_channels_sample(const float* x, float* y, Py_ssize_t s, Py_ssize_t c, uint32_t base,
                                          uint32_t k0, uint32_t k1, uint32_t thr, float scale,
                                          int relu) noexcept nogil:
    """One sample (``s`` rows of ``c`` channels) of per-channel dropout, channel ``k``'s noise index ``base + k``.
    Each block of channels' keep bits is hashed once and applied down the rows: hashing per element (as before)
    cost the whole per-element dropout's work, 2x Numba's time, which hashes once per row chunk."""
    cdef uint32_t keep[KEEP_BLOCK]
    cdef uint32_t k, m, kb
    cdef Py_ssize_t si
    cdef const float* xv
    cdef float* yv
    cdef float v
    for kb in range(<uint32_t>((c + KEEP_BLOCK - 1) // KEEP_BLOCK)):
        m = <uint32_t>min(<Py_ssize_t>KEEP_BLOCK, c - kb * KEEP_BLOCK)
        for k in range(m):
            keep[k] = _keep(base + kb * KEEP_BLOCK + k, k0, k1, thr)
        for si in range(s):
            xv = x + si * c + kb * KEEP_BLOCK
            yv = y + si * c + kb * KEEP_BLOCK
            for k in range(m):
                v = xv[k]
                yv[k] = _kept(v * scale, keep[k] & <uint32_t>(1 - (relu & (v <= 0))))  # NaN is kept


def dropout_channels_forward(const float[:, :, ::1] x, float[:, :, ::1] y, uint32_t k0, uint32_t k1,
                             uint32_t thr, float scale, bint relu, Py_ssize_t offset=0):
    """Per-channel dropout of ``x`` viewed as (N, S, C): noise index ``offset + n * C + c``; one task a sample.
    (Training's dropout backward is this on ``dy``.)"""
    cdef Py_ssize_t n = x.shape[0], s = x.shape[1], c = x.shape[2], t
    if n == 0 or s == 0 or c == 0:
        return
    cdef const float* xp = &x[0, 0, 0]
    cdef float* yp = &y[0, 0, 0]
    for t in prange(n, nogil=True, schedule="static", num_threads=team_size(n * s * c, n)):
        _dropout_channels_sample(xp + t * s * c, yp + t * s * c, s, c, <uint32_t>(offset + t * c), k0, k1, thr,
                                 scale, relu)


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


def softmax_forward(cnp.ndarray x not None, cnp.ndarray y not None):
    """Softmax (max-subtracted) over the last axis of ``x``, into ``y`` of its shape (C-contiguous float32)."""
    cdef const float* xp = f32_data(x, -1, False, "softmax_forward: x")
    cdef float* yp = f32_data(y, -1, True, "softmax_forward: y")
    cdef Py_ssize_t size = same_size(x, y, "softmax_forward"), r
    cdef Py_ssize_t k = x.shape[x.ndim - 1] if x.ndim else 1
    cdef Py_ssize_t ky = y.shape[y.ndim - 1] if y.ndim else 1
    if ky != k:
        raise ValueError(f"softmax_forward: y has shape {(<object>y).shape}, x {(<object>x).shape}: expected x's")
    if size == 0:
        return
    cdef Py_ssize_t rows = size // k
    cdef int nthreads = team_size(size, rows)
    if nthreads == 1:  # no OpenMP region: one costs about 1 us even on one thread (a prediction's last step)
        with nogil:
            for r in range(rows):
                _softmax_row(xp + r * k, yp + r * k, k)
        return
    for r in prange(rows, nogil=True, schedule="static", num_threads=nthreads):
        _softmax_row(xp + r * k, yp + r * k, k)


cdef inline void _softmax_row(const float* x, float* y, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef float m = x[0], total = 0, e, inv
    for j in range(1, k):
        if x[j] > m:
            m = x[j]
    for j in range(k):
        e = expf(x[j] - m)
        y[j] = e
        total = total + e
    inv = 1 / total
    for j in range(k):
        y[j] = y[j] * inv


def batch_norm_forward(const float[:, ::1] x, const float[::1] mean, const float[::1] scale,
                       const float[::1] beta, float[:, ::1] y):
    """``(x - mean) * scale + beta`` per channel (the last axis), ``scale = gamma / sqrt(var + eps)``."""
    cdef Py_ssize_t rows = x.shape[0], c = x.shape[1], r, k
    for r in prange(rows, nogil=True, schedule="static", num_threads=team_size(rows * c, rows)):
        for k in range(c):
            y[r, k] = (x[r, k] - mean[k]) * scale[k] + beta[k]


# --- training ------------------------------------------------------------------------------------------------------
# Backward passes, Gaussian noise, batch normalization with batch statistics and the fused losses: the contract's
# training ops (dropout's backward is dropout_forward / dropout_channels_forward on dy, the same masks).

# A restrict-qualified pointer (Cython has no keyword for it): the output of a loop over a row's channels, so that
# GCC does not test it for overlap with the inputs on every row.
cdef extern from *:
    ctypedef float* float_restrict "float* __restrict__"
    ctypedef double* double_restrict "double* __restrict__"

cdef enum:
    ROWS_CHUNK = 32768  # elements per task of the batch statistics: rows per chunk = ROWS_CHUNK // C (as Numba's)
    NOISE_WORK = 32  # Gaussian noise costs about as much per element as this many element operations (log, cos)

# A bare 1 in a float expression is a double in Cython's C (1.0), which would round twice: the float32 kernels use
# this float literal.
cdef extern from *:
    const float ONE "1.0f"
cdef double INV_2_32 = 1.0 / 4294967296.0
cdef double TWO_PI = 2.0 * 3.141592653589793  # 2 * np.pi, as the reference (doubling is exact)


cdef inline void _pass_positive_run(const float* dy, const float* y, float_restrict dx, Py_ssize_t count,
                                    float scale) noexcept nogil:
    """``dx = dy * scale`` where ``y > 0``, else +0.0 (``dy * 1`` is ``dy``, bit for bit). The choice is a select on
    the bits (``_kept``): written as a conditional, GCC kept it control flow, and the random signs of ``y`` made it
    20x slower than Numba's."""
    cdef Py_ssize_t i
    for i in range(count):
        dx[i] = _kept(dy[i] * scale, <uint32_t>(y[i] > 0))


# The training kernels below run a region's tasks on the calling thread when one thread does the work (team_size 1):
# an OpenMP region of one thread still cost ~1 us, a third of a loss's time on a batch of 128.

def pass_positive(const float[::1] dy, const float[::1] y, float scale, float[::1] dx):
    """ReLU's backward (``scale`` 1) and the fused ReLU-dropout's (``scale`` the dropout scale): ``dy * scale``
    where ``y > 0``, else 0. A NaN ``y`` passes nothing (the reference's ``np.where(y > 0, ...)``)."""
    cdef Py_ssize_t n = dy.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* dyp = &dy[0] if n else NULL
    cdef const float* yp = &y[0] if n else NULL
    cdef float* dxp = &dx[0] if n else NULL
    cdef int nthreads = team_size(n, tasks)
    if nthreads == 1:
        with nogil:
            _pass_positive_run(dyp, yp, dxp, n, scale)
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        lo = t * CHUNK
        _pass_positive_run(dyp + lo, yp + lo, dxp + lo, min(n, lo + CHUNK) - lo, scale)


cdef inline void _sigmoid_backward_run(const float* dy, const float* y, float_restrict dx,
                                       Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    cdef float v
    for i in range(count):
        v = y[i]
        dx[i] = dy[i] * v * (ONE - v)


def sigmoid_backward(const float[::1] dy, const float[::1] y, float[::1] dx):
    """``dy * y * (1 - y)``, the reference's float32 expression in its order (bit-identical to it)."""
    cdef Py_ssize_t n = dy.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* dyp = &dy[0] if n else NULL
    cdef const float* yp = &y[0] if n else NULL
    cdef float* dxp = &dx[0] if n else NULL
    cdef int nthreads = team_size(n, tasks)
    if nthreads == 1:
        with nogil:
            _sigmoid_backward_run(dyp, yp, dxp, n)
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        lo = t * CHUNK
        _sigmoid_backward_run(dyp + lo, yp + lo, dxp + lo, min(n, lo + CHUNK) - lo)


cdef inline void _softmax_backward_rows(const float* dy, const float* y, float_restrict dx, Py_ssize_t r0,
                                        Py_ssize_t r1, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef float dot
    for r in range(r0, r1):
        dot = _dot(dy + r * k, y + r * k, k)
        for j in range(r * k, (r + 1) * k):
            dx[j] = y[j] * (dy[j] - dot)


def softmax_backward(const float[:, ::1] dy, const float[:, ::1] y, float[:, ::1] dx):
    """``y * (dy - sum(dy * y))`` per row; each row's sum in float32 lanes (see ``_dot``), by one task."""
    cdef Py_ssize_t rows = dy.shape[0], k = dy.shape[1], r
    if rows == 0 or k == 0:
        return
    cdef const float* dyp = &dy[0, 0]
    cdef const float* yp = &y[0, 0]
    cdef float* dxp = &dx[0, 0]
    cdef int nthreads = team_size(3 * rows * k, rows)
    if nthreads == 1:
        with nogil:
            _softmax_backward_rows(dyp, yp, dxp, 0, rows, k)
        return
    for r in prange(rows, nogil=True, schedule="static", num_threads=nthreads):
        _softmax_backward_rows(dyp, yp, dxp, r, r + 1, k)


# Gaussian noise: log and cos in float64 without libm, so that GCC vectorizes them (glibc's scalar log and cos took
# 30 ns an element here, more than Numba's whole kernel). fdlibm's algorithms (e_log.c, k_cos.c, k_sin.c; errors
# below 1 ulp of float64) on branch-free bit operations: after the rounding to float32, the result equals the
# reference's (glibc's log and cos) but where a float64 last-bit difference crosses a float32 rounding boundary.
cdef enum:
    NOISE_BLOCK = 256  # elements whose -2 ln(u1) and cos(2 pi u2) are computed (vectorized) before the square roots

cdef double _MAGIC_INT = 4503599627370496.0  # 2**52: its bits | a 32-bit integer are that integer + 2**52
cdef double _MAGIC_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding it rounds a small double to an integer
cdef double _LN2_HI = 6.93147180369123816490e-01
cdef double _LN2_LO = 1.90821492927058770002e-10
cdef double _LG1 = 6.666666666666735130e-01
cdef double _LG2 = 3.999999999940941908e-01
cdef double _LG3 = 2.857142874366239149e-01
cdef double _LG4 = 2.222219843214978396e-01
cdef double _LG5 = 1.818357216161805012e-01
cdef double _LG6 = 1.531383769920937332e-01
cdef double _LG7 = 1.479819860511658591e-01
cdef double _TWO_OVER_PI = 6.36619772367581382433e-01
cdef double _PIO2_1 = 1.57079632673412561417e+00  # the first 33 bits of pi / 2: k * _PIO2_1 is exact for k <= 4
cdef double _PIO2_1T = 6.07710050650619224932e-11  # pi / 2 - _PIO2_1
cdef double _C1 = 4.16666666666666019037e-02
cdef double _C2 = -1.38888888888741095749e-03
cdef double _C3 = 2.48015872894767294178e-05
cdef double _C4 = -2.75573143513906633035e-07
cdef double _C5 = 2.08757232129817482790e-09
cdef double _C6 = -1.13596475577881948265e-11
cdef double _S1 = -1.66666666666666324348e-01
cdef double _S2 = 8.33333333332248946124e-03
cdef double _S3 = -1.98412698298579493134e-04
cdef double _S4 = 2.75573137070700676789e-06
cdef double _S5 = -2.50507602534068634195e-08
cdef double _S6 = 1.58969099521155010221e-10


# sqrt is correctly rounded, vector or scalar; but with errno (C's default) GCC calls libm's scalar sqrt, which was a
# third of the noise's time (and its per-function no-math-errno option left the call in place): vectors, explicitly.
cdef extern from *:
    """
    #include <math.h>
    #if defined(__AVX__)
    #include <immintrin.h>
    #elif defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static inline void dc_sqrt_times(const double* t, const double* c, float* z, unsigned n) {
        unsigned i = 0;
    #if defined(__AVX__)
        for (; i + 4 <= n; i += 4)
            _mm_storeu_ps(z + i, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sqrt_pd(_mm256_loadu_pd(t + i)),
                                                               _mm256_loadu_pd(c + i))));
    #elif defined(__SSE2__)
        for (; i + 2 <= n; i += 2)
            _mm_storel_pi((__m64*)(z + i), _mm_cvtpd_ps(_mm_mul_pd(_mm_sqrt_pd(_mm_loadu_pd(t + i)),
                                                                   _mm_loadu_pd(c + i))));
    #endif
        for (; i < n; ++i) z[i] = (float)(sqrt(t[i]) * c[i]);
    }
    """
    void _sqrt_times "dc_sqrt_times"(const double* t, const double* c, float* z, unsigned n) nogil


cdef inline uint64_t _bits(double d) noexcept nogil:
    cdef uint64_t b
    memcpy(&b, &d, 8)
    return b


cdef inline double _from_bits(uint64_t b) noexcept nogil:
    cdef double d
    memcpy(&d, &b, 8)
    return d


cdef inline double _pick_d(bint c, double a, double b) noexcept nogil:
    """``a if c else b`` on the bits: GCC vectorizes this, where it kept the conditional as control flow."""
    cdef uint64_t m = <uint64_t>0 - <uint64_t>c
    return _from_bits((_bits(a) & m) | (_bits(b) & ~m))


cdef inline float _pick_f(bint c, float a, float b) noexcept nogil:
    """``a if c else b`` on the bits (see ``_pick_d``)."""
    cdef uint32_t m = <uint32_t>0 - <uint32_t>c, ba, bb
    memcpy(&ba, &a, 4)
    memcpy(&bb, &b, 4)
    ba = (ba & m) | (bb & ~m)
    memcpy(&a, &ba, 4)
    return a


cdef inline double _u32_double(uint64_t v) noexcept nogil:
    """``v`` (< 2**32) as a double, exactly, by integer and float64 operations AVX2 has (it converts no unsigned or
    64-bit integers)."""
    return _from_bits(_bits(_MAGIC_INT) | v) - _MAGIC_INT


cdef inline double _log_positive(double x) noexcept nogil:
    """``ln(x)`` for a positive normal ``x`` or NaN (fdlibm's e_log.c without its other special cases):
    ``x = 2**k (1 + f)`` with ``1 + f`` in [sqrt(2)/2, sqrt(2)), ``s = f / (2 + f)``, ``ln(1 + f) = f - s (f - R(s))``
    with ``R`` its polynomial, written as ``f - (f**2 / 2 - s (f**2 / 2 + R))``."""
    cdef uint64_t b = _bits(x), hx = b >> 32, i
    cdef uint64_t mant = hx & 0x000fffff
    cdef double k, f, s, z, w, r, hfsq
    i = (mant + 0x95f64) & 0x100000  # the mantissa is above sqrt(2): halve it, one more in the exponent
    k = _u32_double((hx >> 20) + (i >> 20)) - 1023
    f = _from_bits(((mant | (i ^ 0x3ff00000)) << 32) | (b & <uint64_t>0xffffffff)) - 1
    s = f / (2 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    # + (x - x): +0 for a finite x, NaN for a NaN (whose bits the steps above would turn into a finite value)
    return (k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)) + (x - x)


cdef inline double _cos_turn(double a) noexcept nogil:
    """``cos(a)`` for ``0 <= a < 2 pi``: ``a = k pi / 2 + r`` with ``|r| <= pi / 4`` (Cody-Waite, two parts of
    pi / 2: ``r`` to ~1e-26), then fdlibm's cos or sin polynomial on ``r`` and the quadrant's sign."""
    cdef double t = a * _TWO_OVER_PI + _MAGIC_ROUND
    cdef uint64_t q = _bits(t), pick
    cdef double k = t - _MAGIC_ROUND
    cdef double r = (a - k * _PIO2_1) - k * _PIO2_1T
    cdef double z = r * r, hz, w, c, sn
    hz = 0.5 * z
    w = 1 - hz
    c = w + (((1 - w) - hz) + z * (z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))))
    sn = r + z * r * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    # quadrant k mod 4: cos r, -sin r, -cos r, sin r; chosen on the bits (a conditional would not vectorize)
    pick = <uint64_t>0 - (q & 1)
    return _from_bits(((_bits(sn) & pick) | (_bits(c) & ~pick)) ^ (((q + 1) & 2) << 62))


cdef inline void _gaussian_run(float* z, uint32_t j2, Py_ssize_t count, uint32_t k0, uint32_t k1) noexcept nogil:
    """``count`` noise values whose first hash index (``2 j``, low 32 bits) is ``j2``: the reference's float64
    Box-Muller expression per element, rounded once to float32. By blocks: ``-2 ln(u1)`` and ``cos(2 pi u2)``,
    then ``sqrt(-2 ln(u1)) * cos(2 pi u2)``, both vectorized."""
    cdef double t[NOISE_BLOCK]
    cdef double c[NOISE_BLOCK]
    cdef uint32_t i, b, b0, m, n = <uint32_t>count, jj
    cdef uint64_t h1, h2
    for b in range((n + NOISE_BLOCK - 1) // NOISE_BLOCK):
        b0 = b * NOISE_BLOCK
        m = min(<uint32_t>NOISE_BLOCK, n - b0)
        for i in range(m):
            jj = j2 + 2 * (b0 + i)
            h1 = _mix32(_mix32(jj ^ k0) + k1)
            h2 = _mix32(_mix32((jj + 1) ^ k0) + k1)
            # u1 = (h1 + 1) / 2**32 in (0, 1] (never ln 0), u2 = h2 / 2**32 in [0, 1): both exact
            t[i] = -2.0 * _log_positive((_u32_double(h1) + 1.0) * INV_2_32)
            c[i] = _cos_turn(TWO_PI * (_u32_double(h2) * INV_2_32))
        _sqrt_times(t, c, z + b0, m)


def gaussian_noise(float[::1] z, uint32_t k0, uint32_t k1, Py_ssize_t offset=0):
    """Standard normal noise: element ``i`` from the hash values at stream indices ``2 (offset + i)`` and
    ``2 (offset + i) + 1`` (low 32 bits), as :func:`dropcore.kernels.reference.activation.gaussian_noise`."""
    cdef Py_ssize_t n = z.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef float* zp = &z[0] if n else NULL
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n * NOISE_WORK, tasks)):
        lo = t * CHUNK
        _gaussian_run(zp + lo, <uint32_t>(2 * (offset + lo)), min(n, lo + CHUNK) - lo, k0, k1)


# The noise layers' formulas on these draws (GaussianDropout, GaussianNoise, AlphaDropout), as the reference writes
# them: each product goes to a buffer of its own before the add, so that GCC cannot contract the two into one FMA
# (-ffp-contract=fast is its default): the result keeps the reference's two float32 roundings, bit for bit.

cdef inline void _noise_apply_run(const float* x, float* y, float* mult, uint32_t j2, Py_ssize_t count,
                                  uint32_t k0, uint32_t k1, float s, int add) noexcept nogil:
    """``count`` elements whose first hash index (``2 j``) is ``j2``: ``y = x + z s`` (``add``) or ``y = x m`` with
    ``m = z s + 1`` (written to ``mult`` unless it is NULL), ``z`` the standard normal noise of
    :func:`gaussian_noise`, by blocks of ``NOISE_BLOCK``."""
    cdef float z[NOISE_BLOCK]
    cdef uint32_t i, b, b0, m, n = <uint32_t>count
    cdef float v
    for b in range((n + NOISE_BLOCK - 1) // NOISE_BLOCK):
        b0 = b * NOISE_BLOCK
        m = min(<uint32_t>NOISE_BLOCK, n - b0)
        _gaussian_run(z, j2 + 2 * b0, m, k0, k1)
        for i in range(m):
            z[i] = z[i] * s
        if add:
            for i in range(m):
                y[b0 + i] = x[b0 + i] + z[i]
        elif mult != NULL:
            for i in range(m):
                v = z[i] + ONE
                mult[b0 + i] = v
                y[b0 + i] = x[b0 + i] * v
        else:
            for i in range(m):
                y[b0 + i] = x[b0 + i] * (z[i] + ONE)


def gaussian_noise_apply(const float[::1] x, float[::1] y, float[::1] mult, uint32_t k0, uint32_t k1, float s,
                         bint add, Py_ssize_t offset=0):
    """GaussianNoise (``add``: ``y = x + z s``) or GaussianDropout (``y = x m``, ``m = z s + 1``, written to
    ``mult`` unless it is empty) in one pass, element ``i``'s noise ``z`` that of :func:`gaussian_noise` at stream
    index ``offset + i``."""
    cdef Py_ssize_t n = x.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* xp = &x[0] if n else NULL
    cdef float* yp = &y[0] if n else NULL
    cdef float* mp = &mult[0] if n and mult.shape[0] == n else NULL
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n * NOISE_WORK, tasks)):
        lo = t * CHUNK
        _noise_apply_run(xp + lo, yp + lo, mp + lo if mp != NULL else NULL, <uint32_t>(2 * (offset + lo)),
                         min(n, lo + CHUNK) - lo, k0, k1, s, add)


cdef inline void _multiply_run(const float* a, const float* b, float_restrict out, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        out[i] = a[i] * b[i]


def multiply(const float[::1] a, const float[::1] b, float[::1] out):
    """``out = a * b`` element by element (GaussianDropout's backward: ``dy`` times the forward's multiplier)."""
    cdef Py_ssize_t n = a.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* ap = &a[0] if n else NULL
    cdef const float* bp = &b[0] if n else NULL
    cdef float* op = &out[0] if n else NULL
    cdef int nthreads = team_size(n, tasks)
    if nthreads == 1:
        with nogil:
            _multiply_run(ap, bp, op, n)
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        lo = t * CHUNK
        _multiply_run(ap + lo, bp + lo, op + lo, min(n, lo + CHUNK) - lo)


cdef inline void _alpha_run(const float* x, float* y, uint32_t base, Py_ssize_t count, uint32_t k0, uint32_t k1,
                            uint32_t thr, float a, float b, float c) noexcept nogil:
    """AlphaDropout of ``count`` elements whose noise indices start at ``base``: ``x a + b`` where kept, ``c``
    elsewhere (the product buffered, see above; the choice on the bits, so that it vectorizes)."""
    cdef float t[NOISE_BLOCK]
    cdef uint32_t i, blk, b0, m, n = <uint32_t>count
    for blk in range((n + NOISE_BLOCK - 1) // NOISE_BLOCK):
        b0 = blk * NOISE_BLOCK
        m = min(<uint32_t>NOISE_BLOCK, n - b0)
        for i in range(m):
            t[i] = x[b0 + i] * a
        for i in range(m):
            y[b0 + i] = _pick_f(_keep(base + b0 + i, k0, k1, thr), t[i] + b, c)


def alpha_dropout_forward(const float[::1] x, float[::1] y, uint32_t k0, uint32_t k1, uint32_t thr, float a,
                          float b, float c, Py_ssize_t offset=0):
    """Per-element AlphaDropout (Dropout's keep bits, index ``offset`` + flat index): ``x a + b`` kept, ``c``
    dropped. Its backward is :func:`dropout_forward` on ``dy`` with ``a`` for the scale."""
    cdef Py_ssize_t n = x.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* xp = &x[0] if n else NULL
    cdef float* yp = &y[0] if n else NULL
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n, tasks)):
        lo = t * CHUNK
        _alpha_run(xp + lo, yp + lo, <uint32_t>(offset + lo), min(n, lo + CHUNK) - lo, k0, k1, thr, a, b, c)


cdef inline void _alpha_channels_sample(const float* x, float* y, Py_ssize_t s, Py_ssize_t c, uint32_t base,
                                        uint32_t k0, uint32_t k1, uint32_t thr, float a, float b,
                                        float d) noexcept nogil:
    """One sample (``s`` rows of ``c`` channels) of per-channel AlphaDropout, channel ``k``'s noise index ``base +
    k``; each block of channels' bits hashed once, as ``_dropout_channels_sample``."""
    cdef uint32_t keep[KEEP_BLOCK]
    cdef float t[KEEP_BLOCK]
    cdef uint32_t k, m, kb
    cdef Py_ssize_t si
    for kb in range(<uint32_t>((c + KEEP_BLOCK - 1) // KEEP_BLOCK)):
        m = <uint32_t>min(<Py_ssize_t>KEEP_BLOCK, c - kb * KEEP_BLOCK)
        for k in range(m):
            keep[k] = _keep(base + kb * KEEP_BLOCK + k, k0, k1, thr)
        for si in range(s):
            for k in range(m):
                t[k] = x[si * c + kb * KEEP_BLOCK + k] * a
            for k in range(m):
                y[si * c + kb * KEEP_BLOCK + k] = _pick_f(keep[k], t[k] + b, d)


def alpha_dropout_channels_forward(const float[:, :, ::1] x, float[:, :, ::1] y, uint32_t k0, uint32_t k1,
                                   uint32_t thr, float a, float b, float c, Py_ssize_t offset=0):
    """Per-channel AlphaDropout of ``x`` viewed as (N, S, C): noise index ``offset + n * C + c``; one task a
    sample. Its backward is :func:`dropout_channels_forward` on ``dy`` with ``a`` for the scale."""
    cdef Py_ssize_t n = x.shape[0], s = x.shape[1], ch = x.shape[2], t
    if n == 0 or s == 0 or ch == 0:
        return
    cdef const float* xp = &x[0, 0, 0]
    cdef float* yp = &y[0, 0, 0]
    for t in prange(n, nogil=True, schedule="static", num_threads=team_size(n * s * ch, n)):
        _alpha_channels_sample(xp + t * s * ch, yp + t * s * ch, s, ch, <uint32_t>(offset + t * ch), k0, k1, thr,
                               a, b, c)


# DropBlock: per sample, the corners' bits (hashed once each), their b x b blocks as two running ORs (along the rows,
# then down the columns: O(H W C b), not b**2), the kept units counted per channel, then y = x * m with m = 0 in a
# block and (float)(H W / kept) elsewhere: the reference's multiplier, its product rounded once, NaN kept as NaN * 0.

cdef inline void _drop_block_sample(const float* x, float* y, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                                    Py_ssize_t bs, uint32_t base, uint32_t k0, uint32_t k1, uint32_t thr,
                                    unsigned char* cor, unsigned char* hor, unsigned char* drp, Py_ssize_t* cnt,
                                    float* scale) noexcept nogil:
    """One sample (H, W, C) of DropBlock, element ``i``'s noise index ``base + i``; ``cor`` ((H-b+1) (W-b+1) C),
    ``hor`` ((H-b+1) W C), ``drp`` (H W C), ``cnt`` and ``scale`` (C): this task's buffers."""
    cdef Py_ssize_t vh = h - bs + 1, vw = w - bs + 1, i, j, k, a, e, lo, hi
    cdef unsigned char* row
    cdef const unsigned char* src
    for a in range(vh):
        for e in range(vw):
            row = cor + (a * vw + e) * c
            for k in range(c):
                row[k] = not _keep(<uint32_t>(base + (a * w + e) * c + k), k0, k1, thr)
    for a in range(vh):  # hor[a, j] = OR of the corners (a, e) whose block covers column j
        for j in range(w):
            row = hor + (a * w + j) * c
            for k in range(c):
                row[k] = 0
            lo, hi = max(<Py_ssize_t>0, j - bs + 1), min(j, vw - 1)
            for e in range(lo, hi + 1):
                src = cor + (a * vw + e) * c
                for k in range(c):
                    row[k] = row[k] | src[k]
    for k in range(c):
        cnt[k] = 0
    for i in range(h):  # drp[i, j] = OR of hor[a, j] over the corner rows a whose block covers row i
        lo, hi = max(<Py_ssize_t>0, i - bs + 1), min(i, vh - 1)
        for j in range(w):
            row = drp + (i * w + j) * c
            for k in range(c):
                row[k] = 0
            for a in range(lo, hi + 1):
                src = hor + (a * w + j) * c
                for k in range(c):
                    row[k] = row[k] | src[k]
            for k in range(c):
                cnt[k] += 1 - row[k]
    for k in range(c):
        scale[k] = <float>(<double>(h * w) / <double>cnt[k]) if cnt[k] > 0 else 0
    for i in range(h * w):
        for k in range(c):
            y[i * c + k] = x[i * c + k] * _pick_f(drp[i * c + k], 0, scale[k])


def drop_block2d_forward(const float[:, :, :, ::1] x, float[:, :, :, ::1] y, Py_ssize_t block_size, uint32_t k0,
                         uint32_t k1, uint32_t thr, Py_ssize_t offset=0):
    """DropBlock of ``x`` (N, H, W, C) with blocks of ``block_size`` (at most H and W: the caller checks), corner
    bits kept above ``thr`` (``keep_threshold(gamma)``), noise index ``offset`` + flat index; one task a sample,
    each thread's buffers allocated once. (Its backward is this on ``dy``: the same multiplier.)"""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3], t, per = h * w * c
    if n == 0 or per == 0:
        return
    cdef Py_ssize_t vh = h - block_size + 1, vw = w - block_size + 1
    cdef Py_ssize_t head = c * (sizeof(Py_ssize_t) + sizeof(float))  # cnt, then scale
    cdef Py_ssize_t stride = (head + vh * vw * c + vh * w * c + per + 63) // 64 * 64
    cdef int nthreads = team_size(8 * n * per, n)
    cdef unsigned char* buf = <unsigned char*>malloc(nthreads * stride)
    cdef unsigned char* mine
    if buf == NULL:
        raise MemoryError(f"drop_block2d: {nthreads * stride} bytes of buffers")
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef float* yp = &y[0, 0, 0, 0]
    try:
        for t in prange(n, nogil=True, schedule="static", num_threads=nthreads):
            mine = buf + threadid() * stride
            _drop_block_sample(xp + t * per, yp + t * per, h, w, c, block_size, <uint32_t>(offset + t * per), k0,
                               k1, thr, mine + head, mine + head + vh * vw * c,
                               mine + head + vh * vw * c + vh * w * c, <Py_ssize_t*>mine,
                               <float*>(mine + c * sizeof(Py_ssize_t)))
    finally:
        free(buf)


# MaxPoolingDropout2D: one task a sample, channels innermost (contiguous, channels-last), each thread's buffers
# allocated once. Window tap k = i * pw + j of output (oy, ox) reads input (oy sh + i - pt, ox sw + j - pl).

cdef extern from *:
    const float NEG_INF "(-__builtin_inff())"
    const float NAN_F "__builtin_nanf(\"\")"


cdef inline void _mpd_train_sample(const float* x, float* y, int* arg, unsigned char* keep, float* best,
                                   int* bi, unsigned char* anyk, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                                   Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh,
                                   Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, uint32_t base, uint32_t k0,
                                   uint32_t k1, uint32_t thr) noexcept nogil:
    """The training rule on one sample: the keep bits hashed once, then per output pixel NumPy's argmax over the
    taps (a dropped or padded tap is -inf; the first maximum wins, a NaN wins and stops it) for each channel."""
    cdef Py_ssize_t i, oy, ox, ti, tj, iy, ix, ch, ob
    cdef int k
    cdef float v, b
    cdef unsigned char kk
    cdef bint upd
    cdef const float* xr
    cdef const unsigned char* kr
    for i in range(h * w * c):
        keep[i] = _keep(<uint32_t>(base + i), k0, k1, thr)
    for oy in range(oh):
        for ox in range(ow):
            ob = (oy * ow + ox) * c
            for ch in range(c):
                best[ch] = NEG_INF
                bi[ch] = 0
                anyk[ch] = 0
            for ti in range(ph):
                iy = oy * sh + ti - pt
                if iy < 0 or iy >= h:
                    continue  # a padded tap is -inf: it never takes the lead (tap 0's -inf is the start)
                for tj in range(pw):
                    ix = ox * sw + tj - pl
                    if ix < 0 or ix >= w:
                        continue
                    k = <int>(ti * pw + tj)
                    xr = x + (iy * w + ix) * c
                    kr = keep + (iy * w + ix) * c
                    for ch in range(c):
                        kk = kr[ch]
                        v = _pick_f(kk, xr[ch], NEG_INF)
                        b = best[ch]
                        upd = (k == 0) | ((b == b) & ((v > b) | (v != v)))
                        best[ch] = _pick_f(upd, v, b)
                        bi[ch] = k if upd else bi[ch]
                        anyk[ch] = anyk[ch] | kk
            for ch in range(c):
                y[ob + ch] = _pick_f(anyk[ch], best[ch], 0)
                arg[ob + ch] = bi[ch] if anyk[ch] else -1


cdef inline void _scatter_taps(const float* dwin, float* dx, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                               Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh,
                               Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """``dx`` (one sample, zeroed here) from per-window gradients ``dwin`` (OH, OW, C, K): each pixel's taps added in
    tap order from 0, as the reference's ``_scatter`` (the same float32 sums)."""
    cdef Py_ssize_t i, oy, ox, ti, tj, iy, ix, ch, kk = ph * pw, k
    cdef float* dr
    cdef const float* gr
    for i in range(h * w * c):
        dx[i] = 0
    for ti in range(ph):
        for tj in range(pw):
            k = ti * pw + tj
            for oy in range(oh):
                iy = oy * sh + ti - pt
                if iy < 0 or iy >= h:
                    continue
                for ox in range(ow):
                    ix = ox * sw + tj - pl
                    if ix < 0 or ix >= w:
                        continue
                    dr = dx + (iy * w + ix) * c
                    gr = dwin + (oy * ow + ox) * c * kk + k
                    for ch in range(c):
                        dr[ch] = dr[ch] + gr[ch * kk]


cdef inline void _sort_taps(float* v, int* idx, Py_ssize_t k) noexcept nogil:
    """Stable insertion sort of ``v[:k]`` ascending with NaN last (NumPy's ``argsort(kind="stable")`` order),
    ``idx`` permuted alike: a window has a few taps, for which this beats a sorting network's fixed compares."""
    cdef Py_ssize_t i, j
    cdef float a, p
    cdef int t
    for i in range(1, k):
        a = v[i]
        t = idx[i]
        j = i
        while j > 0:
            p = v[j - 1]
            if not (p > a or (p != p and a == a)):
                break
            v[j] = p
            idx[j] = idx[j - 1]
            j -= 1
        v[j] = a
        idx[j] = t


cdef inline void _wpool_sample(const float* x, const float* dy, float* out, float* dwin, const float* wtab,
                               float* v, int* idx, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
                               Py_ssize_t ow, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """Weighted pooling of one sample: per window and channel the taps sorted (padding as NaN), then with ``dy``
    NULL ``out[o] = sum_i w_i a_i`` (float32, in sorted order), else the backward: ``dwin[o, tap_i] = dy[o] w_i``
    and ``out`` (dx) scattered from it. ``wtab``: :func:`pool_weights` as float32, ``(K + 1, K)``."""
    cdef Py_ssize_t oy, ox, ti, tj, iy, ix, ch, kk = ph * pw, i, n, o
    cdef float acc, wt, term, g
    for oy in range(oh):
        for ox in range(ow):
            for ch in range(c):
                o = (oy * ow + ox) * c + ch
                n = 0
                for ti in range(ph):
                    iy = oy * sh + ti - pt
                    for tj in range(pw):
                        ix = ox * sw + tj - pl
                        idx[ti * pw + tj] = <int>(ti * pw + tj)
                        if iy < 0 or iy >= h or ix < 0 or ix >= w:
                            v[ti * pw + tj] = NAN_F
                        else:
                            v[ti * pw + tj] = x[(iy * w + ix) * c + ch]
                            n += 1
                _sort_taps(v, idx, kk)
                if dy == NULL:
                    acc = 0
                    for i in range(kk):
                        wt = wtab[n * kk + i]
                        term = v[i] * wt if wt != 0 else 0
                        acc = term if i == 0 else acc + term
                    out[o] = acc
                else:
                    g = dy[o]
                    for i in range(kk):
                        dwin[o * kk + idx[i]] = g * wtab[n * kk + i]
    if dy != NULL:
        _scatter_taps(dwin, out, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)


def max_pool_dropout2d_forward(const float[:, :, :, ::1] x, float[:, :, :, ::1] y, int[:, :, :, ::1] arg,
                               Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                               Py_ssize_t pl, uint32_t k0, uint32_t k1, uint32_t thr, Py_ssize_t offset=0):
    """MaxPoolingDropout's training rule (``reference.dropout.max_pool_dropout2d``): ``y`` and ``arg`` (N, OH, OW,
    C), keep bit of input element ``i`` at noise index ``offset + i``."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3], t, per = h * w * c
    cdef Py_ssize_t oh = y.shape[1], ow = y.shape[2], outs = oh * ow * c
    if n == 0 or per == 0 or outs == 0:
        return
    cdef Py_ssize_t stride = (c * (sizeof(float) + sizeof(int) + 1) + per + 63) // 64 * 64
    cdef int nthreads = team_size(4 * n * per, n)
    cdef unsigned char* buf = <unsigned char*>malloc(nthreads * stride)
    cdef unsigned char* mine
    if buf == NULL:
        raise MemoryError(f"max_pool_dropout2d: {nthreads * stride} bytes of buffers")
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef float* yp = &y[0, 0, 0, 0]
    cdef int* ap = &arg[0, 0, 0, 0]
    try:
        for t in prange(n, nogil=True, schedule="static", num_threads=nthreads):
            mine = buf + threadid() * stride
            _mpd_train_sample(xp + t * per, yp + t * outs, ap + t * outs, mine + c * (sizeof(float) + sizeof(int) + 1),
                              <float*>mine, <int*>(mine + c * sizeof(float)),
                              mine + c * (sizeof(float) + sizeof(int)), h, w, c, oh, ow, ph, pw, sh, sw, pt, pl,
                              <uint32_t>(offset + t * per), k0, k1, thr)
    finally:
        free(buf)


def max_pool_dropout2d_backward(const float[:, :, :, ::1] dy, const int[:, :, :, ::1] arg, float[:, :, :, ::1] dx,
                                Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                                Py_ssize_t pl):
    """Each window's ``dy`` to its tap ``arg`` (none where -1), added in tap order: the reference's sums."""
    cdef Py_ssize_t n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3], t, per = h * w * c
    cdef Py_ssize_t oh = dy.shape[1], ow = dy.shape[2], outs = oh * ow * c, kk = ph * pw, o, k
    if n == 0 or per == 0:
        return
    cdef Py_ssize_t stride = (outs * kk * sizeof(float) + 63) // 64 * 64
    cdef int nthreads = team_size(2 * n * (per + outs * kk), n)
    cdef unsigned char* buf = <unsigned char*>malloc(nthreads * stride + 64)
    cdef float* dwin
    if buf == NULL:
        raise MemoryError(f"max_pool_dropout2d_backward: {nthreads * stride} bytes of buffers")
    cdef const float* gp = &dy[0, 0, 0, 0] if outs else NULL
    cdef const int* ap = &arg[0, 0, 0, 0] if outs else NULL
    cdef float* dxp = &dx[0, 0, 0, 0]
    try:
        for t in prange(n, nogil=True, schedule="static", num_threads=nthreads):
            dwin = <float*>(buf + threadid() * stride)
            for o in range(outs):
                for k in range(kk):
                    dwin[o * kk + k] = gp[t * outs + o] if ap[t * outs + o] == k else 0
            _scatter_taps(dwin, dxp + t * per, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    finally:
        free(buf)


def weighted_pool2d(const float[:, :, :, ::1] x, const float[:, :, :, ::1] dy, float[:, :, :, ::1] out,
                    const float[:, ::1] wtab, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t oh, Py_ssize_t ow, bint backward):
    """Weighted pooling of ``x``: ``out`` (N, OH, OW, C) its forward, or with ``backward`` ``out`` (shaped like
    ``x``) its input gradient for ``dy`` (the taps sorted again). ``wtab``: ``pool_weights`` in float32."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3], t, per = h * w * c
    cdef Py_ssize_t outs = oh * ow * c, kk = ph * pw
    if n == 0 or per == 0 or outs == 0:
        if backward and n and per:
            out[...] = 0
        return
    cdef Py_ssize_t stride = (kk * (sizeof(float) + sizeof(int)) + (outs * kk * sizeof(float) if backward else 0)
                              + 63) // 64 * 64
    cdef int nthreads = team_size(kk * 8 * n * outs, n)
    cdef unsigned char* buf = <unsigned char*>malloc(nthreads * stride)
    cdef unsigned char* mine
    if buf == NULL:
        raise MemoryError(f"weighted_pool2d: {nthreads * stride} bytes of buffers")
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* gp = &dy[0, 0, 0, 0] if backward else NULL
    cdef float* op = &out[0, 0, 0, 0]
    cdef const float* wp = &wtab[0, 0]
    cdef Py_ssize_t ostep = per if backward else outs
    try:
        for t in prange(n, nogil=True, schedule="static", num_threads=nthreads):
            mine = buf + threadid() * stride
            _wpool_sample(xp + t * per, gp + t * outs if backward else NULL, op + t * ostep,
                          <float*>(mine + kk * (sizeof(float) + sizeof(int))), wp, <float*>mine,
                          <int*>(mine + kk * sizeof(float)), h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    finally:
        free(buf)


# --- batch normalization with batch statistics ----------------------------------------------------------------------
# x is viewed as (rows, C). Each chunk of rows sums into its own float64 partials (in row order), the chunks' partials
# are added in chunk order: the statistics depend on the shapes only, never on the threads. The chunks and the
# arithmetic are the Numba kernel's (norm.py), data shifted by the first row as in the reference.

cdef inline void _moments_rows(const float* x, const float* shift, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                               double_restrict s1, double_restrict s2) noexcept nogil:
    """``s1 = sum(d)``, ``s2 = sum(d * d)`` per channel over rows ``r0:r1``, ``d = x - shift`` in float64."""
    cdef Py_ssize_t r, j
    cdef const float* row
    cdef double d
    for j in range(c):
        s1[j] = 0
        s2[j] = 0
    for r in range(r0, r1):
        row = x + r * c
        for j in range(c):
            d = <double>row[j] - <double>shift[j]
            s1[j] = s1[j] + d
            s2[j] = s2[j] + d * d


cdef inline void _grad_sums_rows(const float* dy, const float* x, const float* mean, Py_ssize_t r0,
                                 Py_ssize_t r1, Py_ssize_t c, double_restrict s1, double_restrict s2) noexcept nogil:
    """``s1 = sum(dy)``, ``s2 = sum(dy * (x - mean))`` per channel over rows ``r0:r1`` (float64 sums)."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef const float* gr
    cdef double g
    for j in range(c):
        s1[j] = 0
        s2[j] = 0
    for r in range(r0, r1):
        xr = x + r * c
        gr = dy + r * c
        for j in range(c):
            g = <double>gr[j]
            s1[j] = s1[j] + g
            s2[j] = s2[j] + g * <double>(xr[j] - mean[j])


cdef inline void _affine_rows(const float* x, const float* mean, const float* scale, const float* beta,
                              float_restrict y, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c) noexcept nogil:
    """``y = (x - mean) * scale + beta`` on rows ``r0:r1`` (subtracting first keeps a constant channel exact)."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef float* yr
    for r in range(r0, r1):
        xr = x + r * c
        yr = y + r * c
        for j in range(c):
            yr[j] = (xr[j] - mean[j]) * scale[j] + beta[j]


cdef inline void _affine_relu_rows(const float* x, const float* mean, const float* scale, const float* beta,
                                   float_restrict y, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                                   float cap) noexcept nogil:
    """``_affine_rows`` then ReLU, capped at ``cap`` when ``cap > 0``, as each value is stored (NumPy's clamps: a NaN
    passes, -0 stays -0)."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef float* yr
    cdef float v, zero = 0
    cdef float top = cap if cap > 0 else INFINITY
    for r in range(r0, r1):
        xr = x + r * c
        yr = y + r * c
        for j in range(c):
            v = (xr[j] - mean[j]) * scale[j] + beta[j]
            v = zero if v < zero else v
            yr[j] = top if v > top else v


cdef inline float _relu_top(float cap) noexcept nogil:
    """The largest output through which a ReLU capped at ``cap`` (none when ``cap <= 0``) passes its gradient:
    ``y < cap`` as ``y <= top`` (the float below ``cap``), and every ``y``, ``inf`` included, uncapped."""
    return nextafterf(cap, 0) if cap > 0 else INFINITY


cdef inline void _relu_mask_row(const float* dy, const float* y, float top, float_restrict out,
                                Py_ssize_t c) noexcept nogil:
    """``out = dy`` where ``0 < y <= top``, else 0: a plain select loop, which GCC vectorizes (the mask inside the
    sums' loop stayed scalar: 3x the time of the unmasked backward)."""
    cdef Py_ssize_t j
    cdef float zero = 0, d
    for j in range(c):
        d = dy[j]  # loaded whatever the mask, so that the select vectorizes
        d = d if y[j] > zero else zero
        out[j] = d if y[j] <= top else zero


cdef inline void _grad_sums_relu_rows(const float* dy, const float* y, float cap, const float* x, const float* mean,
                                      Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c, double_restrict s1,
                                      double_restrict s2, float* row) noexcept nogil:
    """``_grad_sums_rows`` of the gradient masked where the ReLU's output ``y`` passed none (``y <= 0``, or
    ``y >= cap`` when ``cap > 0``), a row at a time into ``row`` (``c`` floats of scratch) while in L1."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef double g
    cdef float top = _relu_top(cap)
    for j in range(c):
        s1[j] = 0
        s2[j] = 0
    for r in range(r0, r1):
        xr = x + r * c
        _relu_mask_row(dy + r * c, y + r * c, top, row, c)
        for j in range(c):
            g = <double>row[j]
            s1[j] = s1[j] + g
            s2[j] = s2[j] + g * <double>(xr[j] - mean[j])


cdef inline void _grad_input_relu_rows(const float* dy, const float* y, float cap, const float* x,
                                       const float* mean, const float* a, const float* b, const float* cst,
                                       float_restrict dx, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c) noexcept nogil:
    """``_grad_input_rows`` of the gradient masked as in ``_grad_sums_relu_rows`` (the mask written into ``dx``'s
    row, then that row turned into the gradient in place)."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef float* out
    cdef float top = _relu_top(cap)
    for r in range(r0, r1):
        xr = x + r * c
        out = dx + r * c
        _relu_mask_row(dy + r * c, y + r * c, top, out, c)
        for j in range(c):
            out[j] = a[j] * out[j] + b[j] * (xr[j] - mean[j]) + cst[j]


cdef inline void _grad_input_rows(const float* dy, const float* x, const float* mean, const float* a,
                                  const float* b, const float* cst, float_restrict dx, Py_ssize_t r0, Py_ssize_t r1,
                                  Py_ssize_t c) noexcept nogil:
    """``dx = a * dy + b * (x - mean) + cst`` on rows ``r0:r1`` (the reference's formula, folded per channel)."""
    cdef Py_ssize_t r, j
    cdef const float* xr
    cdef const float* gr
    cdef float* out
    for r in range(r0, r1):
        xr = x + r * c
        gr = dy + r * c
        out = dx + r * c
        for j in range(c):
            out[j] = a[j] * gr[j] + b[j] * (xr[j] - mean[j]) + cst[j]


cdef inline void _add_partials(const double* partials, Py_ssize_t chunks, Py_ssize_t c, double* t1,
                               double* t2) noexcept nogil:
    """Per channel, the chunks' partials ``(s1, s2)`` (``2 c`` doubles per chunk) added in chunk order."""
    cdef Py_ssize_t k, j
    for j in range(c):
        t1[j] = 0
        t2[j] = 0
    for k in range(chunks):
        for j in range(c):
            t1[j] = t1[j] + partials[2 * k * c + j]
            t2[j] = t2[j] + partials[2 * k * c + c + j]


def batch_norm_train(const float[:, ::1] x, const float[::1] gamma, const float[::1] beta, float eps,
                     float[:, ::1] y, float[::1] mean, float[::1] var, float[::1] inv_std, bint relu=False,
                     float cap=0):
    """Batch statistics of ``x`` (rows, C) into ``mean``, ``var`` (biased) and ``inv_std = 1 / sqrt(var + eps)``,
    and ``y = (x - mean) * gamma * inv_std + beta``, then with ``relu`` ReLU, capped at ``cap`` when ``cap > 0``.
    NaN propagates: a NaN in a channel makes its statistics and outputs NaN."""
    cdef Py_ssize_t rows = x.shape[0], c = x.shape[1], per = max(1, ROWS_CHUNK // max(c, 1)), t, j, r0
    cdef Py_ssize_t chunks = (rows + per - 1) // per
    cdef int nthreads = team_size(rows * c, chunks)
    cdef Py_ssize_t claim = chunk(chunks, nthreads, <double>per * c, BALANCE_WORK)
    cdef double dmean, v
    cdef const float* xp
    cdef float* yp
    if rows == 0 or c == 0:
        return
    xp = &x[0, 0]
    yp = &y[0, 0]
    # the chunks' partials, then the two totals and the float32 scale, in one block
    cdef double* partials = <double*>malloc((2 * chunks + 2) * c * sizeof(double) + c * sizeof(float))
    if partials == NULL:
        raise MemoryError()
    cdef double* t1 = partials + 2 * chunks * c
    cdef double* t2 = t1 + c
    cdef float* scale = <float*>(t2 + c)
    try:
        for t in prange(chunks, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
            r0 = t * per
            _moments_rows(xp, xp, r0, min(rows, r0 + per), c, partials + 2 * t * c, partials + (2 * t + 1) * c)
        with nogil:
            _add_partials(partials, chunks, c, t1, t2)
            for j in range(c):
                dmean = t1[j] / rows
                v = t2[j] / rows - dmean * dmean
                v = 0 if v < 0 else v  # rounding below 0 (a constant channel); a NaN stays NaN
                mean[j] = <float>(<double>xp[j] + dmean)
                var[j] = <float>v
                inv_std[j] = <float>(1.0 / sqrt(v + <double>eps))
                scale[j] = gamma[j] * inv_std[j]
        for t in prange(chunks, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
            r0 = t * per
            if relu:
                _affine_relu_rows(xp, &mean[0], scale, &beta[0], yp, r0, min(rows, r0 + per), c, cap)
            else:
                _affine_rows(xp, &mean[0], scale, &beta[0], yp, r0, min(rows, r0 + per), c)
    finally:
        free(partials)


def batch_norm_backward(const float[:, ::1] dy, const float[:, ::1] x, const float[::1] mean,
                        const float[::1] inv_std, const float[::1] gamma, float[:, ::1] dx, float[::1] dgamma,
                        float[::1] dbeta, const float[:, ::1] y=None, float cap=0):
    """Gradients of :func:`batch_norm_train` for ``x`` (rows, C): ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)``
    and ``dx = gamma * inv_std / M * (M * dy - dbeta - xhat * dgamma)`` (``M = rows``), with float64 sums. With
    ``y`` (the output of a forward with ``relu``), ``dy`` first passes only where ``0 < y`` (and ``y < cap`` when
    ``cap > 0``), the mask taken as each value is read."""
    cdef Py_ssize_t rows = x.shape[0], c = x.shape[1], per = max(1, ROWS_CHUNK // max(c, 1)), t, j, r0
    cdef Py_ssize_t chunks = (rows + per - 1) // per
    cdef int nthreads = team_size(rows * c, chunks)
    cdef Py_ssize_t claim = chunk(chunks, nthreads, <double>per * c, BALANCE_WORK)
    cdef double istd, dg, k0
    cdef const float* xp
    cdef const float* gp
    cdef float* dxp
    if rows == 0 or c == 0:
        return
    xp = &x[0, 0]
    gp = &dy[0, 0]
    dxp = &dx[0, 0]
    cdef const float* yp = NULL
    if y is not None:
        yp = &y[0, 0]
    # the chunks' partials, the two totals and the folded float32 coefficients a, b, cst, in one block
    cdef double* partials = <double*>malloc((2 * chunks + 2) * c * sizeof(double) +
                                            (3 + (nthreads if yp != NULL else 0)) * c * sizeof(float))
    if partials == NULL:
        raise MemoryError()
    cdef double* t1 = partials + 2 * chunks * c
    cdef double* t2 = t1 + c
    cdef float* a = <float*>(t2 + c)
    cdef float* b = a + c
    cdef float* cst = b + c
    cdef float* masked = cst + c  # a row of the masked gradient per thread
    try:
        for t in prange(chunks, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
            r0 = t * per
            if yp != NULL:
                _grad_sums_relu_rows(gp, yp, cap, xp, &mean[0], r0, min(rows, r0 + per), c, partials + 2 * t * c,
                                     partials + (2 * t + 1) * c, masked + threadid() * c)
            else:
                _grad_sums_rows(gp, xp, &mean[0], r0, min(rows, r0 + per), c, partials + 2 * t * c,
                                partials + (2 * t + 1) * c)
        with nogil:
            _add_partials(partials, chunks, c, t1, t2)
            for j in range(c):
                istd = <double>inv_std[j]
                dg = t2[j] * istd  # sum(dy * xhat)
                k0 = <double>gamma[j] * istd
                dbeta[j] = <float>t1[j]
                dgamma[j] = <float>dg
                a[j] = <float>k0
                b[j] = <float>(-k0 * istd * dg / rows)
                cst[j] = <float>(-k0 * t1[j] / rows)
        for t in prange(chunks, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
            r0 = t * per
            if yp != NULL:
                _grad_input_relu_rows(gp, yp, cap, xp, &mean[0], a, b, cst, dxp, r0, min(rows, r0 + per), c)
            else:
                _grad_input_rows(gp, xp, &mean[0], a, b, cst, dxp, r0, min(rows, r0 + per), c)
    finally:
        free(partials)


# --- row reductions -------------------------------------------------------------------------------------------------
# A row's sum runs in LANES interleaved partial sums (element j into lane j % LANES), added in a fixed order at the
# end: GCC vectorizes it (a serial float sum it may not reorder: one add's latency an element, 2.5x Numba's time
# for a softmax backward of 128 x 128), and the order depends on the row's length alone, never on the threads.

cdef enum:
    LANES = 8
    TERMS_BLOCK = 256  # a row's loss terms computed (vectorized) before they are summed


cdef inline float _lanes_total(const float* acc) noexcept nogil:
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline float _sum(const float* a, Py_ssize_t k) noexcept nogil:
    """``sum(a)`` in lanes."""
    cdef float acc[LANES]
    cdef Py_ssize_t j, l, nb = k // LANES
    for l in range(LANES):
        acc[l] = 0
    for j in range(nb):
        for l in range(LANES):
            acc[l] = acc[l] + a[j * LANES + l]
    for l in range(k - nb * LANES):
        acc[l] = acc[l] + a[nb * LANES + l]
    return _lanes_total(acc)


cdef inline float _dot(const float* a, const float* b, Py_ssize_t k) noexcept nogil:
    """``sum(a * b)`` in lanes."""
    cdef float acc[LANES]
    cdef Py_ssize_t j, l, nb = k // LANES
    for l in range(LANES):
        acc[l] = 0
    for j in range(nb):
        for l in range(LANES):
            acc[l] = acc[l] + a[j * LANES + l] * b[j * LANES + l]
    for l in range(k - nb * LANES):
        acc[l] = acc[l] + a[nb * LANES + l] * b[nb * LANES + l]
    return _lanes_total(acc)


cdef inline float _max(const float* a, Py_ssize_t k) noexcept nogil:
    """``max(a)`` (``k >= 1``) in lanes (a max is exact in any order). A NaN may be dropped: the callers' NaN
    reaches their outputs through ``exp(NaN - max)``."""
    cdef float acc[LANES]
    cdef Py_ssize_t j, l, nb = k // LANES
    cdef float v
    for l in range(LANES):
        acc[l] = a[0]
    for j in range(nb):
        for l in range(LANES):
            v = a[j * LANES + l]
            acc[l] = v if v > acc[l] else acc[l]
    for l in range(k - nb * LANES):
        v = a[nb * LANES + l]
        acc[l] = v if v > acc[l] else acc[l]
    for l in range(1, LANES):
        acc[0] = acc[l] if acc[l] > acc[0] else acc[0]
    return acc[0]


cdef double _INV_LN2 = 1.44269504088896338700e+00
cdef double _LN2_HI_E = 6.93147180369123816490e-01
cdef double _LN2_LO_E = 1.90821492927058770002e-10


cdef inline float _exp_nonpositive(float xf) noexcept nogil:
    """``exp(x)`` for ``x <= 0`` (or NaN, which it returns), in float64 without libm so that it vectorizes (libm's
    expf was most of a softmax cross-entropy's time): ``x = n ln 2 + r``, ``|r| <= ln 2 / 2``, ``exp(r)`` by its Taylor
    series to ``r**12`` (error ~1e-16), times ``2**n``; rounded once to float32 (the float32 reference's value but
    for a float64 last-bit difference crossing a rounding boundary). Below -200 (0 in float32), -200."""
    cdef double x = xf
    x = _pick_d(x < -200, -200, x)  # a NaN stays NaN
    cdef double t = x * _INV_LN2 + _MAGIC_ROUND
    cdef double n = t - _MAGIC_ROUND
    cdef double r = (x - n * _LN2_HI_E) - n * _LN2_LO_E
    cdef double q = 1 + r * (1 + r * (1 / 2. + r * (1 / 6. + r * (1 / 24. + r * (1 / 120. + r * (
        1 / 720. + r * (1 / 5040. + r * (1 / 40320. + r * (1 / 362880. + r * (1 / 3628800. + r * (
            1 / 39916800. + r * (1 / 479001600.))))))))))))
    # 2**n from its bits: n (>= -289) is the low bits of t's, as an integer offset from the magic constant's
    return <float>(q * _from_bits((_bits(t) - _bits(_MAGIC_ROUND) + 1023) << 52))


cdef inline float _log1p_unit(float ef) noexcept nogil:
    """``log1p(e)`` for ``0 <= e <= 1`` (or NaN, which it returns) in float64: ``1 + e`` is exact for ``e >= 2**-29``
    (a float32's last bit is then above 2**-53), where fdlibm's log applies; below, ``log1p(e) = e`` to float32."""
    cdef double e = ef
    cdef double big = _log_positive(1 + e)
    return <float>_pick_d(e < 1.862645149230957e-09, e, big)


# --- losses: one task per sample (row) -------------------------------------------------------------------------------

cdef enum:
    SOFTMAX_ROWS = 256  # rows of a block of the softmax losses (their max and log-sum-exp on the stack)
    SOFTMAX_ELEMENTS = 4096  # elements of a block, at most (fewer rows when they are long)


cdef inline void _softmax_block(const float* z, float* p, Py_ssize_t rows, Py_ssize_t k, float* zmax,
                                float* log_s) noexcept nogil:
    """Softmax of ``rows`` consecutive rows of ``k`` into ``p``, each row's max into ``zmax`` and the log of its sum
    of ``exp(z - max)`` into ``log_s``. The exponentials take one vectorized pass over the block's elements (row by
    row, a row of 10 classes spent more on the vector loop's setup than on its arithmetic)."""
    cdef Py_ssize_t r, j
    cdef float m, inv, s
    for r in range(rows):
        m = _max(z + r * k, k)
        zmax[r] = m
        for j in range(r * k, (r + 1) * k):
            p[j] = z[j] - m
    for j in range(rows * k):
        p[j] = _exp_nonpositive(p[j])  # a NaN in z reaches its row's every output through the sum
    for r in range(rows):
        s = _sum(p + r * k, k)
        inv = ONE / s
        for j in range(r * k, (r + 1) * k):
            p[j] = p[j] * inv
        log_s[r] = logf(s)


cdef inline Py_ssize_t _softmax_rows_per_block(Py_ssize_t k) noexcept nogil:
    return max(1, min(<Py_ssize_t>SOFTMAX_ROWS, SOFTMAX_ELEMENTS // k))


cdef inline void _xent_rows(const float* logits, const float* labels, float* loss, float* grad, Py_ssize_t r0,
                            Py_ssize_t r1, Py_ssize_t k) noexcept nogil:
    """Rows ``r0:r1`` of :func:`softmax_cross_entropy`, by blocks: the loss ``sum(t * (log_s - (z - m)))`` (in
    lanes) and ``grad = softmax(z) - t``."""
    cdef float acc[LANES]
    cdef float zmax[SOFTMAX_ROWS]
    cdef float log_s[SOFTMAX_ROWS]
    cdef Py_ssize_t r, b, j, l, nb = k // LANES, per = _softmax_rows_per_block(k), m
    cdef const float* z
    cdef const float* t
    cdef float* g
    cdef float ls, mx
    r = r0
    while r < r1:
        m = min(per, r1 - r)
        _softmax_block(logits + r * k, grad + r * k, m, k, zmax, log_s)
        for b in range(m):
            z = logits + (r + b) * k
            t = labels + (r + b) * k
            g = grad + (r + b) * k
            ls = log_s[b]
            mx = zmax[b]
            for l in range(LANES):
                acc[l] = 0
            for j in range(nb):
                for l in range(LANES):
                    acc[l] = acc[l] + t[j * LANES + l] * (ls - (z[j * LANES + l] - mx))
            for l in range(k - nb * LANES):
                acc[l] = acc[l] + t[nb * LANES + l] * (ls - (z[nb * LANES + l] - mx))
            loss[r + b] = _lanes_total(acc)
        for j in range(r * k, (r + m) * k):
            grad[j] = grad[j] - labels[j]
        r = r + m


def softmax_cross_entropy(const float[:, ::1] logits, const float[:, ::1] labels, float[::1] loss,
                          float[:, ::1] grad):
    """Per row: ``loss = -sum(t * log_softmax(z))`` (as ``sum(t * (log_s - (z - max)))``, so ``t == 0`` adds
    exactly 0) and ``grad = softmax(z) - t``. Tasks of rows fixed by the shapes."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], per, tasks, i
    if n == 0 or k == 0:
        return
    per = _softmax_rows_per_block(k)
    tasks = (n + per - 1) // per
    cdef int nthreads = team_size(8 * n * k, tasks)
    if nthreads == 1:
        with nogil:
            _xent_rows(&logits[0, 0], &labels[0, 0], &loss[0], &grad[0, 0], 0, n, k)
        return
    for i in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        _xent_rows(&logits[0, 0], &labels[0, 0], &loss[0], &grad[0, 0], i * per, min(n, (i + 1) * per), k)


cdef inline void _sparse_xent_rows(const float* logits, const Py_ssize_t* labels, float* loss, float* grad,
                                   Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k) noexcept nogil:
    """Rows ``r0:r1`` of :func:`sparse_softmax_cross_entropy`, by blocks."""
    cdef float zmax[SOFTMAX_ROWS]
    cdef float log_s[SOFTMAX_ROWS]
    cdef Py_ssize_t r, b, c, per = _softmax_rows_per_block(k), m
    r = r0
    while r < r1:
        m = min(per, r1 - r)
        _softmax_block(logits + r * k, grad + r * k, m, k, zmax, log_s)
        for b in range(m):
            c = (r + b) * k + labels[r + b]
            loss[r + b] = log_s[b] - (logits[c] - zmax[b])
            grad[c] = grad[c] - ONE
        r = r + m


def sparse_softmax_cross_entropy(const float[:, ::1] logits, const Py_ssize_t[::1] labels, float[::1] loss,
                                 float[:, ::1] grad):
    """Per row with class ``c = labels[i]``: ``loss = log_s - (z[c] - max)``, ``grad = softmax(z) - onehot(c)``."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], per, tasks, i
    if n == 0 or k == 0:
        return
    per = _softmax_rows_per_block(k)
    tasks = (n + per - 1) // per
    cdef int nthreads = team_size(8 * n * k, tasks)
    if nthreads == 1:
        with nogil:
            _sparse_xent_rows(&logits[0, 0], &labels[0], &loss[0], &grad[0, 0], 0, n, k)
        return
    for i in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        _sparse_xent_rows(&logits[0, 0], &labels[0], &loss[0], &grad[0, 0], i * per, min(n, (i + 1) * per), k)


cdef inline void _bce_terms(const float* z, const float* t, float* g, float* terms, Py_ssize_t count,
                            float kf) noexcept nogil:
    """``count`` consecutive elements: the loss terms ``max(z, 0) - z t + log1p(exp(-|z|))`` into ``terms`` and the
    gradient ``(sigmoid(z) - t) / K`` into ``g`` (the sigmoid as ``r / (1 + e)``, ``e = exp(-|z|)``, ``r`` 1 for
    ``z >= 0``, else ``e``: never overflows). Vectorized: choices on the bits, exp and log1p without libm."""
    cdef Py_ssize_t j
    cdef float zj, e
    for j in range(count):
        zj = z[j]
        e = _exp_nonpositive(-fabsf(zj))
        terms[j] = _pick_f(zj > 0, zj, 0) - zj * t[j] + _log1p_unit(e)
        g[j] = (_pick_f(zj >= 0, ONE, e) / (ONE + e) - t[j]) / kf  # divided by K, as the reference


cdef inline void _bce_rows(const float* z, const float* t, float* loss, float* g, Py_ssize_t r0, Py_ssize_t r1,
                           Py_ssize_t k) noexcept nogil:
    """Rows ``r0:r1`` of :func:`sigmoid_binary_cross_entropy`, through a buffer of terms: rows that fit it whole
    take one vectorized pass over their elements together (a binary output has one unit: a row alone is one
    element), longer rows go by blocks of the buffer. Each row's terms are summed in lanes."""
    cdef float terms[TERMS_BLOCK]
    cdef float kf = <float>k, total
    cdef Py_ssize_t r, b, m, per = TERMS_BLOCK // k
    if per >= 1:
        r = r0
        while r < r1:
            m = min(per, r1 - r)
            _bce_terms(z + r * k, t + r * k, g + r * k, terms, m * k, kf)
            for b in range(m):
                loss[r + b] = _sum(terms + b * k, k) / kf
            r = r + m
        return
    for r in range(r0, r1):
        total = 0
        for b in range((k + TERMS_BLOCK - 1) // TERMS_BLOCK):
            m = min(<Py_ssize_t>TERMS_BLOCK, k - b * TERMS_BLOCK)
            _bce_terms(z + r * k + b * TERMS_BLOCK, t + r * k + b * TERMS_BLOCK, g + r * k + b * TERMS_BLOCK,
                       terms, m, kf)
            total = total + _sum(terms, m)
        loss[r] = total / kf


def sigmoid_binary_cross_entropy(const float[:, ::1] logits, const float[:, ::1] targets, float[::1] loss,
                                 float[:, ::1] grad):
    """Per row of ``K``: ``loss = mean(max(z, 0) - z * t + log1p(exp(-|z|)))`` and ``grad = (sigmoid(z) - t) / K``.
    Tasks of rows fixed by the shapes (a row's sum never depends on them)."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], per, tasks, i
    if n == 0 or k == 0:
        return
    per = max(1, <Py_ssize_t>TERMS_BLOCK // k)
    tasks = (n + per - 1) // per
    cdef int nthreads = team_size(16 * n * k, tasks)
    if nthreads == 1:
        with nogil:
            _bce_rows(&logits[0, 0], &targets[0, 0], &loss[0], &grad[0, 0], 0, n, k)
        return
    for i in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        _bce_rows(&logits[0, 0], &targets[0, 0], &loss[0], &grad[0, 0], i * per, min(n, (i + 1) * per), k)


cdef inline void _mse_rows(const float* y, const float* t, float two_k, float* loss, float_restrict g,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k) noexcept nogil:
    """Rows ``r0:r1`` of :func:`mean_squared_error`: the gradient in one pass over their elements, then each row's
    sum of squares in lanes."""
    cdef Py_ssize_t j, r
    for j in range(r0 * k, r1 * k):
        g[j] = (y[j] - t[j]) * two_k
    for r in range(r0, r1):
        loss[r] = _sq_dist(y + r * k, t + r * k, k) / <float>k


def mean_squared_error(const float[:, ::1] y, const float[:, ::1] targets, float two_k, float[::1] loss,
                       float[:, ::1] grad):
    """Per row of ``K``: ``loss = mean((y - t)^2)`` and ``grad = (y - t) * two_k`` (``two_k = float32(2 / K)``,
    the reference's factor: the gradient is bit-identical to it)."""
    cdef Py_ssize_t n = y.shape[0], k = y.shape[1], per, tasks, i
    if n == 0 or k == 0:
        return
    per = max(1, <Py_ssize_t>CHUNK // k)
    tasks = (n + per - 1) // per
    cdef int nthreads = team_size(2 * n * k, tasks)
    if nthreads == 1:
        with nogil:
            _mse_rows(&y[0, 0], &targets[0, 0], two_k, &loss[0], &grad[0, 0], 0, n, k)
        return
    for i in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        _mse_rows(&y[0, 0], &targets[0, 0], two_k, &loss[0], &grad[0, 0], i * per, min(n, (i + 1) * per), k)


cdef inline float _sq_dist(const float* a, const float* b, Py_ssize_t k) noexcept nogil:
    """``sum((a - b)**2)`` in lanes."""
    cdef float acc[LANES]
    cdef float d
    cdef Py_ssize_t j, l, nb = k // LANES
    for l in range(LANES):
        acc[l] = 0
    for j in range(nb):
        for l in range(LANES):
            d = a[j * LANES + l] - b[j * LANES + l]
            acc[l] = acc[l] + d * d
    for l in range(k - nb * LANES):
        d = a[nb * LANES + l] - b[nb * LANES + l]
        acc[l] = acc[l] + d * d
    return _lanes_total(acc)


# --- the activation ops of _act.h (tanh, selu, elu, leaky_relu, relu6, hard_sigmoid, hard_swish, gelu, softplus,
# silu): one forward and one backward, the op a code (cython_ops.ACTIVATIONS); the convolution and dense kernels'
# epilogues run the same loops (_cy_gemm.pyx), so a fused activation has the stand-alone op's bits.
cdef extern from "_act.h" nogil:
    void dc_act_forward(int op, float alpha, float hi, float th, const float* x, float* y, long n)
    void dc_act_backward(int op, float alpha, float hi, float th, const float* dy, const float* v, float* dx, long n)

cdef enum:
    ACT_WORK = 8  # element operations an activation costs per element, about (exp's polynomial): threads pay sooner


def act_forward(cnp.ndarray x not None, cnp.ndarray y not None, int op, float alpha, float hi=0, float th=0):
    """``y = act(x)`` for activation code ``op`` (``alpha``: its parameter; ``hi``, ``th``: clipped_relu's maximum
    and threshold), element by element over C-contiguous float32 arrays of any shape and as many elements; ``y``
    may be ``x``. Each element is computed alone, so the result does not depend on the thread count."""
    cdef const float* xp = f32_data(x, -1, False, "act_forward: x")
    cdef float* yp = f32_data(y, -1, True, "act_forward: y")
    cdef Py_ssize_t n = same_size(x, y, "act_forward"), t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef int nthreads = team_size(n * ACT_WORK, tasks)
    if nthreads == 1:
        with nogil:
            dc_act_forward(op, alpha, hi, th, xp, yp, n)
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        lo = t * CHUNK
        dc_act_forward(op, alpha, hi, th, xp + lo, yp + lo, min(n, lo + CHUNK) - lo)


def act_backward(const float[::1] dy, const float[::1] v, float[::1] dx, int op, float alpha, float hi=0,
                 float th=0):
    """``dx = dy * act'(v)``, ``v`` the forward's output for tanh, sigmoid and selu, its input for the others."""
    cdef Py_ssize_t n = dy.shape[0], t, lo
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float* dyp = &dy[0] if n else NULL
    cdef const float* vp = &v[0] if n else NULL
    cdef float* dxp = &dx[0] if n else NULL
    cdef int nthreads = team_size(n * ACT_WORK, tasks)
    if nthreads == 1:
        with nogil:
            dc_act_backward(op, alpha, hi, th, dyp, vp, dxp, n)
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        lo = t * CHUNK
        dc_act_backward(op, alpha, hi, th, dyp + lo, vp + lo, dxp + lo,
                        min(n, lo + CHUNK) - lo)


# --- merge: Concatenate's copies and Add's sums (memory-bound: the threads are there to use both memory paths) ---

cdef inline void _concat_row(float** parts, const Py_ssize_t* widths, Py_ssize_t k, float* row, Py_ssize_t r,
                             bint split) noexcept nogil:
    """Row ``r`` of the 2-D concatenation: each part's row ``r`` into (``split``: out of) its columns of ``row``."""
    cdef Py_ssize_t i, off = 0
    for i in range(k):
        if widths[i]:
            if split:
                memcpy(parts[i] + r * widths[i], row + off, widths[i] * sizeof(float))
            else:
                memcpy(row + off, parts[i] + r * widths[i], widths[i] * sizeof(float))
        off += widths[i]


def concat_rows(list parts, float[:, ::1] whole, bint split):
    """Concatenation seen as 2-D: ``parts[i]`` is ``(rows, w_i)``, ``whole`` ``(rows, sum w_i)``; copies each part
    into its columns of ``whole``, or with ``split`` each part out of them. Rows split over the threads."""
    cdef Py_ssize_t k = len(parts), rows = whole.shape[0], width = whole.shape[1], i, r
    cdef const float[:, ::1] part
    cdef float** ptrs = <float**>malloc(k * sizeof(float*))
    cdef Py_ssize_t* widths = <Py_ssize_t*>malloc(k * sizeof(Py_ssize_t))
    if ptrs == NULL or widths == NULL:
        free(ptrs)
        free(widths)
        raise MemoryError()
    for i in range(k):
        part = parts[i]
        widths[i] = part.shape[1] if rows else 0
        ptrs[i] = <float*>&part[0, 0] if rows and part.shape[1] else NULL
    cdef float* wp = &whole[0, 0] if rows and width else NULL
    if wp != NULL:
        for r in prange(rows, nogil=True, schedule="static", num_threads=team_size(rows * width, rows)):
            _concat_row(ptrs, widths, k, wp + r * width, r, split)
    free(ptrs)
    free(widths)


cdef inline void _add_run(const float** xs, Py_ssize_t k, float* y, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """``y[lo:hi] = ((xs[0] + xs[1]) + xs[2]) + ...``: NumPy's order, so the same bits."""
    cdef Py_ssize_t i, j
    cdef const float* a = xs[0]
    cdef const float* b = xs[1]
    for i in range(lo, hi):
        y[i] = a[i] + b[i]
    for j in range(2, k):
        a = xs[j]
        for i in range(lo, hi):
            y[i] += a[i]


def add_arrays(list xs, float[::1] y):
    """``y`` = the sum of the flat arrays of ``xs`` (two or more, ``y``'s length), in order, chunk by chunk."""
    cdef Py_ssize_t k = len(xs), n = y.shape[0], i, t
    cdef Py_ssize_t tasks = (n + CHUNK - 1) // CHUNK
    cdef const float[::1] x
    if n == 0:
        return
    cdef const float** ptrs = <const float**>malloc(k * sizeof(float*))
    if ptrs == NULL:
        raise MemoryError()
    for i in range(k):
        x = xs[i]
        ptrs[i] = &x[0]
    cdef float* yp = &y[0]
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n * k, tasks)):
        _add_run(ptrs, k, yp, t * CHUNK, min(n, (t + 1) * CHUNK))
    free(ptrs)


# --- rescale: Rescaling's x * scale + offset, the channels' constants repeated along each row ---

cdef enum:
    RESCALE_ROWS = 16384  # elements per task, in whole rows (a task's output stays in cache for the second pass)


cdef inline void _rescale_run(const float* x, const float* s, const float* o, float* y, Py_ssize_t r0,
                              Py_ssize_t r1, Py_ssize_t c, bint offset) noexcept nogil:
    """Rows ``r0:r1`` of ``y = x * s`` and then, a second pass, ``y += o``: two passes so that the compiler cannot
    contract them into one fused multiply-add, whose single rounding would differ from NumPy's two."""
    cdef Py_ssize_t r, k
    for r in range(r0, r1):
        for k in range(c):
            y[r * c + k] = x[r * c + k] * s[k]
    if offset:
        for r in range(r0, r1):
            for k in range(c):
                y[r * c + k] += o[k]


def rescale_rows(const float[:, ::1] x, const float[::1] scale, const float[::1] offset, float[:, ::1] y,
                 bint add_offset):
    """``y = x * scale + offset`` (``add_offset`` false: ``x * scale``) on rows of ``width`` elements, ``scale``
    and ``offset`` of ``width`` values each (``reference.elementwise.tiled_rows``), rounded as NumPy rounds: the
    product, then the sum. Tasks of whole rows split over the threads."""
    cdef Py_ssize_t rows = x.shape[0], c = x.shape[1], t
    if rows == 0 or c == 0:
        return
    cdef Py_ssize_t per = max(1, RESCALE_ROWS // c)
    cdef Py_ssize_t tasks = (rows + per - 1) // per
    cdef const float* xp = &x[0, 0]
    cdef const float* sp = &scale[0]
    cdef const float* op = &offset[0]
    cdef float* yp = &y[0, 0]
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(rows * c, tasks)):
        _rescale_run(xp, sp, op, yp, t * per, min(rows, (t + 1) * per), c, add_offset)


# --- zero padding: ZeroPadding2D's rows of zeros around each sample's rows, and the crop of its backward ---

cdef inline void _pad_row(const float* x, float* y, Py_ssize_t h, Py_ssize_t wc, Py_ssize_t oh, Py_ssize_t owc,
                          Py_ssize_t top, Py_ssize_t leftc, Py_ssize_t t, bint crop) noexcept nogil:
    """Task ``t`` (sample ``t // oh``, output row ``t % oh`` with ``crop`` false; sample ``t // h``, input row
    ``t % h`` with ``crop``): a row is ``wc`` input and ``owc`` output elements, the input's at ``leftc``."""
    cdef Py_ssize_t s, r
    if crop:
        s, r = t // h, t % h
        memcpy(y + t * wc, x + (s * oh + r + top) * owc + leftc, wc * sizeof(float))
        return
    s, r = t // oh, t % oh
    cdef float* row = y + t * owc
    if r < top or r >= top + h:
        memset(row, 0, owc * sizeof(float))
        return
    memset(row, 0, leftc * sizeof(float))
    if wc:
        memcpy(row + leftc, x + (s * h + r - top) * wc, wc * sizeof(float))
    memset(row + leftc + wc, 0, (owc - leftc - wc) * sizeof(float))


def zero_pad_rows(const float[:, :, ::1] small, const float[:, :, ::1] big, Py_ssize_t top, Py_ssize_t leftc,
                  bint crop):
    """``small`` (N, H, W*C) zero-padded into ``big`` (N, OH, OW*C), its rows from ``top`` and its elements from
    ``leftc`` on; with ``crop``, the other way: ``big``'s part copied into ``small`` (the backward). The one
    written must be writable (both are typed const so that the one read may be a read-only array)."""
    cdef Py_ssize_t n = small.shape[0], h = small.shape[1], wc = small.shape[2]
    cdef Py_ssize_t oh = big.shape[1], owc = big.shape[2], t
    cdef Py_ssize_t tasks = n * (h if crop else oh)
    if tasks == 0 or owc == 0:
        return
    cdef float* sp = <float*>&small[0, 0, 0] if h and wc else NULL
    cdef float* bp = <float*>&big[0, 0, 0]
    if crop and sp == NULL:
        return
    for t in prange(tasks, nogil=True, schedule="static", num_threads=team_size(n * oh * owc, tasks)):
        if crop:
            _pad_row(bp, sp, h, wc, oh, owc, top, leftc, t, True)
        else:
            _pad_row(sp, bp, h, wc, oh, owc, top, leftc, t, False)
