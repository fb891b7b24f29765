# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""Ahead-of-time inference kernels: conv2d (direct, Winograd, implicit GEMM or im2col panels) and dense, with fused
bias + ReLU.

On the avx512 and avx2 variants every product runs on dropcore's own GEMM (``_gemm.h``), whose sums do not depend on
the batch, the row split or the thread count. The generic variant calls BLAS sgemm instead: row-major matrices are
column-major transposes, so ``Y = A @ W`` (row-major, ``A`` is ``(rows, K)``, ``W`` is ``(K, cout)``) is computed as
the column-major ``Y^T = W^T A^T``: ``sgemm("N", "N", cout, rows, K, W, A, Y)`` with the leading dimensions
``cout``, ``K``, ``cout``.

The output rows are cut into panels of a fixed height that depends only on the layer's shapes (never on the thread
count), and each OpenMP thread fills its own im2col buffer for the panel it runs: so the result is the same
whatever the number of threads.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer

cimport openmp

include "_cy_threads.pxi"
import numpy as np

cdef extern from "_gemm.h" nogil:
    int DC_HAVE_AVX512
    int DC_HAVE_FAST_GEMM
    enum:
        DC_MR
        DC_KC
    void dc_sgemm_rm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc)
    void dc_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb, float* C, int ldc,
                 int accumulate)

cdef extern from "_pool.h" nogil:
    void dc_max_pool_row(const float* x, float* y, int h, int wd, int c, int ow, int iy0, int ph, int pw, int sw,
                         int pl)
    void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_, float* y,
                                unsigned char* arg)

cdef extern from "_winograd.h" nogil:
    int DC_HAVE_WINOGRAD
    void dc_wino_weights(const float* w, int cin, int cout, float* u)
    void dc_wino_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias, int pt,
                      int pl, int oh, int ow, long ni, int ty0, int ty1, float* y, int pool, int relu, float* scratch,
                      unsigned char* arg)
    void dc_wino_dw_rows(const float* x, int h, int wd, int cin, const float* dy, int cout, int pt, int pl, int oh,
                         int ow, long ni, int ty0, int ty1, float* du, float* scratch)
    void dc_wino_rows_flagged(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias,
                              int has_bias, int pt, int pl, int oh, int ow, long ni, int ty0, int ty1, float* y,
                              int pool, int relu, float* scratch, unsigned char* arg, int has_arg)

cdef extern from "_direct_conv.h" nogil:
    long dc_direct_scratch(int rows, int kh, int sh, int wd, int kw, int sw, int pl, int ow, int cin)
    void dc_conv_direct_rows(const float* x, int h, int wd, int cin, const float* w, int kh, int kw, int cout,
                             const float* bias, int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1,
                             float* y, float* pad, int relu)
    void dc_conv_direct_rows_flagged(const float* x, int h, int wd, int cin, const float* w, int kh, int kw,
                                     int cout, const float* bias, int sh, int sw, int pt, int pl, int ow, long ni,
                                     int oy0, int oy1, float* y, float* pad, int relu, int has_bias, int padded)

#: Whether this variant is the AVX-512 one (isa_avx512).
HAVE_AVX512 = bool(DC_HAVE_AVX512)
#: Whether the GEMMs, the direct convolution and the vector pooling run on dropcore's own kernels (``_gemm.h``: the
#: avx512 and avx2 variants) or, on the generic variant, on BLAS and portable loops.
HAVE_FAST_GEMM = bool(DC_HAVE_FAST_GEMM)
#: Whether 3x3 stride-1 convolutions can run on Winograd's tiles (``_winograd.h``: the avx512 and avx2 variants).
HAVE_WINOGRAD = bool(DC_HAVE_WINOGRAD)
#: Batches of at most this many rows (one register tile) run ``dense_forward`` split over the rows of ``w``
#: (``_dense_split_k``) on dropcore's own GEMM.
SPLIT_K_ROWS = DC_MR

# Floats per im2col panel (256 KiB): small enough to stay in L2 next to the weights, large enough for sgemm to be
# efficient. A constant, so panel boundaries never depend on the thread count.
cdef enum:
    PANEL_FLOATS = 65536
    MIN_PANELS = 8
    DENSE_ROWS = 64
    DENSE_COLS = 64  # columns per block when a small batch is split over the output columns (a full GEMM tile)
    GEMV_ROWS = 8  # on BLAS, up to this many rows, one matrix-vector product per row (sgemm would pack all of w
                   # first); dropcore's own GEMM packs nothing and reads w once for all rows (batch 1: 40 -> 34 us on
                   # mnist's 9216 x 128 layer; 4 rows: 160 -> 58 us)

# Whether the panels may run on several OpenMP threads: only while BLAS itself runs on one thread (see
# ``cython_ops``), since every OpenMP thread calling a multi-threaded OpenBLAS oversubscribes the cores (5x slower).
# The count is read again on every call (a C call of a few ns): other code in the process, threadpoolctl for one,
# may raise it after the kernels loaded, and then the kernels leave the parallelism to BLAS.
cdef bint _parallel_panels = False
ctypedef int (*get_threads_t)() noexcept nogil
cdef get_threads_t _blas_threads = NULL

# SciPy's ``cython_blas.sgemm`` (and sgemv), taken from the module's C-API capsules by ``bind_blas`` (called once on
# import by ``cython_ops``) rather than cimported: a cimport imports the whole ``scipy.linalg`` package (0.5 s of
# cold start).
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*,
                         int*) noexcept nogil
cdef sgemm_t sgemm = NULL
ctypedef void (*sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*, float*, float*, int*) noexcept nogil
cdef sgemv_t sgemv = NULL


def bind_blas(gemm_capsule, gemv_capsule):
    """Bind sgemm and sgemv from SciPy's ``cython_blas.__pyx_capi__``."""
    global sgemm, sgemv
    sgemm = <sgemm_t>PyCapsule_GetPointer(gemm_capsule, PyCapsule_GetName(gemm_capsule))
    sgemv = <sgemv_t>PyCapsule_GetPointer(gemv_capsule, PyCapsule_GetName(gemv_capsule))


def set_parallel_panels(bint on, size_t blas_threads_address=0):
    """Allow (``on``) several OpenMP threads per GEMM kernel; set once when the kernels are loaded.

    ``blas_threads_address``: the address of the BLAS's ``openblas_get_num_threads``, checked on every call.
    """
    global _parallel_panels, _blas_threads
    _parallel_panels = on
    _blas_threads = <get_threads_t>blas_threads_address


cdef enum:
    # The floating-point operations a thread must get for waking it to pay: an OpenMP region on this 2-core EPYC
    # costs 1.35 us over a serial call (a 16-output conv on a 6x6 input: 1.7 us on one thread, 3.05 on two), and
    # 512K flops take a core 3-5 us on these kernels, a few region costs, so a thread never works for less than it
    # costs. mnist_cnn at batch 1: its first layer (0.4 MFLOP) runs on one thread, the others on all.
    GRAIN_FLOPS = 524288
    # The bytes of weights a thread must get for waking it to pay in a product that streams them (a small batch
    # through a large dense layer: memory-bound, so its flops undercount it): 256 KiB take a core ~2-3 us from L3.
    GRAIN_BYTES = 262144


cdef int _threads(Py_ssize_t tasks, bint blas, double flops) noexcept:
    """OpenMP threads for ``tasks`` tasks doing ``flops`` in all: as many as the work pays for (``GRAIN_FLOPS``
    each); with ``blas`` (the tasks call BLAS) only while BLAS runs on one thread."""
    if blas and (not _parallel_panels or (_blas_threads != NULL and _blas_threads() > 1)):
        return 1
    cdef Py_ssize_t paid = <Py_ssize_t>(flops / GRAIN_FLOPS)
    return <int>max(1, min(<Py_ssize_t>max_threads(), min(tasks, paid)))


cdef inline void _epilogue(float* y, Py_ssize_t rows, int cols, int ld, const float* b, bint has_bias,
                           bint relu) noexcept nogil:
    """Add the bias and apply ReLU on a block of output rows (``cols`` wide, rows ``ld`` apart) while it is still in
    cache (NaN passes through)."""
    cdef Py_ssize_t r
    cdef int c
    cdef float v
    cdef float* row
    if not has_bias and not relu:
        return
    for r in range(rows):
        row = y + r * ld
        for c in range(cols):
            v = row[c]
            if has_bias:
                v = v + b[c]
            if relu and v < 0:
                v = 0
            row[c] = v


cdef inline void _im2col(const float* x, float* a, Py_ssize_t g0, Py_ssize_t rows, int h, int wd, int cin,
                         int kh, int kw, int sh, int sw, int pt, int pl, int oh, int ow) noexcept nogil:
    """Fill ``a`` (rows x kh*kw*cin) with the input windows of output pixels ``g0 .. g0 + rows``."""
    cdef Py_ssize_t r, g, ni, rem
    cdef int oy, ox, i, j, iy, ix0, ix
    cdef int k = kh * kw * cin
    cdef int span = kw * cin
    cdef float* dst
    for r in range(rows):
        g = g0 + r
        ni = g // (oh * ow)
        rem = g - ni * (oh * ow)
        oy = <int>(rem // ow)
        ox = <int>(rem - oy * ow)
        dst = a + r * k
        ix0 = ox * sw - pl
        for i in range(kh):
            iy = oy * sh - pt + i
            if iy < 0 or iy >= h:
                memset(dst + i * span, 0, span * sizeof(float))
            elif ix0 >= 0 and ix0 + kw <= wd:
                # The kw taps of one kernel row are kw neighbouring pixels: one contiguous copy in NHWC.
                memcpy(dst + i * span, x + ((ni * h + iy) * wd + ix0) * cin, span * sizeof(float))
            else:
                for j in range(kw):
                    ix = ix0 + j
                    if ix < 0 or ix >= wd:
                        memset(dst + i * span + j * cin, 0, cin * sizeof(float))
                    else:
                        memcpy(dst + i * span + j * cin, x + ((ni * h + iy) * wd + ix) * cin, cin * sizeof(float))


def panel_rows(int k, Py_ssize_t m):
    """Rows per im2col panel for a patch length ``k`` and ``m`` output pixels in all.

    At most a panel of ``PANEL_FLOATS``; for small outputs (batch 1) at least ``MIN_PANELS`` panels so that every
    thread gets work. Depends on the shapes only, never on the thread count.
    """
    return <int>max(8, min(PANEL_FLOATS // max(k, 1), (m + MIN_PANELS - 1) // MIN_PANELS))


def conv2d_forward(const float[:, :, :, ::1] x, const float[:, :, :, ::1] w, const float[::1] b, bint has_bias,
                   int sh, int sw, int pt, int pl, float[:, :, :, ::1] y, bint relu):
    """``y = conv(x, w) + b`` (then ReLU when ``relu``) into the preallocated ``y`` of shape (N, OH, OW, cout)."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef int k = kh * kw * cin
    cdef Py_ssize_t m = <Py_ssize_t>n * oh * ow
    cdef int rows_per = panel_rows(k, m)
    cdef Py_ssize_t npanels = (m + rows_per - 1) // rows_per
    cdef bint direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == wd
    cdef int nthreads = _threads(npanels, not DC_HAVE_FAST_GEMM, 2.0 * m * k * cout)
    cdef float[:, ::1] bufs = np.empty((1 if direct else nthreads, rows_per * k), dtype=np.float32)
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef float* a
    cdef Py_ssize_t p, g0
    cdef int rows
    cdef float one = 1.0, zero = 0.0
    with nogil, parallel(num_threads=nthreads):
        for p in prange(npanels, schedule="dynamic"):
            g0 = p * rows_per
            rows = <int>min(<Py_ssize_t>rows_per, m - g0)
            if direct:  # a 1x1 stride-1 convolution: the input rows are the patches, no copy needed
                a = <float*>(xp + g0 * cin)
            else:
                a = &bufs[threadid(), 0]
                _im2col(xp, a, g0, rows, h, wd, cin, kh, kw, sh, sw, pt, pl, oh, ow)
            if DC_HAVE_FAST_GEMM:
                dc_sgemm_rm(rows, cout, k, a, k, wp, cout, yp + g0 * cout, cout)
            else:
                sgemm("N", "N", &cout, &rows, &k, &one, <float*>wp, &cout, a, &k, &zero, yp + g0 * cout, &cout)
            _epilogue(yp + g0 * cout, rows, cout, cout, bp, has_bias, relu)


cdef inline void _implicit_row(const float* xp, int h, int wd, int cin, const float* wp, int kh, int kw, int cout,
                               const float* bp, bint has_bias, int sh, int sw, int ow, Py_ssize_t ni, int oy,
                               float* yrow, bint relu) noexcept nogil:
    """One output row of the implicit-GEMM convolution (see ``conv2d_implicit``), bias and ReLU applied."""
    cdef int i, span = kw * cin
    for i in range(kh):
        dc_gemm(ow, cout, span, xp + ((<Py_ssize_t>ni * h + oy * sh + i) * wd) * cin, sw * cin, 1,
                wp + <Py_ssize_t>i * span * cout, cout, yrow, cout, i > 0)
    _epilogue(yrow, ow, cout, cout, bp, has_bias, relu)


def conv2d_implicit(const float[:, :, :, ::1] x, const float[:, :, :, ::1] w, const float[::1] b, bint has_bias,
                    int sh, int sw, float[:, :, :, ::1] y, bint relu):
    """``y = conv(x, w) + b`` (then ReLU) for a convolution without padding, with no im2col copy at all.

    In NHWC, the ``kw * cin`` inputs one kernel row sees are contiguous, and the windows of neighbouring output
    pixels start ``sw * cin`` floats apart: for each output row and each kernel row ``i``, the patches form a
    matrix whose rows overlap in memory (row stride ``sw * cin``), which dropcore's GEMM reads in place. Each
    output row is then ``kh`` products accumulated into it, and the bias and ReLU follow while it is in cache.
    Only with dropcore's own GEMM (callers check ``HAVE_FAST_GEMM``).
    """
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, t
    cdef int nthreads = _threads(rows, False, 2.0 * rows * ow * kh * kw * cin * cout)
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    with nogil, parallel(num_threads=nthreads):
        for t in prange(rows, schedule="static"):
            _implicit_row(xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, ow, t // oh, <int>(t % oh),
                          yp + t * ow * cout, relu)


cdef inline int _rows_per_task(Py_ssize_t n, int rows) noexcept:
    """Output rows per task of a row-parallel kernel: a whole sample when the batch has ``MIN_PANELS`` or more, else
    about ``1 / MIN_PANELS`` of one, so that a batch of 1 still keeps every thread busy."""
    return rows if n >= MIN_PANELS else max(1, (rows + MIN_PANELS - 1) // MIN_PANELS)


def conv2d_direct(const float[:, :, :, ::1] x, const float[:, :, :, ::1] w, const float[::1] b, bint has_bias,
                  int sh, int sw, int pt, int pl, bint padded, float[:, :, :, ::1] y, bint relu):
    """``y = conv(x, w) + b`` (then ReLU) for a layer whose weights fit in L1 (``geometry.direct_conv_pays``).

    Each task is a block of output rows of one sample (a whole sample when the batch has enough of them, else
    about 1/8 of one); each keeps its tiles of outputs in registers over the whole window (see
    ``_direct_conv.h``). ``padded``: some window leaves the input, so each task first copies the input rows
    it reads into zero-padded scratch rows. Only with dropcore's own kernels (callers check ``HAVE_FAST_GEMM``).
    """
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef int block = _rows_per_task(n, oh)
    cdef int blocks = (oh + block - 1) // block
    cdef Py_ssize_t tasks = <Py_ssize_t>n * blocks, t
    cdef int nthreads = _threads(tasks, False, 2.0 * n * oh * ow * kh * kw * cin * cout)
    cdef Py_ssize_t scratch = dc_direct_scratch(block, kh, sh, wd, kw, sw, pl, ow, cin) if padded else 1
    cdef float[:, ::1] pads = np.empty((nthreads, scratch), dtype=np.float32)
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef Py_ssize_t ni
    cdef int oy0
    with nogil, parallel(num_threads=nthreads):
        for t in prange(tasks, schedule="static"):
            ni = t // blocks
            oy0 = <int>(t % blocks) * block
            dc_conv_direct_rows(xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, ow, ni, oy0,
                                min(oy0 + block, oh), yp + (ni * oh + oy0) * ow * cout,
                                &pads[threadid(), 0] if padded else NULL, relu)


def conv2d_max_pool(const float[:, :, :, ::1] x, const float[:, :, :, ::1] w, const float[::1] b, bint has_bias,
                    int sh, int sw, int pt, int pl, bint direct, bint padded, int oh, int ow, int ph, int pw,
                    float[:, :, :, ::1] y, bint relu):
    """``y = max_pool(relu?(conv(x, w) + b))`` for a max pooling of ``ph x pw`` windows, strides equal to the
    window, no padding (Keras's ``MaxPooling2D(2)``), without the convolution's output ever leaving the cache.

    Each task computes the convolution rows of a band of pooled rows of one sample (the whole sample when the
    batch has 8 or more, about an eighth of one otherwise) into its own scratch, on the direct kernel (``direct``)
    or the implicit GEMM, then pools them into ``y``: the full-size convolution output (cifar's first layer: 59 MB
    at batch 256) is never written to memory and read back. ``oh``, ``ow``: the convolution's output size.
    Only with dropcore's own kernels (callers check ``HAVE_FAST_GEMM``); results equal the two separate kernels'.
    """
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int poh = y.shape[1], pow_ = y.shape[2]
    cdef int band = _rows_per_task(n, poh)
    cdef int bands = (poh + band - 1) // band
    cdef Py_ssize_t tasks = <Py_ssize_t>n * bands, t
    cdef int nthreads = _threads(tasks, False, 2.0 * n * oh * ow * kh * kw * cin * cout)
    cdef Py_ssize_t scratch = dc_direct_scratch(band * ph, kh, sh, wd, kw, sw, pl, ow, cin) if padded else 1
    cdef float[:, ::1] pads = np.empty((nthreads, scratch), dtype=np.float32)
    cdef float[:, ::1] convs = np.empty((nthreads, <Py_ssize_t>band * ph * ow * cout), dtype=np.float32)
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef float* c
    cdef Py_ssize_t ni
    cdef int p0, p1, oy, py
    with nogil, parallel(num_threads=nthreads):
        for t in prange(tasks, schedule="static"):
            ni = t // bands
            p0 = <int>(t % bands) * band
            p1 = min(p0 + band, poh)
            c = &convs[threadid(), 0]
            if direct:
                dc_conv_direct_rows(xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, ow, ni, p0 * ph, p1 * ph, c,
                                    &pads[threadid(), 0] if padded else NULL, relu)
            else:
                for oy in range(p0 * ph, p1 * ph):
                    _implicit_row(xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, ow, ni, oy,
                                  c + <Py_ssize_t>(oy - p0 * ph) * ow * cout, relu)
            for py in range(p0, p1):
                dc_max_pool_row(c, yp + (ni * poh + py) * pow_ * cout, (p1 - p0) * ph, ow, cout, pow_, (py - p0) * ph,
                                ph, pw, pw, 0)


def winograd_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u):
    """Fill ``u`` (16, cin, cout) with the Winograd F(2x2, 3x3) transform of the 3x3 kernel ``w`` (3, 3, cin, cout)
    (``_winograd.h``). Only where the variant has them (callers check ``HAVE_WINOGRAD``)."""
    with nogil:
        dc_wino_weights(&w[0, 0, 0, 0], <int>w.shape[2], <int>w.shape[3], &u[0, 0, 0])


def conv2d_winograd(const float[:, :, :, ::1] x, const float[:, :, ::1] u, const float[::1] b, bint has_bias, int pt,
                    int pl, int oh, int ow, float[:, :, :, ::1] y, bint relu, bint pool):
    """``y = conv(x, w) + b`` (then ReLU) for a 3x3 kernel at stride 1 on Winograd F(2x2, 3x3), from ``u`` =
    ``winograd_weights(w)``; with ``pool``, ``y`` is the 2x2 max pooling (strides 2) of that instead. ``oh``,
    ``ow``: the convolution's output size; ``pt``, ``pl``: its padding.

    Each task is a band of tile rows (2 output rows each) of one sample: a few rows at small batches, so that a
    batch of 1 keeps every thread busy, up to 4 (98 KiB of transforms for 64 channels in, 64 out) otherwise.
    Only where the variant has them (callers check ``HAVE_WINOGRAD`` and ``geometry.winograd_pays``).
    """
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3], cout = u.shape[2]
    cdef int tw = (ow + 1) // 2
    cdef int th = oh // 2 if pool else (oh + 1) // 2
    cdef int band = min(4, th if n >= MIN_PANELS else max(1, (th + MIN_PANELS - 1) // MIN_PANELS))
    cdef int bands = (th + band - 1) // band
    cdef Py_ssize_t tasks = <Py_ssize_t>n * bands, t
    cdef int nthreads = _threads(tasks, False, 2.0 * n * oh * ow * cin * cout * 4)  # 16 products per 4 outputs
    # each thread's transforms on a 64-byte boundary (rows of 16 floats stay aligned when cin, cout are multiples of
    # 16): an unaligned scratch cost up to 15% of a batch-1 prediction, depending on where NumPy put it
    cdef Py_ssize_t per = (16 * band * tw * (cin + cout) + 15) // 16 * 16
    cdef float[::1] raw = np.empty(nthreads * per + 16, dtype=np.float32)
    cdef float* base = <float*>((<size_t>&raw[0] + 63) & ~(<size_t>63))
    cdef Py_ssize_t sample = <Py_ssize_t>y.shape[1] * y.shape[2] * cout
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* up = &u[0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef int ty0
    with nogil, parallel(num_threads=nthreads):
        for t in prange(tasks, schedule="static"):
            ty0 = <int>(t % bands) * band
            dc_wino_rows(xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, t // bands, ty0, min(ty0 + band, th),
                         yp + (t // bands) * sample, pool, relu, base + threadid() * per, NULL)


def dense_forward(const float[:, ::1] x, const float[:, ::1] w, const float[::1] b, bint has_bias,
                  float[:, ::1] y, bint relu):
    """``y = x @ w + b`` (then ReLU when ``relu``) into the preallocated ``y`` of shape (N, out).

    Tasks are (row block, column block) pairs: large batches split over rows only (each task streams all of
    ``w`` once per ``DENSE_ROWS`` rows); small batches also split over the output columns, so both cores share
    the read of ``w`` (which dominates at batch 1) instead of one core reading it all. On dropcore's own GEMM, a
    batch of at most ``SPLIT_K_ROWS`` rows splits ``w``'s rows instead (``_dense_split_k``).
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef int k = x.shape[1], cout = w.shape[1]
    if DC_HAVE_FAST_GEMM and n <= DC_MR:  # SPLIT_K_ROWS
        _dense_split_k(&x[0, 0], <int>n, k, &w[0, 0], cout, &b[0] if has_bias else NULL, relu, &y[0, 0],
                       split_k_threads(k, cout, <int>n))
        return
    cdef Py_ssize_t rblocks = (n + DENSE_ROWS - 1) // DENSE_ROWS
    cdef int cblocks = 1 if rblocks >= 4 else max(1, cout // DENSE_COLS)
    cdef int ccols = (cout + cblocks - 1) // cblocks
    cdef int nthreads = _threads(rblocks * cblocks, not DC_HAVE_FAST_GEMM, 2.0 * n * k * cout)
    cdef const float* xp = &x[0, 0]
    cdef const float* wp = &w[0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0]
    cdef Py_ssize_t p, r0
    cdef int rows, c0, cols, r, inc = 1
    cdef float one = 1.0, zero = 0.0
    with nogil, parallel(num_threads=nthreads):
        for p in prange(rblocks * cblocks, schedule="static"):
            r0 = (p // cblocks) * DENSE_ROWS
            c0 = <int>(p % cblocks) * ccols
            rows = <int>min(<Py_ssize_t>DENSE_ROWS, n - r0)
            cols = min(ccols, cout - c0)
            if cols <= 0:
                continue
            if rows <= GEMV_ROWS and not DC_HAVE_FAST_GEMM:
                for r in range(rows):
                    sgemv("N", &cols, &k, &one, <float*>(wp + c0), &cout, <float*>(xp + (r0 + r) * k), &inc, &zero,
                          yp + (r0 + r) * cout + c0, &inc)
            elif DC_HAVE_FAST_GEMM:
                dc_sgemm_rm(rows, cols, k, xp + r0 * k, k, wp + c0, cout, yp + r0 * cout + c0, cout)
            else:
                sgemm("N", "N", &cols, &rows, &k, &one, <float*>(wp + c0), &cout, <float*>(xp + r0 * k), &k, &zero,
                      yp + r0 * cout + c0, &cout)
            _epilogue(yp + r0 * cout + c0, rows, cols, cout, bp + c0 if has_bias else NULL, has_bias, relu)


def split_k_threads(int k, int cout, int n):
    """Threads ``dense_forward`` gives a batch of ``n <= SPLIT_K_ROWS`` rows on dropcore's own GEMM: as many as
    the weights' bytes (``GRAIN_BYTES`` each) or the flops pay for, at most one per block of ``DC_KC`` rows of
    ``w``."""
    cdef Py_ssize_t blocks = (k + DC_KC - 1) // DC_KC
    cdef Py_ssize_t paid = max(<Py_ssize_t>k * cout * 4 // GRAIN_BYTES, <Py_ssize_t>(2.0 * n * k * cout / GRAIN_FLOPS))
    return <int>max(1, min(<Py_ssize_t>max_threads(), min(blocks, paid)))


cdef void _dense_split_k(const float* xp, int n, int k, const float* wp, int cout, const float* bp, bint relu,
                         float* yp, int nthreads) except *:
    """``y = x @ w + b`` (then ReLU) for a batch of at most ``DC_MR`` rows, split over the rows of ``w``.

    Why: at batch 1 the product is the read of ``w`` (mnist_cnn's 9216 x 128: 4.7 MB for 2.4 MFLOP). Split over
    its columns it ran on at most ``cout / 64`` threads (2 there, on any machine), each reading a strided part of
    every row; here each thread reads one contiguous range of whole rows, and the bytes decide how many threads
    share the read (``split_k_threads``). Each block of ``DC_KC`` rows gives its own partial product, and the
    partials are added in block order afterwards: exactly the sums ``dc_gemm`` forms over the whole ``K`` (one FMA
    chain a block, each block added to the running total), so the result has the same bits as the other paths'
    whatever the batch or the thread count.
    """
    cdef int blocks = (k + DC_KC - 1) // DC_KC
    cdef Py_ssize_t size = <Py_ssize_t>n * cout
    cdef float* parts = <float*>malloc(blocks * size * sizeof(float))
    cdef int t, kb, k0
    cdef Py_ssize_t i
    if parts == NULL:
        raise MemoryError()
    with nogil, parallel(num_threads=nthreads):
        for t in prange(nthreads, schedule="static"):
            for kb in range(blocks * t // nthreads, blocks * (t + 1) // nthreads):
                k0 = kb * DC_KC
                dc_sgemm_rm(n, cout, min(DC_KC, k - k0), xp + k0, k, wp + <Py_ssize_t>k0 * cout, cout,
                            parts + kb * size, cout)
    memcpy(yp, parts, size * sizeof(float))
    for kb in range(1, blocks):
        for i in range(size):
            yp[i] = parts[kb * size + i] + yp[i]
    free(parts)
    _epilogue(yp, n, cout, cout, bp, bp != NULL, relu)


def matmul(const float[:, ::1] a, const float[:, ::1] b):
    """``a @ b`` through the GEMM the kernels use (dropcore's own micro-kernels where the variant has them): for
    tests."""
    cdef int m = a.shape[0], k = a.shape[1], n = b.shape[1]
    out = np.zeros((m, n), dtype=np.float32)
    cdef float[:, ::1] c = out
    cdef float one = 1.0, zero = 0.0
    if m == 0 or n == 0 or k == 0:
        return out
    if DC_HAVE_FAST_GEMM:
        dc_sgemm_rm(m, n, k, &a[0, 0], k, &b[0, 0], n, &c[0, 0], n)
    else:
        sgemm("N", "N", &n, &m, &k, &one, <float*>&b[0, 0], &n, <float*>&a[0, 0], &k, &zero, &c[0, 0], &n)
    return out


def winograd_rows_address():
    """The address of the C function ``dc_wino_rows_flagged`` (see ``_winograd.h``) for the Numba kernels, or 0
    when the variant has no Winograd kernels (the generic one)."""
    return <size_t>&dc_wino_rows_flagged if DC_HAVE_WINOGRAD else 0


def winograd_dw_address():
    """The address of the C function ``dc_wino_dw_rows`` (see ``_winograd.h``) for the Numba kernels, or 0 when the
    variant has no Winograd kernels (the generic one)."""
    return <size_t>&dc_wino_dw_rows if DC_HAVE_WINOGRAD else 0


def max_pool_arg_address():
    """The address of the C function ``dc_max_pool_arg_rows_c`` (see ``_pool.h``) for the Numba kernels, or 0 on the
    generic variant (no vector kernels)."""
    return <size_t>&dc_max_pool_arg_rows_c if DC_HAVE_FAST_GEMM else 0


def gemm_address():
    """The address of the C function ``dc_gemm`` (see ``_gemm.h``) for the Numba kernels, or 0 on the generic
    variant (no vector kernels)."""
    return <size_t>&dc_gemm if DC_HAVE_FAST_GEMM else 0


def direct_conv_address():
    """The address of the C function ``dc_conv_direct_rows_flagged`` (see ``_direct_conv.h``) for the Numba kernels,
    or 0 on the generic variant (no vector kernels)."""
    return <size_t>&dc_conv_direct_rows_flagged if DC_HAVE_FAST_GEMM else 0
