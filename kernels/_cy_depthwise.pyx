# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time depthwise convolution (NHWC, float32, depth multiplier 1: ``cython_depthwise`` repeats the input's
channels for more): the forward with the bias and ReLU fused, and training's input, weight and bias gradients, on
the channel vectors of ``_depthwise.h``.

Work splits by rows: the forward one OpenMP task per (sample, output row), the input gradient one per (sample, input
row) (a gather: each task writes its own row), the weight gradient in ``nchunks`` fixed chunks of (sample, output
row) rows, each into its own partial, summed in chunk order afterwards: no split follows the thread count, so the
results do not either.
"""
from cython.parallel cimport prange

cimport openmp

include "_cy_threads.pxi"
include "_cy_arrays.pxi"

cdef extern from "_depthwise.h" nogil:
    int DC_HAVE_SIMD
    enum:
        DC_DW_RELU6
    void dc_dw_forward_row(const float* x, const float* w, const float* b, float* y, int h, int wd, int c, int kh,
                           int kw, int sw, int dh, int dw, int iy0, int pl, int ow, int relu)
    void dc_dw_dx_row(const float* dy, const float* w, float* dx, int wd, int c, int kh, int kw, int sh, int sw,
                      int dh, int dw, int pt, int pl, int oh, int ow, int iy)
    void dc_dw_dw_row(const float* x, const float* dy, const float* ro, float* gm, float* dwp, float* dbp, int h,
                      int wd, int c, int kh, int kw, int sw, int dh, int dw, int iy0, int pl, int ow)

cdef extern from "_act.h" nogil:
    enum:
        DC_ACT_RELU6
    void dc_act_rows(int op, float alpha, float* y, long rows, int cols, long ld)

HAVE_SIMD = bool(DC_HAVE_SIMD)


def depthwise_forward(cnp.ndarray x not None, cnp.ndarray w not None, cnp.ndarray b not None, bint has_bias,
                      int sh, int sw, int dh, int dw, int pt, int pl, cnp.ndarray y not None, bint relu, int act,
                      float alpha):
    """``y = relu?(depthwise(x, w) + b)`` for ``x`` (N, H, W, C), ``w`` (kh, kw, C), ``y`` (N, OH, OW, C); then
    activation ``act`` of ``_act.h`` (0: none) with parameter ``alpha`` on each output row while it is in cache,
    the loop its stand-alone op runs (the same bits)."""
    cdef const float* xp = f32_data(x, 4, False, "depthwise_forward: x")
    cdef const float* wp = f32_data(w, 3, False, "depthwise_forward: w")
    cdef const float* bp = f32_data(b, 1, False, "depthwise_forward: b") if has_bias else NULL
    cdef float* yp = f32_data(y, 4, True, "depthwise_forward: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, t
    if rows == 0 or ow == 0 or c == 0:
        return
    cdef int nthreads = team_size(rows * ow * c * kh * kw, rows)
    if nthreads == 1:  # no OpenMP region: one costs about 1 us even on one thread (a batch-1 request's layer)
        with nogil:
            for t in range(rows):
                _forward_row(t, oh, xp, wp, bp, yp, h, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, ow, relu, act, alpha)
        return
    cdef Py_ssize_t claim = chunk(rows, nthreads, <double>ow * c * kh * kw, BALANCE_WORK)
    for t in prange(rows, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
        _forward_row(t, oh, xp, wp, bp, yp, h, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, ow, relu, act, alpha)


cdef inline void _forward_row(Py_ssize_t t, int oh, const float* xp, const float* wp, const float* bp, float* yp,
                              int h, int wd, int c, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                              int ow, bint relu, int act, float alpha) noexcept nogil:
    """Output row ``t`` (of all samples' rows) of ``depthwise_forward``, then its activation (ReLU6, MobileNets',
    in the kernel's registers: the same bits)."""
    cdef int ni = <int>(t // oh), oy = <int>(t % oh)
    dc_dw_forward_row(xp + <Py_ssize_t>ni * h * wd * c, wp, bp, yp + t * ow * c, h, wd, c, kh, kw, sw, dh, dw,
                      oy * sh - pt, pl, ow, DC_DW_RELU6 if act == DC_ACT_RELU6 else (1 if relu else 0))
    if act and act != DC_ACT_RELU6:
        dc_act_rows(act, alpha, yp + t * ow * c, 1, ow * c, ow * c)


def depthwise_backward_dx(const float[:, :, :, ::1] dy, const float[:, :, ::1] w, int sh, int sw, int dh, int dw,
                          int pt, int pl, float[:, :, :, ::1] dx):
    """The input gradient ``dx`` (N, H, W, C) from ``dy`` (N, OH, OW, C), any strides (at stride 1
    ``cython_depthwise`` runs the forward on ``dy`` instead)."""
    cdef int n = dx.shape[0], h = dx.shape[1], wd = dx.shape[2], c = dx.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], oh = dy.shape[1], ow = dy.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * h, t, osz = <Py_ssize_t>oh * ow * c
    cdef int ni, iy
    if rows == 0 or wd == 0 or c == 0:
        return
    cdef const float* dyp = &dy[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0]
    cdef float* dxp = &dx[0, 0, 0, 0]
    cdef int nthreads = team_size(rows * wd * c * kh * kw, rows)
    cdef Py_ssize_t claim = chunk(rows, nthreads, <double>wd * c * kh * kw, BALANCE_WORK)
    for t in prange(rows, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
        ni = <int>(t // h)
        iy = <int>(t % h)
        dc_dw_dx_row(dyp + ni * osz, wp, dxp + t * wd * c, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, iy)


def depthwise_backward_dw(const float[:, :, :, ::1] x, const float[:, :, :, ::1] dy, const float[:, :, :, ::1] ro,
                          bint has_ro, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                          float[:, ::1] dwp, float[:, ::1] dbp, bint has_bias, float[:, :, :, ::1] gm=None):
    """The partial weight (and, with ``has_bias``, bias) gradients of each of ``dwp.shape[0]`` chunks of the
    (sample, output row) rows: ``dwp[k]`` (kh * kw * C) and ``dbp[k]`` (C), chunk ``k`` holding rows
    ``k * rows // chunks`` up to the next chunk's first. With ``has_ro`` (``dy`` passes only where ``ro > 0``),
    ``gm`` (``dy``'s shape), when given, receives the masked gradient (``relu_mask``'s), each row written before the
    row's sums read it: the input gradient's input, without a pass of its own."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = dy.shape[1], ow = dy.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, r, r0, r1, k, i
    cdef Py_ssize_t chunks = dwp.shape[0], kc = dwp.shape[1], row = <Py_ssize_t>ow * c
    cdef int ni, oy
    cdef float* tw
    cdef float* tb
    for k in range(chunks):
        for i in range(kc):
            dwp[k, i] = 0
        for i in range(c):
            dbp[k, i] = 0
    if rows == 0 or ow == 0 or c == 0:
        return
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* dyp = &dy[0, 0, 0, 0]
    cdef const float* rop = &ro[0, 0, 0, 0] if has_ro else NULL
    cdef float* dwpp = &dwp[0, 0]
    cdef float* dbpp = &dbp[0, 0]
    cdef float* gmp = &gm[0, 0, 0, 0] if (has_ro and gm is not None) else NULL
    if gmp != NULL and (gm.shape[0] != dy.shape[0] or gm.shape[1] != oh or gm.shape[2] != ow or gm.shape[3] != c):
        raise ValueError("depthwise_backward_dw: gm must have dy's shape")
    cdef int nthreads = team_size(rows * row * kh * kw, chunks)
    cdef Py_ssize_t claim = chunk(chunks, nthreads, <double>rows * row * kh * kw / max(chunks, 1), BALANCE_WORK)
    for k in prange(chunks, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
        r0 = k * rows // chunks
        r1 = (k + 1) * rows // chunks
        tw = dwpp + k * kc
        tb = (dbpp + k * c) if has_bias else NULL
        for r in range(r0, r1):
            ni = <int>(r // oh)
            oy = <int>(r % oh)
            dc_dw_dw_row(xp + <Py_ssize_t>ni * h * wd * c, dyp + r * row, (rop + r * row) if has_ro else NULL,
                         (gmp + r * row) if gmp != NULL else NULL, tw, tb, h, wd, c, kh, kw, sw, dh, dw,
                         oy * sh - pt, pl, ow)


def relu_mask(const float[::1] dy, const float[::1] ro, float[::1] out):
    """``out = dy`` where ``ro > 0``, else 0 (a NaN in ``ro`` passes nothing): a fused ReLU's backward, once, before
    the kernels read the gradient several times each."""
    cdef Py_ssize_t size = dy.shape[0], i, start, stop, t
    cdef Py_ssize_t block = 1 << 14
    cdef Py_ssize_t tasks = (size + block - 1) // block
    cdef int nthreads = team_size(size, tasks)
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        start = t * block
        stop = min(start + block, size)
        for i in range(start, stop):
            out[i] = dy[i] if ro[i] > 0 else 0
