# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time max and average pooling (NHWC, float32): the forwards, one OpenMP task per (sample, output row), and
training's backward passes.

Raw pointers and clipped windows, channels innermost: the channel loops are contiguous runs the C compiler
vectorizes (memoryview indexing in the inner loop kept it scalar, 20x slower than the Numba kernel).
The taps of a window are visited in the reference's order (row-major), so the average is bit-identical to it.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport openmp

include "_cy_threads.pxi"
include "_cy_arrays.pxi"

cdef extern from "_pool.h" nogil:
    int DC_HAVE_SIMD
    void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw, int sw,
                         int pl, int ldy)
    void dc_avg_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw, int sw,
                         int pl, int ldy)


cdef inline void _max_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw,
                          int sw, int pl, int ldy) noexcept nogil:
    """One output row of the max pool: ``y`` holds ``ow`` pixels of ``c`` values, ``ldy`` apart; ``x`` is the
    sample (h, wd, c)."""
    cdef int ox, iy, ix, k, ix0
    cdef float v, m
    cdef float* yv
    cdef const float* xv
    for ox in range(ow):
        yv = y + ox * ldy
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
                          int sw, int pl, int ldy) noexcept nogil:
    """One output row of the average pool over each window's non-padded taps (TensorFlow's "same" rule); pixels
    ``ldy`` apart in ``y``."""
    cdef int ox, iy, ix, k, ix0, count
    cdef float inv
    cdef float* yv
    cdef const float* xv
    for ox in range(ow):
        yv = y + ox * ldy
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


def pool2d_forward(cnp.ndarray x not None, int ph, int pw, int sh, int sw, int pt, int pl, cnp.ndarray y not None,
                   bint average):
    """Max (or, with ``average``, mean) over each window into ``y``; padded positions never count."""
    cdef const float* xp = f32_data(x, 4, False, "pool2d_forward: x")
    cdef float* yp = f32_data(y, 4, True, "pool2d_forward: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, t
    cdef int nthreads = team_size(rows * ow * c * ph * pw, rows)
    if nthreads == 1:  # no OpenMP region: one costs about 1 us even on one thread (a batch-1 request's layer)
        with nogil:
            for t in range(rows):
                _pool_row(t, oh, xp, yp + t * ow * c, h, wd, c, ow, ph, pw, sh, sw, pt, pl, average, c)
        return
    cdef Py_ssize_t claim = chunk(rows, nthreads, <double>ow * c * ph * pw, BALANCE_WORK)
    for t in prange(rows, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
        _pool_row(t, oh, xp, yp + t * ow * c, h, wd, c, ow, ph, pw, sh, sw, pt, pl, average, c)


def pool2d_parts_forward(list parts, int ph, int pw, int sh, int sw, int pt, int pl, float[:, :, :, ::1] y,
                         bint average):
    """The pooling of the concatenation of ``parts`` along the channels into ``y``, each part read where it is:
    part ``i``'s channels are pooled into its channels of ``y`` (every channel is pooled on its own, so the bits of
    concatenating, then pooling, without the concatenated copy). The parts are (N, H, W, C_i) float32, C-contiguous,
    their channels adding up to ``y``'s. One task per (sample, output row), all parts."""
    cdef Py_ssize_t k = len(parts), i, t
    cdef int n = y.shape[0], oh = y.shape[1], ow = y.shape[2], cy = y.shape[3], h = 0, wd = 0, total = 0
    cdef const float[:, :, :, ::1] part
    cdef const float** ptrs = <const float**>malloc(max(k, 1) * sizeof(float*))
    cdef int* chans = <int*>malloc(max(k, 1) * sizeof(int))
    if ptrs == NULL or chans == NULL:
        free(ptrs)
        free(chans)
        raise MemoryError()
    try:
        for i in range(k):
            part = parts[i]
            if i == 0:
                h, wd = part.shape[1], part.shape[2]
            if part.shape[0] != n or part.shape[1] != h or part.shape[2] != wd:
                raise ValueError(f"pool2d_parts_forward: part {i} has shape {tuple(parts[i].shape)}, expected "
                                 f"({n}, {h}, {wd}, channels) as part 0 and y's batch")
            chans[i] = part.shape[3]
            total += chans[i]
            ptrs[i] = &part[0, 0, 0, 0] if part.size else NULL
        if total != cy:
            raise ValueError(f"pool2d_parts_forward: the parts have {total} channels in all, y has {cy}")
        _parts_rows(ptrs, chans, k, <Py_ssize_t>n * oh, oh, &y[0, 0, 0, 0] if y.size else NULL, h, wd, cy, ow, ph,
                    pw, sh, sw, pt, pl, average)
    finally:
        free(ptrs)
        free(chans)


cdef void _parts_rows(const float** ptrs, const int* chans, Py_ssize_t k, Py_ssize_t rows, int oh, float* yp, int h,
                      int wd, int cy, int ow, int ph, int pw, int sh, int sw, int pt, int pl, bint average):
    """The body of ``pool2d_parts_forward``: output row ``t`` of every part in one task."""
    cdef Py_ssize_t t
    if yp == NULL:
        return
    cdef int nthreads = team_size(rows * ow * cy * ph * pw, rows)
    if nthreads == 1:  # no OpenMP region (see pool2d_forward)
        with nogil:
            for t in range(rows):
                _parts_row(ptrs, chans, k, t, oh, yp + t * ow * cy, h, wd, cy, ow, ph, pw, sh, sw, pt, pl, average)
        return
    cdef Py_ssize_t claim = chunk(rows, nthreads, <double>ow * cy * ph * pw, BALANCE_WORK)
    for t in prange(rows, nogil=True, schedule="dynamic", chunksize=claim, num_threads=nthreads):
        _parts_row(ptrs, chans, k, t, oh, yp + t * ow * cy, h, wd, cy, ow, ph, pw, sh, sw, pt, pl, average)


cdef inline void _parts_row(const float** ptrs, const int* chans, Py_ssize_t k, Py_ssize_t t, int oh, float* yrow,
                            int h, int wd, int cy, int ow, int ph, int pw, int sh, int sw, int pt, int pl,
                            bint average) noexcept nogil:
    """Output row ``t`` of ``pool2d_parts_forward``: each part's channels at their offset in ``yrow``."""
    cdef Py_ssize_t i
    cdef int off = 0
    for i in range(k):
        if ptrs[i] != NULL:
            _pool_row(t, oh, ptrs[i], yrow + off, h, wd, chans[i], ow, ph, pw, sh, sw, pt, pl, average, cy)
        off += chans[i]


cdef inline void _pool_row(Py_ssize_t t, int oh, const float* xp, float* yrow, int h, int wd, int c, int ow, int ph,
                           int pw, int sh, int sw, int pt, int pl, bint average, int ldy) noexcept nogil:
    """Output row ``t`` (of all samples' rows) of ``pool2d_forward``, from the input ``xp`` (N, h, wd, c) into
    ``yrow`` (its pixels ``ldy`` apart)."""
    cdef int ni = <int>(t // oh), oy = <int>(t % oh)
    if average and DC_HAVE_SIMD:  # sums in registers, masked vectors (see _pool.h)
        dc_avg_pool_row(xp + <Py_ssize_t>ni * h * wd * c, yrow, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl, ldy)
    elif average:
        _avg_row(xp + <Py_ssize_t>ni * h * wd * c, yrow, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl, ldy)
    elif DC_HAVE_SIMD:  # masked vectors: fast for any channel count (see _pool.h)
        dc_max_pool_row(xp + <Py_ssize_t>ni * h * wd * c, yrow, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl, ldy)
    else:
        _max_row(xp + <Py_ssize_t>ni * h * wd * c, yrow, h, wd, c, ow, oy * sh - pt, ph, pw, sw, pl, ldy)


def global_pool2d_forward(cnp.ndarray x not None, cnp.ndarray y not None, bint average):
    """Max (or, with ``average``, mean) of ``x`` (N, H * W, C) over its rows into ``y`` (N, C); NaN propagates."""
    cdef const float* xp = f32_data(x, 3, False, "global_pool2d_forward: x")
    cdef float* yp = f32_data(y, 2, True, "global_pool2d_forward: y")
    cdef int n = x.shape[0], hw = x.shape[1], c = x.shape[2]
    cdef int ni
    # One task per sample: a batch of one then runs on one thread, but the pass reads each input once, which is
    # short next to the convolution that produced the map; splitting the channels too would only add scheduling.
    cdef int nthreads = team_size(<Py_ssize_t>n * hw * c, n)
    if nthreads == 1:  # no OpenMP region (see pool2d_forward)
        with nogil:
            for ni in range(n):
                _global_pool_sample(xp + <Py_ssize_t>ni * hw * c, yp + <Py_ssize_t>ni * c, hw, c, average)
        return
    for ni in prange(n, nogil=True, schedule="static", num_threads=nthreads):
        _global_pool_sample(xp + <Py_ssize_t>ni * hw * c, yp + <Py_ssize_t>ni * c, hw, c, average)


cdef inline void _global_pool_sample(const float* xv, float* yv, int hw, int c, bint average) noexcept nogil:
    """One sample of ``global_pool2d_forward``."""
    cdef int p, k
    cdef float v, m
    for k in range(c):
        yv[k] = 0 if average else -INFINITY
    # Rows in order, channels innermost (a contiguous run the compiler vectorizes): per channel, the sum runs in the
    # order NumPy's reference sums the rows and the division matches its mean, so the average is bit-identical to
    # it (the tests allow for a rounding, should NumPy's order change).
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


# --- backward passes (training) -------------------------------------------------------------------------------------

# A restrict-qualified pointer (Cython has no keyword for it): the output of a per-window loop, so that GCC does not
# test it for overlap with the inputs on every entry to a loop of a few vectors.
cdef extern from *:
    ctypedef float* float_restrict "float* __restrict__"


cdef inline float _kept(float v, uint32_t keep) noexcept nogil:
    """``v`` where ``keep`` (0 or 1), else +0.0: a select on the bits, which GCC vectorizes (a conditional stayed
    control flow, as in _cy_elementwise.pyx, whose helper this is)."""
    cdef uint32_t bits
    memcpy(&bits, &v, 4)
    bits = bits & (<uint32_t>0 - keep)
    memcpy(&v, &bits, 4)
    return v


cdef extern from *:
    const float ZERO "0.0f"  # a float literal: a bare 0 in a float expression is Cython's double 0.0

cdef enum:
    GBLOCK = 64  # channels per block of a window's gradient still to give (a buffer on each task's stack)


cdef inline void _max_back_window(const float* dyv, const float* yv, const float* x, float_restrict dx, int wd, int c,
                                  int m, int y0, int y1, int x0, int x1, float* g, bint add) noexcept nogil:
    """One window's ``m`` channels (``dyv``, ``yv``, ``x`` and ``dx`` offset to the first) to its first tap
    (row-major) equal to its max, over the window's taps ``[y0, y1) x [x0, x1)`` of the sample; ``g`` holds the
    gradient not yet given. ``add``: overlapping windows, whose gradients add up in ``dx``; otherwise each tap is
    written (as ``0 + value``, the reference's sum: +0.0 for a -0.0 gradient)."""
    cdef int iy, ix, k
    cdef float gk
    cdef uint32_t hit
    cdef const float* src = dyv  # the first tap reads dy itself: no copy into g (a memcpy call a window cost 8%)
    cdef const float* xv
    cdef float* dv
    for iy in range(y0, y1):
        for ix in range(x0, x1):
            xv = x + (<Py_ssize_t>iy * wd + ix) * c
            dv = dx + (<Py_ssize_t>iy * wd + ix) * c
            # The first hit takes the gradient; zeroing it in g makes later ties add +0 (as the reference's adds of
            # 0). A NaN max equals no tap: its window passes nothing.
            if add:
                for k in range(m):
                    gk = src[k]
                    hit = xv[k] == yv[k]
                    dv[k] = dv[k] + _kept(gk, hit)
                    g[k] = _kept(gk, 1 - hit)
            else:
                for k in range(m):
                    gk = src[k]
                    hit = xv[k] == yv[k]
                    dv[k] = _kept(gk, hit) + ZERO
                    g[k] = _kept(gk, 1 - hit)
            src = g


cdef inline void _max_back_windows(const float* dy, const float* x, const float* y, float_restrict dx, int h, int wd,
                                   int c, int ow, int oy0, int oy1, int ph, int pw, int sh, int sw, int pt, int pl,
                                   bint add) noexcept nogil:
    """Scatter the windows of output rows ``oy0..oy1-1`` of one sample (``x``, ``dx``: (h, wd, c); ``y``, ``dy``:
    (oh, ow, c)) into ``dx``, by blocks of channels.

    Windows in descending order (rows, then columns): a position several windows give to then adds their
    gradients in the reference's order (it loops over the taps, first tap first, which meets the windows covering
    a position last to first), so the sums are bit-identical to it."""
    cdef float g[GBLOCK]
    cdef int i, j, oy, ox, kb, k0, iy0, ix0
    cdef Py_ssize_t at
    for i in range(oy1 - oy0):
        oy = oy1 - 1 - i if add else oy0 + i  # without overlaps, ascending: the order memory is read in
        iy0 = oy * sh - pt
        for j in range(ow):
            ox = ow - 1 - j if add else j
            ix0 = ox * sw - pl
            at = (<Py_ssize_t>oy * ow + ox) * c
            for kb in range((c + GBLOCK - 1) // GBLOCK):
                k0 = kb * GBLOCK
                _max_back_window(dy + at + k0, y + at + k0, x + k0, dx + k0, wd, c, min(GBLOCK, c - k0),
                                 max(iy0, 0), min(iy0 + ph, h), max(ix0, 0), min(ix0 + pw, wd), g, add)


cdef inline void _zero_rows(float* dx, int wd, int c, int r0, int r1) noexcept nogil:
    if r1 > r0:
        memset(dx + <Py_ssize_t>r0 * wd * c, 0, <Py_ssize_t>(r1 - r0) * wd * c * sizeof(float))


cdef inline void _zero_uncovered(float* dx, int h, int wd, int c, int ow, int oy, int r0, int r1, int ph, int pw,
                                 int sh, int sw, int pt, int pl) noexcept nogil:
    """Zero the positions of rows ``r0..r1-1`` that no window of output row ``oy`` covers, for windows that
    overlap in neither direction (the others are written once each): rows above and below the windows, and
    columns left of, between and right of them."""
    cdef int y0 = min(max(oy * sh - pt, r0), r1), y1 = min(max(oy * sh - pt + ph, y0), r1), ox, x0, done = 0, iy
    _zero_rows(dx, wd, c, r0, y0)
    _zero_rows(dx, wd, c, y1, r1)
    for ox in range(ow + 1):
        x0 = wd if ox == ow else min(max(ox * sw - pl, done), wd)
        if x0 > done:
            for iy in range(y0, y1):
                memset(dx + (<Py_ssize_t>iy * wd + done) * c, 0, <Py_ssize_t>(x0 - done) * c * sizeof(float))
        if ox < ow:
            done = min(max(ox * sw - pl + pw, x0), wd)


def max_pool2d_backward(const float[:, :, :, ::1] dy, const float[:, :, :, ::1] x, const float[:, :, :, ::1] y,
                        int ph, int pw, int sh, int sw, int pt, int pl, float[:, :, :, ::1] dx):
    """Gradient of the max pool into ``dx`` (every element written). Windows that cannot overlap vertically
    (``sh >= ph``) give one task per (sample, output row), which owns the input rows from its windows' first to the
    next row's (and the uncovered rows at either end); otherwise one task per sample. Either way each element's
    sum runs in one task in a fixed order: the result does not depend on the threads. Windows that overlap in
    neither direction (the usual pool == strides) write each tap once, with no zeroing pass before."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef bint bands = sh >= ph, add = sh < ph or sw < pw
    cdef Py_ssize_t per = oh if bands else 1, tasks = n * per, t, xs = <Py_ssize_t>h * wd * c, ys
    cdef int ni, oy, r0, r1
    ys = <Py_ssize_t>oh * ow * c
    if n == 0 or h == 0 or wd == 0 or c == 0:
        return
    cdef float* dxp = &dx[0, 0, 0, 0]
    if oh == 0 or ow == 0:  # no window: no gradient
        memset(dxp, 0, n * xs * sizeof(float))
        return
    cdef const float* dyp = &dy[0, 0, 0, 0]
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* yp = &y[0, 0, 0, 0]
    cdef int nthreads = team_size(<Py_ssize_t>n * oh * ow * c * ph * pw * 2, tasks)
    for t in prange(tasks, nogil=True, schedule="static", num_threads=nthreads):
        ni = <int>(t // per)
        if bands:
            oy = <int>(t % per)
            r0 = 0 if oy == 0 else min(max(oy * sh - pt, 0), h)
            r1 = h if oy == oh - 1 else min(max((oy + 1) * sh - pt, 0), h)
            if add:
                _zero_rows(dxp + ni * xs, wd, c, r0, r1)
            else:
                _zero_uncovered(dxp + ni * xs, h, wd, c, ow, oy, r0, r1, ph, pw, sh, sw, pt, pl)
            _max_back_windows(dyp + ni * ys, xp + ni * xs, yp + ni * ys, dxp + ni * xs, h, wd, c, ow, oy, oy + 1,
                              ph, pw, sh, sw, pt, pl, add)
        else:
            _zero_rows(dxp + ni * xs, wd, c, 0, h)
            _max_back_windows(dyp + ni * ys, xp + ni * xs, yp + ni * ys, dxp + ni * xs, h, wd, c, ow, 0, oh,
                              ph, pw, sh, sw, pt, pl, True)


cdef inline int _first_covering(int i, int k, int s, int pad) noexcept nogil:
    """The first window (along one axis) that covers input position ``i``: ``ceil((i + pad - k + 1) / s)``, at
    least 0 (C's division truncates, so the numerator is kept non-negative)."""
    cdef int num = i + pad - k + 1
    return 0 if num <= 0 else (num + s - 1) // s


cdef inline void _avg_share_row(const float* dy, float_restrict q, int h, int wd, int c, int ow, int oy, int ph,
                                int pw, int sh, int sw, int pt, int pl) noexcept nogil:
    """Output row ``oy`` of one sample: ``q = dy / count``, each window's share of its gradient (the reference's
    float32 division)."""
    cdef int ox, wx, k
    cdef int wy = oy * sh - pt
    cdef int cy = min(wy + ph, h) - max(wy, 0)
    cdef float cnt
    for ox in range(ow):
        wx = ox * sw - pl
        cnt = <float>(cy * (min(wx + pw, wd) - max(wx, 0)))
        for k in range(ox * c, (ox + 1) * c):
            q[k] = dy[k] / cnt


cdef inline void _avg_back_row(const float* dy, float_restrict dx, int h, int wd, int c, int oh, int ow, int iy, int ph,
                               int pw, int sh, int sw, int pt, int pl, bint shared) noexcept nogil:
    """Input row ``iy`` of one sample (``dx``: that row, (wd, c); ``dy``: the sample, (oh, ow, c)): each pixel sums
    ``dy / count`` over the windows covering it, last window first: the reference's division and its order of
    addition (it loops over the taps, which meets the windows covering a position last to first), so the result
    is bit-identical to it. ``shared``: ``dy`` holds the shares ``dy / count`` already (overlapping windows, where
    each share is added to several pixels: the division once, not at each)."""
    cdef int oy0 = _first_covering(iy, ph, sh, pt), oy1 = min((iy + pt) // sh + 1, oh)
    cdef int ix, ox0, ox1, oy, ox, wy, wx, cy, k
    cdef bint first
    cdef float cnt
    cdef float* dv
    cdef const float* gv
    for ix in range(wd):
        dv = dx + <Py_ssize_t>ix * c
        ox0 = _first_covering(ix, pw, sw, pl)
        ox1 = min((ix + pl) // sw + 1, ow)
        first = True
        for oy in range(oy1 - 1, oy0 - 1, -1):
            wy = oy * sh - pt
            cy = min(wy + ph, h) - max(wy, 0)
            for ox in range(ox1 - 1, ox0 - 1, -1):
                gv = dy + (<Py_ssize_t>oy * ow + ox) * c
                # The first window writes 0 + its share (no zeroing pass: GCC made that loop a memset call a pixel)
                if shared:
                    if first:
                        for k in range(c):
                            dv[k] = ZERO + gv[k]
                    else:
                        for k in range(c):
                            dv[k] = dv[k] + gv[k]
                else:
                    wx = ox * sw - pl
                    cnt = <float>(cy * (min(wx + pw, wd) - max(wx, 0)))
                    if first:
                        for k in range(c):
                            dv[k] = ZERO + gv[k] / cnt
                    else:
                        for k in range(c):
                            dv[k] = dv[k] + gv[k] / cnt
                first = False
        if first:  # a pixel no window covers (strides larger than the pool)
            memset(dv, 0, c * sizeof(float))


def avg_pool2d_backward(const float[:, :, :, ::1] dy, int ph, int pw, int sh, int sw, int pt, int pl,
                        float[:, :, :, ::1] dx):
    """Gradient of the average pool into ``dx`` (every element written): a gather, one task per (sample, input
    row), so no two tasks write one element. Overlapping windows first divide ``dy`` by the counts into a scratch
    array (one task per output row), once for all the pixels each share goes to."""
    cdef int n = dx.shape[0], h = dx.shape[1], wd = dx.shape[2], c = dx.shape[3]
    cdef int oh = dy.shape[1], ow = dy.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * h, t, ys = <Py_ssize_t>oh * ow * c
    cdef int ni, iy
    cdef bint shared = sh < ph or sw < pw
    if rows == 0 or wd == 0 or c == 0:
        return
    cdef float* dxp = &dx[0, 0, 0, 0]
    if oh == 0 or ow == 0:
        memset(dxp, 0, rows * wd * c * sizeof(float))
        return
    cdef const float* dyp = &dy[0, 0, 0, 0]
    cdef int nthreads = team_size(<Py_ssize_t>n * oh * ow * c * ph * pw * 2, rows)
    cdef float* q = NULL
    cdef Py_ssize_t r
    if shared and n >= 2 * nthreads:
        # One task per sample, its shares in the thread's own scratch while its rows gather them (in L2): a
        # batch's worth of shares went to memory and back. Measured on the Zen 3 (one thread, the inception's 3x3
        # stride-1 pool, 32 x 32 x 32 at batch 64): 10.4 -> 3.75 ms, at batch 16 0.95 -> 0.77 ms.
        q = <float*>malloc(nthreads * ys * sizeof(float))
        if q == NULL:
            raise MemoryError()
        try:
            for t in prange(n, nogil=True, schedule="static", num_threads=nthreads):
                for r in range(oh):
                    _avg_share_row(dyp + (t * oh + r) * ow * c, q + openmp.omp_get_thread_num() * ys + r * ow * c,
                                   h, wd, c, ow, <int>r, ph, pw, sh, sw, pt, pl)
                for r in range(h):
                    _avg_back_row(q + openmp.omp_get_thread_num() * ys, dxp + (t * h + r) * wd * c, h, wd, c, oh,
                                  ow, <int>r, ph, pw, sh, sw, pt, pl, True)
        finally:
            free(q)
        return
    if shared:  # a few samples: every thread on every sample's rows, the shares of all of them first
        q = <float*>malloc(n * ys * sizeof(float))
        if q == NULL:
            raise MemoryError()
        for t in prange(<Py_ssize_t>n * oh, nogil=True, schedule="static", num_threads=nthreads):
            _avg_share_row(dyp + t * ow * c, q + t * ow * c, h, wd, c, ow, <int>(t % oh), ph, pw, sh, sw, pt, pl)
        dyp = q
    try:
        for t in prange(rows, nogil=True, schedule="static", num_threads=nthreads):
            ni = <int>(t // h)
            iy = <int>(t % h)
            _avg_back_row(dyp + ni * ys, dxp + t * wd * c, h, wd, c, oh, ow, iy, ph, pw, sh, sw, pt, pl, shared)
    finally:
        free(q)


def global_avg_pool2d_backward(const float[:, ::1] dy, float[:, :, ::1] dx):
    """``dx`` (N, H * W, C) = ``dy / (H * W)`` at every position: the reference's float32 division, bit for bit."""
    cdef int n = dx.shape[0], hw = dx.shape[1], c = dx.shape[2]
    cdef int ni, p, k
    cdef float cnt = <float>hw
    cdef float* dv
    cdef const float* gv
    if n == 0 or hw == 0 or c == 0:
        return
    cdef float* dxp = &dx[0, 0, 0]
    cdef const float* dyp = &dy[0, 0]
    for ni in prange(n, nogil=True, schedule="static", num_threads=team_size(<Py_ssize_t>n * hw * c, n)):
        dv = dxp + <Py_ssize_t>ni * hw * c
        gv = dyp + <Py_ssize_t>ni * c
        for k in range(c):
            dv[k] = gv[k] / cnt
        for p in range(1, hw):
            memcpy(dv + <Py_ssize_t>p * c, dv, c * sizeof(float))


cdef inline void _global_max_back_block(const float* dy, const float* x, const float* y, float_restrict dx, int hw,
                                        int c, int k0, int m) noexcept nogil:
    """Channels ``k0..k0+m-1`` of one sample (``x``, ``dx``: (hw, c)): each channel's ``dy`` at its first position
    equal to its max, 0 at every other (every element written once: no zeroing pass)."""
    cdef float g[GBLOCK]
    cdef int p, k
    cdef float gk
    cdef uint32_t hit
    cdef const float* xv
    cdef float* dv
    memcpy(g, dy + k0, m * sizeof(float))
    for p in range(hw):
        xv = x + <Py_ssize_t>p * c + k0
        dv = dx + <Py_ssize_t>p * c + k0
        for k in range(m):
            gk = g[k]
            hit = xv[k] == y[k0 + k]  # a NaN max equals no position: the channel passes nothing
            dv[k] = _kept(gk, hit)
            g[k] = _kept(gk, 1 - hit)


def global_max_pool2d_backward(const float[:, ::1] dy, const float[:, :, ::1] x, const float[:, ::1] y,
                               float[:, :, ::1] dx):
    """Gradient of the global max pool: ``x`` and ``dx`` (N, H * W, C), ``y`` and ``dy`` (N, C); one task per
    sample, which writes each of its elements once. Exact: no arithmetic."""
    cdef int n = x.shape[0], hw = x.shape[1], c = x.shape[2]
    cdef int ni, kb
    cdef Py_ssize_t xs = <Py_ssize_t>hw * c
    if n == 0 or hw == 0 or c == 0:
        return
    cdef const float* dyp = &dy[0, 0]
    cdef const float* xp = &x[0, 0, 0]
    cdef const float* yp = &y[0, 0]
    cdef float* dxp = &dx[0, 0, 0]
    for ni in prange(n, nogil=True, schedule="static", num_threads=team_size(<Py_ssize_t>n * xs * 2, n)):
        for kb in range((c + GBLOCK - 1) // GBLOCK):
            _global_max_back_block(dyp + <Py_ssize_t>ni * c, xp + ni * xs, yp + <Py_ssize_t>ni * c, dxp + ni * xs, hw,
                                   c, kb * GBLOCK, min(GBLOCK, c - kb * GBLOCK))
