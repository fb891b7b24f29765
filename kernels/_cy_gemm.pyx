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
include "_cy_arrays.pxi"
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
                         int pl, int ldy)
    void dc_max_pool_arg_rows_c(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_, float* y,
                                unsigned char* arg)
    void dc_unpool_rows(const float* dy, const float* y, const unsigned char* arg, int poh, int pow_, int c, int ph,
                        int pw, int relu, int oy0, int oy1, int ow, float* out)

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

cdef extern from "_winograd4.h" nogil:
    void dc_wino4_weights(const float* w, int cin, int cout, float* u)
    long dc_wino4_scratch(long tiles, int cin, int cout)
    void dc_wino4_rows(const float* x, int h, int wd, int cin, const float* u, int cout, const float* bias, int pt,
                       int pl, int oh, int ow, int th, long g0, long g1, float* y, int pool, int relu, float* scratch)
    void dc_wino4_dx_rows(const float* dy, int oh, int ow, int cout, const float* u, int c, int pt, int pl, int h,
                          int wd, int ty0, int ty1, float* dx, float* scratch)

cdef extern from "_direct_conv.h" nogil:
    long dc_direct_scratch(int rows, int kh, int sh, int wd, int kw, int sw, int pl, int ow, int cin)
    void dc_conv_direct_rows(const float* x, int h, int wd, int cin, const float* w, int kh, int kw, int cout,
                             const float* bias, int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1,
                             float* y, float* pad, int relu)
    void dc_conv_direct_rows_flagged(const float* x, int h, int wd, int cin, const float* w, int kh, int kw,
                                     int cout, const float* bias, int sh, int sw, int pt, int pl, int ow, long ni,
                                     int oy0, int oy1, float* y, float* pad, int relu, int has_bias, int padded)

cdef extern from "_direct_conv_dw.h" nogil:
    void dc_conv_dw_rows(const float* x, int h, int wd, int cin, const float* g, int kh, int kw, int cout, int sh,
                         int sw, int pt, int pl, int ow, long ni, int oy0, int oy1, float* dw, float* db, float* pad)
    void dc_conv_dw_rows_flagged(const float* x, int h, int wd, int cin, const float* g, int kh, int kw, int cout,
                                 int sh, int sw, int pt, int pl, int ow, long ni, int oy0, int oy1, float* dw,
                                 float* db, float* pad, int has_bias, int padded)

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
    # 256K flops take a core 2-4 us on these kernels (60-80 GFLOP/s a thread on the Zen 3, more on the Zen 5), a
    # few region costs, so a thread never works for less than it costs. mnist_cnn at batch 1: its first layer
    # (0.4 MFLOP) runs on one thread, the others on all. Halved from 512K (with SERIAL_WORK) on the Zen 3: the
    # breadth inception's batch-1 prediction 241-244 -> 222-228 us (its 1 x 1 layers of 0.8 MFLOP took one thread
    # before), the other breadth and zoo models within the host's noise (three alternating processes each).
    GRAIN_FLOPS = 262144
    # The bytes of weights a thread must get for waking it to pay in a product that streams them (a small batch
    # through a large dense layer: memory-bound, so its flops undercount it): 256 KiB take a core ~2-3 us from L3.
    GRAIN_BYTES = 262144
    # The floating-point operations a claim of tasks should hold in a balanced region (``chunk``): ~12 us of a core
    BALANCE_FLOPS = 1048576


cdef int _threads(Py_ssize_t tasks, bint blas, double flops) noexcept:
    """OpenMP threads for ``tasks`` tasks doing ``flops`` in all: as many as the work pays for (``GRAIN_FLOPS``
    each); with ``blas`` (the tasks call BLAS) only while BLAS runs on one thread.

    SERIAL_REGION: where this is 1, the forward kernels a prediction runs loop over their tasks without entering an
    OpenMP region at all: a region costs about 1 us even on one thread (a call with two memoryviews took 1.46 us
    with a one-thread prange, 0.50 without, on the Zen 3), which a batch-1 prediction paid at every layer."""
    if blas and (not _parallel_panels or (_blas_threads != NULL and _blas_threads() > 1)):
        return 1
    cdef Py_ssize_t paid = <Py_ssize_t>(flops / GRAIN_FLOPS)
    return <int>max(1, min(<Py_ssize_t>max_threads(), min(tasks, paid)))


cdef extern from "_act.h" nogil:
    void dc_act_rows(int op, float alpha, float* y, long rows, int cols, long ld)


cdef inline void _epilogue(float* y, Py_ssize_t rows, int cols, int ld, const float* b, bint has_bias,
                           bint relu, int act=0, float alpha=0, const float* r=NULL) noexcept nogil:
    """Add the bias and apply ReLU on a block of output rows (``cols`` wide, rows ``ld`` apart) while it is still in
    cache (NaN passes through); then activation ``act`` of ``_act.h`` (0: none), the loop its stand-alone op runs.
    With a residual operand ``r`` (laid out as ``y``, rows dense: ``ld == cols``), ``r`` is added after the bias and
    before the ReLU (``_residual_rows``)."""
    if act > 1:
        relu = False
    if r != NULL:
        if has_bias:
            _bias_relu(y, rows, cols, ld, b, True, False)
        _residual_rows(y, r, rows * cols, relu)
    elif has_bias or relu:
        _bias_relu(y, rows, cols, ld, b, has_bias, relu)
    if act > 1:
        dc_act_rows(act, alpha, y, rows, cols, ld)


cdef inline void _residual_rows(float* y, const float* r, Py_ssize_t count, bint relu) noexcept nogil:
    """``y += r`` over ``count`` elements (a residual ``Add``), then ReLU with the stand-alone op's bits (``v <= 0``
    gives 0: NaN passes, -0 becomes 0), while the rows a task just wrote are in cache: the add and the ReLU as two
    more passes over the whole output cost 4 us of a 60 us layer at batch 1 (ResNet-8's 16 -> 16 block)."""
    cdef Py_ssize_t i
    cdef float v
    if relu:
        for i in range(count):
            v = y[i] + r[i]
            y[i] = 0 if v <= 0 else v
    else:
        for i in range(count):
            y[i] = y[i] + r[i]


cdef const float* _residual_operand(cnp.ndarray r, cnp.ndarray y) except? NULL:
    """The data of ``r``, a residual operand for the output ``y`` (``None``, or an empty batch: NULL), checked to
    have ``y``'s shape."""
    if r is None or y.shape[0] == 0:
        return NULL
    cdef const float* rp = f32_data(r, 4, False, "residual operand")
    cdef tuple got = (r.shape[0], r.shape[1], r.shape[2], r.shape[3])
    cdef tuple want = (y.shape[0], y.shape[1], y.shape[2], y.shape[3])
    if got != want:
        raise ValueError(f"residual operand: shape {got}, expected the output's {want}")
    return rp


cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)


cdef float* _scratch(Py_ssize_t floats) except NULL:
    """Scratch for one call of an inference kernel: ``floats`` floats (at least one) on a 64-byte boundary, to
    ``free`` when the call is done. Why not a NumPy array: creating one and its memoryview took ~0.5 us a call, a
    quarter of a batch-1 convolution's fixed cost (~2 us on the Zen 3)."""
    cdef void* p = NULL
    if posix_memalign(&p, 64, <size_t>max(floats, 1) * sizeof(float)) != 0:
        raise MemoryError(f"kernel scratch: could not allocate {max(floats, 1) * 4} bytes")
    return <float*>p


cdef inline void _bias_relu(float* y, Py_ssize_t rows, int cols, int ld, const float* b, bint has_bias,
                            bint relu) noexcept nogil:
    cdef Py_ssize_t r
    cdef int c
    cdef float v
    cdef float* row
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


def conv2d_forward(cnp.ndarray x not None, cnp.ndarray w not None, cnp.ndarray b not None, bint has_bias, int sh,
                   int sw, int pt, int pl, cnp.ndarray y not None, bint relu, int act=0, float alpha=0,
                   cnp.ndarray r=None):
    """``y = conv(x, w) + b`` (then ReLU when ``relu``, or activation ``act`` of ``_act.h`` with parameter ``alpha``)
    into the preallocated ``y`` of shape (N, OH, OW, cout).
    With ``r`` (an array of ``y``'s shape), ``y = conv(x, w) + b + r``, then the ReLU or ``act``: a residual
    ``Add`` in the convolution's pass over each block of its rows (``_residual_rows``).
    """
    cdef const float* xp = f32_data(x, 4, False, "conv2d_forward: x")
    cdef const float* wp = f32_data(w, 4, False, "conv2d_forward: w")
    cdef const float* bp = f32_data(b, 1, False, "conv2d_forward: b") if has_bias else NULL
    cdef float* yp = f32_data(y, 4, True, "conv2d_forward: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef int k = kh * kw * cin
    cdef Py_ssize_t m = <Py_ssize_t>n * oh * ow
    cdef int rows_per = panel_rows(k, m)
    cdef Py_ssize_t npanels = (m + rows_per - 1) // rows_per
    cdef bint direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == wd
    cdef int nthreads = _threads(npanels, not DC_HAVE_FAST_GEMM, 2.0 * m * k * cout)
    cdef const float* rp = _residual_operand(r, y)
    cdef Py_ssize_t p, panel = <Py_ssize_t>rows_per * k
    cdef float* bufs = NULL if direct else _scratch(nthreads * panel)  # a 1x1 layer's panels are its input rows
    try:
        if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
            with nogil:
                for p in range(npanels):
                    _panel_task(p, rows_per, m, direct, xp, bufs, h, wd, cin, kh, kw, sh, sw, pt, pl, oh, ow, k, wp,
                                cout, bp, has_bias, yp, relu, act, alpha, rp)
            return
        with nogil, parallel(num_threads=nthreads):
            for p in prange(npanels, schedule="dynamic"):
                _panel_task(p, rows_per, m, direct, xp, NULL if direct else bufs + threadid() * panel, h, wd, cin,
                            kh, kw, sh, sw, pt, pl, oh, ow, k, wp, cout, bp, has_bias, yp, relu, act, alpha, rp)
    finally:
        free(bufs)


cdef inline void _panel_task(Py_ssize_t p, int rows_per, Py_ssize_t m, bint direct, const float* xp, float* buf,
                             int h, int wd, int cin, int kh, int kw, int sh, int sw, int pt, int pl, int oh, int ow,
                             int k, const float* wp, int cout, const float* bp, bint has_bias, float* yp, bint relu,
                             int act, float alpha, const float* rp) noexcept nogil:
    """Panel ``p`` of ``conv2d_forward``: its im2col rows (``buf``, this thread's), the product, the epilogue."""
    cdef Py_ssize_t g0 = p * rows_per
    cdef int rows = <int>min(<Py_ssize_t>rows_per, m - g0)
    cdef const float* a
    cdef float one = 1.0, zero = 0.0
    if direct:  # a 1x1 stride-1 convolution: the input rows are the patches, no copy needed
        a = xp + g0 * cin
    else:
        _im2col(xp, buf, g0, rows, h, wd, cin, kh, kw, sh, sw, pt, pl, oh, ow)
        a = buf
    if DC_HAVE_FAST_GEMM:
        dc_sgemm_rm(rows, cout, k, a, k, wp, cout, yp + g0 * cout, cout)
    else:
        sgemm("N", "N", &cout, &rows, &k, &one, <float*>wp, &cout, <float*>a, &k, &zero, yp + g0 * cout, &cout)
    _epilogue(yp + g0 * cout, rows, cout, cout, bp, has_bias, relu, act, alpha, rp + g0 * cout if rp else NULL)


cdef inline void _implicit_row(const float* xp, int h, int wd, int cin, const float* wp, int kh, int kw, int cout,
                               const float* bp, bint has_bias, int sh, int sw, int ow, Py_ssize_t ni, int oy,
                               float* yrow, bint relu, int act=0, float alpha=0,
                               const float* rrow=NULL) noexcept nogil:
    """One output row of the implicit-GEMM convolution (see ``conv2d_implicit``), bias and activation applied."""
    cdef int i, span = kw * cin
    for i in range(kh):
        dc_gemm(ow, cout, span, xp + ((<Py_ssize_t>ni * h + oy * sh + i) * wd) * cin, sw * cin, 1,
                wp + <Py_ssize_t>i * span * cout, cout, yrow, cout, i > 0)
    _epilogue(yrow, ow, cout, cout, bp, has_bias, relu, act, alpha, rrow)


def conv2d_implicit(cnp.ndarray x not None, cnp.ndarray w not None, cnp.ndarray b not None, bint has_bias, int sh,
                    int sw, cnp.ndarray y not None, bint relu, int act=0, float alpha=0, cnp.ndarray r=None):
    """``y = conv(x, w) + b`` (then ReLU, or activation ``act``) for a convolution without padding, with no im2col
    copy at all.

    In NHWC, the ``kw * cin`` inputs one kernel row sees are contiguous, and the windows of neighbouring output
    pixels start ``sw * cin`` floats apart: for each output row and each kernel row ``i``, the patches form a
    matrix whose rows overlap in memory (row stride ``sw * cin``), which dropcore's GEMM reads in place. Each
    output row is then ``kh`` products accumulated into it, and the bias and ReLU follow while it is in cache.
    Only with dropcore's own GEMM (callers check ``HAVE_FAST_GEMM``).
    With ``r`` (an array of ``y``'s shape), ``y = conv(x, w) + b + r``, then the ReLU or ``act``: a residual
    ``Add`` in the convolution's pass over each block of its rows (``_residual_rows``).
    """
    cdef const float* xp = f32_data(x, 4, False, "conv2d_implicit: x")
    cdef const float* wp = f32_data(w, 4, False, "conv2d_implicit: w")
    cdef const float* bp = f32_data(b, 1, False, "conv2d_implicit: b") if has_bias else NULL
    cdef float* yp = f32_data(y, 4, True, "conv2d_implicit: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef Py_ssize_t rows = <Py_ssize_t>n * oh, t
    cdef int nthreads = _threads(rows, False, 2.0 * rows * ow * kh * kw * cin * cout)
    cdef const float* rp = _residual_operand(r, y)
    if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
        with nogil:
            for t in range(rows):
                _implicit_row(xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, ow, t // oh, <int>(t % oh),
                              yp + t * ow * cout, relu, act, alpha, rp + t * ow * cout if rp else NULL)
        return
    cdef Py_ssize_t claim = chunk(rows, nthreads, 2.0 * ow * kh * kw * cin * cout, BALANCE_FLOPS)
    with nogil, parallel(num_threads=nthreads):
        for t in prange(rows, schedule="dynamic", chunksize=claim):
            _implicit_row(xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, ow, t // oh, <int>(t % oh),
                          yp + t * ow * cout, relu, act, alpha, rp + t * ow * cout if rp else NULL)


cdef inline int _rows_per_task(Py_ssize_t n, int rows) noexcept:
    """Output rows per task of a row-parallel kernel: a whole sample when the batch has ``MIN_PANELS`` or more, else
    about ``1 / MIN_PANELS`` of one, so that a batch of 1 still keeps every thread busy."""
    return rows if n >= MIN_PANELS else max(1, (rows + MIN_PANELS - 1) // MIN_PANELS)


def conv2d_direct(cnp.ndarray x not None, cnp.ndarray w not None, cnp.ndarray b not None, bint has_bias, int sh,
                  int sw, int pt, int pl, bint padded, cnp.ndarray y not None, bint relu, int act=0, float alpha=0,
                  cnp.ndarray r=None):
    """``y = conv(x, w) + b`` (then ReLU, or activation ``act`` on each task's rows right after they are written)
    for a layer whose weights fit in L1 (``geometry.direct_conv_pays``).

    Each task is a block of output rows of one sample (a whole sample when the batch has enough of them, else
    about 1/8 of one); each keeps its tiles of outputs in registers over the whole window (see
    ``_direct_conv.h``). ``padded``: some window leaves the input, so each task first copies the input rows
    it reads into zero-padded scratch rows. Only with dropcore's own kernels (callers check ``HAVE_FAST_GEMM``).
    With ``r`` (an array of ``y``'s shape), ``y = conv(x, w) + b + r``, then the ReLU or ``act``: a residual
    ``Add`` in the convolution's pass over each block of its rows (``_residual_rows``).
    """
    cdef const float* xp = f32_data(x, 4, False, "conv2d_direct: x")
    cdef const float* wp = f32_data(w, 4, False, "conv2d_direct: w")
    cdef const float* bp = f32_data(b, 1, False, "conv2d_direct: b") if has_bias else NULL
    cdef float* yp = f32_data(y, 4, True, "conv2d_direct: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2]
    cdef int block = _rows_per_task(n, oh)
    cdef int blocks = (oh + block - 1) // block
    cdef Py_ssize_t tasks = <Py_ssize_t>n * blocks, t
    cdef int nthreads = _threads(tasks, False, 2.0 * n * oh * ow * kh * kw * cin * cout)
    cdef Py_ssize_t claim = chunk(tasks, nthreads, 2.0 * n * oh * ow * kh * kw * cin * cout / max(tasks, 1),
                                  BALANCE_FLOPS)
    cdef Py_ssize_t scratch = dc_direct_scratch(block, kh, sh, wd, kw, sw, pl, ow, cin) if padded else 0
    cdef const float* rp = _residual_operand(r, y)
    cdef float* pads = _scratch(nthreads * scratch) if padded else NULL
    try:
        if nthreads == 1:  # no OpenMP region (SERIAL_REGION): a batch-1 request's layer
            with nogil:
                for t in range(tasks):
                    _direct_task(t, blocks, block, xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, oh, ow, yp,
                                 pads, relu, act, alpha, rp)
            return
        with nogil, parallel(num_threads=nthreads):
            for t in prange(tasks, schedule="dynamic", chunksize=claim):
                _direct_task(t, blocks, block, xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, oh, ow, yp,
                             pads + threadid() * scratch if padded else NULL, relu, act, alpha, rp)
    finally:
        free(pads)


cdef inline void _direct_task(Py_ssize_t t, int blocks, int block, const float* xp, int h, int wd, int cin,
                              const float* wp, int kh, int kw, int cout, const float* bp, int sh, int sw, int pt,
                              int pl, int oh, int ow, float* yp, float* pad, bint relu, int act,
                              float alpha, const float* rp) noexcept nogil:
    """Task ``t`` of ``conv2d_direct``: a block of output rows of one sample, then its residual and activation."""
    cdef Py_ssize_t ni = t // blocks
    cdef int oy0 = <int>(t % blocks) * block
    cdef Py_ssize_t at = (ni * oh + oy0) * ow * cout
    cdef long pixels = <long>(min(oy0 + block, oh) - oy0) * ow
    dc_conv_direct_rows(xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, ow, ni, oy0, min(oy0 + block, oh),
                        yp + at, pad, relu and rp == NULL)
    if rp != NULL:
        _residual_rows(yp + at, rp + at, pixels * cout, relu)
    if act > 1:
        dc_act_rows(act, alpha, yp + at, pixels, cout, cout)


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
    cdef Py_ssize_t claim = chunk(tasks, nthreads, 2.0 * n * oh * ow * kh * kw * cin * cout / max(tasks, 1),
                                  BALANCE_FLOPS)
    cdef Py_ssize_t scratch = dc_direct_scratch(band * ph, kh, sh, wd, kw, sw, pl, ow, cin) if padded else 0
    cdef Py_ssize_t conv_rows = <Py_ssize_t>band * ph * ow * cout
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef float* convs = _scratch(nthreads * conv_rows)
    cdef float* pads = NULL
    try:
        pads = _scratch(nthreads * scratch) if padded else NULL
        if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
            with nogil:
                for t in range(tasks):
                    _conv_pool_task(t, bands, band, direct, xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw,
                                    pt, pl, ow, poh, pow_, ph, pw, yp, convs, pads, relu)
            return
        with nogil, parallel(num_threads=nthreads):
            for t in prange(tasks, schedule="dynamic", chunksize=claim):
                _conv_pool_task(t, bands, band, direct, xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, pt,
                                pl, ow, poh, pow_, ph, pw, yp, convs + threadid() * conv_rows,
                                pads + threadid() * scratch if padded else NULL, relu)
    finally:
        free(convs)
        free(pads)


cdef inline void _conv_pool_task(Py_ssize_t t, int bands, int band, bint direct, const float* xp, int h, int wd,
                                 int cin, const float* wp, int kh, int kw, int cout, const float* bp, bint has_bias,
                                 int sh, int sw, int pt, int pl, int ow, int poh, int pow_, int ph, int pw,
                                 float* yp, float* c, float* pad, bint relu) noexcept nogil:
    """Task ``t`` of ``conv2d_max_pool``: the convolution rows of a band of pooled rows into ``c``, then pooled."""
    cdef Py_ssize_t ni = t // bands
    cdef int p0 = <int>(t % bands) * band
    cdef int p1 = min(p0 + band, poh)
    cdef int oy, py
    if direct:
        dc_conv_direct_rows(xp, h, wd, cin, wp, kh, kw, cout, bp, sh, sw, pt, pl, ow, ni, p0 * ph, p1 * ph, c, pad,
                            relu)
    else:
        for oy in range(p0 * ph, p1 * ph):
            _implicit_row(xp, h, wd, cin, wp, kh, kw, cout, bp, has_bias, sh, sw, ow, ni, oy,
                          c + <Py_ssize_t>(oy - p0 * ph) * ow * cout, relu)
    for py in range(p0, p1):
        dc_max_pool_row(c, yp + (ni * poh + py) * pow_ * cout, (p1 - p0) * ph, ow, cout, pow_, (py - p0) * ph, ph, pw,
                        pw, 0, cout)


def winograd_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u):
    """Fill ``u`` (16, cin, cout) with the Winograd F(2x2, 3x3) transform of the 3x3 kernel ``w`` (3, 3, cin, cout)
    (``_winograd.h``). Only where the variant has them (callers check ``HAVE_WINOGRAD``)."""
    with nogil:
        dc_wino_weights(&w[0, 0, 0, 0], <int>w.shape[2], <int>w.shape[3], &u[0, 0, 0])


def conv2d_winograd(cnp.ndarray x not None, cnp.ndarray u not None, cnp.ndarray b not None, bint has_bias, int pt,
                    int pl, int oh, int ow, cnp.ndarray y not None, bint relu, bint pool, int act=0, float alpha=0,
                    cnp.ndarray r=None):
    """``y = conv(x, w) + b`` (then ReLU) for a 3x3 kernel at stride 1 on Winograd F(2x2, 3x3), from ``u`` =
    ``winograd_weights(w)``; with ``pool``, ``y`` is the 2x2 max pooling (strides 2) of that instead. ``oh``,
    ``ow``: the convolution's output size; ``pt``, ``pl``: its padding.

    Each task is a band of tile rows (2 output rows each) of one sample: a few rows at small batches, so that a
    batch of 1 keeps every thread busy, up to 4 (98 KiB of transforms for 64 channels in, 64 out) otherwise.
    Only where the variant has them (callers check ``HAVE_WINOGRAD`` and ``geometry.winograd_pays``). ``act``
    (without ``pool``): activation ``act`` of ``_act.h`` on each band right after it is written.
    Without ``pool``, with ``r`` (an array of ``y``'s shape): ``y = conv(x, w) + b + r``, then the ReLU or ``act``:
    a residual ``Add`` in the convolution's pass over each block of its rows (``_residual_rows``).
    """
    if pool and r is not None:
        raise ValueError("conv2d_winograd: a residual operand with pool=True: the add comes after the pooling")
    _winograd_tasks(x, u, f32_data(b, 1, False, "conv2d_winograd: b") if has_bias else NULL, pt, pl, oh, ow, y, relu,
                    pool, NULL, 0 if pool else act, alpha, _residual_operand(r, y))


def conv2d_winograd_arg(cnp.ndarray x not None, cnp.ndarray u not None, cnp.ndarray b not None, bint has_bias,
                        int pt, int pl, int oh, int ow, cnp.ndarray y not None, unsigned char[:, :, :, ::1] arg,
                        bint relu):
    """Training's ``conv2d_max_pool`` on Winograd's tiles (2x2 pooling): ``conv2d_winograd(..., pool=True)`` and
    each window's tap into ``arg`` (shaped like ``y``; 255 where the window holds a NaN)."""
    _winograd_tasks(x, u, f32_data(b, 1, False, "conv2d_winograd_arg: b") if has_bias else NULL, pt, pl, oh, ow, y,
                    relu, True, &arg[0, 0, 0, 0], 0, 0, NULL)


cdef void _winograd_tasks(cnp.ndarray x, cnp.ndarray u, const float* bp, int pt, int pl, int oh, int ow,
                          cnp.ndarray y, bint relu, bint pool, unsigned char* argp, int act, float alpha,
                          const float* rp) except *:
    """The body of ``conv2d_winograd`` (``argp``: NULL, or where the pooled windows' taps go; ``rp``: NULL, or the
    residual operand)."""
    cdef const float* xp = f32_data(x, 4, False, "conv2d_winograd: x")
    cdef const float* up = f32_data(u, 3, False, "conv2d_winograd: u")
    cdef float* yp = f32_data(y, 4, True, "conv2d_winograd: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3], cout = u.shape[2]
    cdef int tw = (ow + 1) // 2
    cdef int th = oh // 2 if pool else (oh + 1) // 2
    cdef int band = min(4, th if n >= MIN_PANELS else max(1, (th + MIN_PANELS - 1) // MIN_PANELS))
    cdef int bands = (th + band - 1) // band
    cdef Py_ssize_t tasks = <Py_ssize_t>n * bands, t
    cdef int nthreads = _threads(tasks, False, 2.0 * n * oh * ow * cin * cout * 4)  # 16 products per 4 outputs
    cdef Py_ssize_t claim = chunk(tasks, nthreads, 2.0 * n * oh * ow * cin * cout * 4 / max(tasks, 1),
                                  BALANCE_FLOPS)
    # each thread's transforms on a 64-byte boundary (rows of 16 floats stay aligned when cin, cout are multiples of
    # 16): an unaligned scratch cost up to 15% of a batch-1 prediction, depending on where it was put
    cdef Py_ssize_t per = (16 * band * tw * (cin + cout) + 15) // 16 * 16
    cdef Py_ssize_t sample = <Py_ssize_t>y.shape[1] * y.shape[2] * cout
    cdef float* base = _scratch(nthreads * per)
    try:
        if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
            with nogil:
                for t in range(tasks):
                    _winograd_task(t, bands, band, th, xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, yp, sample, pool,
                                   relu, base, argp, act, alpha, rp)
            return
        with nogil, parallel(num_threads=nthreads):
            for t in prange(tasks, schedule="dynamic", chunksize=claim):
                _winograd_task(t, bands, band, th, xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, yp, sample, pool,
                               relu, base + threadid() * per, argp, act, alpha, rp)
    finally:
        free(base)


cdef inline void _winograd_task(Py_ssize_t t, int bands, int band, int th, const float* xp, int h, int wd, int cin,
                                const float* up, int cout, const float* bp, int pt, int pl, int oh, int ow, float* yp,
                                Py_ssize_t sample, bint pool, bint relu, float* scratch, unsigned char* argp, int act,
                                float alpha, const float* rp) noexcept nogil:
    """Task ``t`` of ``_winograd_tasks``: a band of tile rows of one sample (``scratch``: this thread's), then its
    residual and activation."""
    cdef int ty0 = <int>(t % bands) * band
    # (without pool) output rows 2 ty0 .. 2 min(ty0 + band, th), clipped to oh
    cdef Py_ssize_t at = (t // bands) * sample + <Py_ssize_t>2 * ty0 * ow * cout
    cdef long pixels = <long>(min(2 * min(ty0 + band, th), oh) - 2 * ty0) * ow
    dc_wino_rows(xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, t // bands, ty0, min(ty0 + band, th),
                 yp + (t // bands) * sample, pool, relu and rp == NULL, scratch,
                 argp + (t // bands) * sample if argp != NULL else NULL)
    if rp != NULL:
        _residual_rows(yp + at, rp + at, pixels * cout, relu)
    if act > 1:
        dc_act_rows(act, alpha, yp + at, pixels, cout, cout)


def winograd4_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u):
    """Fill ``u`` (36, cin, cout) with the Winograd F(4x4, 3x3) transform of the 3x3 kernel ``w`` (3, 3, cin, cout)
    (``_winograd4.h``). Only where the variant has dropcore's own GEMM (callers check ``HAVE_FAST_GEMM``)."""
    if w.shape[0] != 3 or w.shape[1] != 3 or u.shape[0] != 36 or u.shape[1] != w.shape[2] or u.shape[2] != w.shape[3]:
        raise ValueError(f"winograd4_weights: w shape {tuple(w.shape)[:4]}, u shape {tuple(u.shape)[:3]}: expected w "
                         f"(3, 3, cin, cout) and u (36, cin, cout)")
    with nogil:
        dc_wino4_weights(&w[0, 0, 0, 0], <int>w.shape[2], <int>w.shape[3], &u[0, 0, 0])


# Floats of transforms (V and M) one task of ``conv2d_winograd4`` may hold: 384 KiB, so that they stay in L2 between
# the input transform, the 36 products and the output transform. A constant: the tiles a task takes never depend on
# the thread count (nor do its bits, which depend on each tile alone).
cdef enum:
    WINO4_TASK_FLOATS = 98304
    WINO4_MAX_TILES = 64


def conv2d_winograd4(cnp.ndarray x not None, cnp.ndarray u not None, cnp.ndarray b not None, bint has_bias, int pt,
                     int pl, int oh, int ow, cnp.ndarray y not None, bint relu, bint pool, int act=0, float alpha=0,
                     cnp.ndarray r=None):
    """``conv2d_winograd`` on Winograd F(4x4, 3x3) (``_winograd4.h``), from ``u`` = ``winograd4_weights(w)``: ``y =
    conv(x, w) + b`` (then ReLU) for a 3x3 kernel at stride 1, or with ``pool`` the 2x2 max pooling (strides 2) of
    that; ``act`` and the residual operand ``r`` (without ``pool``) as there.

    Each task is a run of whole tile rows (4 output rows each) over the batch, as many as keep its transforms within
    ``WINO4_TASK_FLOATS`` (up to ``WINO4_MAX_TILES`` tiles): samples of small images share a task, so the 36 products
    have rows enough at any image size, and a task's output rows are one contiguous block for the residual and the
    activation. Only where the variant has dropcore's own GEMM (callers check ``geometry.winograd4_pays``)."""
    if pool and r is not None:
        raise ValueError("conv2d_winograd4: a residual operand with pool=True: the add comes after the pooling")
    cdef const float* rp = _residual_operand(r, y)
    cdef const float* bp = f32_data(b, 1, False, "conv2d_winograd4: b") if has_bias else NULL
    cdef const float* xp = f32_data(x, 4, False, "conv2d_winograd4: x")
    cdef const float* up = f32_data(u, 3, False, "conv2d_winograd4: u")
    cdef float* yp = f32_data(y, 4, True, "conv2d_winograd4: y")
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3], cout = u.shape[2]
    if u.shape[0] != 36 or u.shape[1] != cin:
        raise ValueError(f"conv2d_winograd4: u shape {(u.shape[0], u.shape[1], u.shape[2])}, expected (36, {cin}, "
                         f"cout) for x with {cin} channels")
    if pool:
        act = 0
    cdef int tw = (ow + 3) // 4
    cdef int th = (oh // 2 + 1) // 2 if pool else (oh + 3) // 4
    cdef long rows_all = <long>n * th
    if rows_all <= 0 or tw <= 0:  # an empty batch or output: nothing to write (and no task to size)
        return
    cdef long rows_per = max(1, min(<long>WINO4_MAX_TILES, WINO4_TASK_FLOATS // (36 * (cin + cout))) // tw)
    cdef double flops = 2.0 * n * oh * ow * cin * cout * 36 / 16  # 36 products per 16 outputs
    if rows_all < 2 * rows_per:  # a batch-1 layer: its tile rows over the threads rather than in one task
        rows_per = max(1, rows_all // min(rows_all, max(1, <long>max_threads())))
    cdef Py_ssize_t tasks = (rows_all + rows_per - 1) // rows_per, t
    cdef int nthreads = _threads(tasks, False, flops)
    cdef Py_ssize_t claim = chunk(tasks, nthreads, flops / max(tasks, 1), BALANCE_FLOPS)
    cdef Py_ssize_t per = (dc_wino4_scratch(rows_per * tw, cin, cout) + 15) // 16 * 16  # 64-byte aligned
    cdef float* base = _scratch(nthreads * per)
    cdef Py_ssize_t row_floats = <Py_ssize_t>(y.shape[2]) * cout
    try:
        if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
            with nogil:
                for t in range(tasks):
                    _winograd4_task(t, rows_per, rows_all, th, xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, yp,
                                    row_floats, pool, relu, base, act, alpha, rp)
            return
        with nogil, parallel(num_threads=nthreads):
            for t in prange(tasks, schedule="dynamic", chunksize=claim):
                _winograd4_task(t, rows_per, rows_all, th, xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, yp,
                                row_floats, pool, relu, base + threadid() * per, act, alpha, rp)
    finally:
        free(base)


cdef inline void _winograd4_task(Py_ssize_t t, long rows_per, long rows_all, int th, const float* xp, int h, int wd,
                                 int cin, const float* up, int cout, const float* bp, int pt, int pl, int oh, int ow,
                                 float* yp, Py_ssize_t row_floats, bint pool, bint relu, float* scratch, int act,
                                 float alpha, const float* rp) noexcept nogil:
    """Task ``t`` of ``conv2d_winograd4``: tile rows ``t * rows_per ..`` of the batch, then the residual and the
    activation over the output rows they wrote (one contiguous block: whole rows of consecutive samples)."""
    cdef long g0 = t * rows_per, g1 = min(g0 + rows_per, rows_all)
    dc_wino4_rows(xp, h, wd, cin, up, cout, bp, pt, pl, oh, ow, th, g0, g1, yp, pool, relu and rp == NULL, scratch)
    if pool or (rp == NULL and act <= 1):
        return
    # output rows of tile row g: 4 (g % th) .. min(4 (g % th) + 4, oh) of sample g / th
    cdef Py_ssize_t first = (g0 // th) * oh + 4 * (g0 % th)
    cdef Py_ssize_t last = ((g1 - 1) // th) * oh + min(4 * ((g1 - 1) % th) + 4, oh)
    if rp != NULL:
        _residual_rows(yp + first * row_floats, rp + first * row_floats, (last - first) * row_floats, relu)
    if act > 1:
        dc_act_rows(act, alpha, yp + first * row_floats, (last - first) * ow, cout, cout)


def dense_forward(cnp.ndarray x not None, cnp.ndarray w not None, cnp.ndarray b not None, bint has_bias,
                  cnp.ndarray y not None, bint relu, int act=0, float alpha=0):
    """``y = x @ w + b`` (then ReLU when ``relu``, or activation ``act`` of ``_act.h`` with parameter ``alpha``,
    each block while in cache) into the preallocated ``y`` of shape (N, out).

    Tasks are (row block, column block) pairs: large batches split over rows only (each task streams all of
    ``w`` once per ``DENSE_ROWS`` rows); small batches also split over the output columns, so both cores share
    the read of ``w`` (which dominates at batch 1) instead of one core reading it all. On dropcore's own GEMM, a
    batch of at most ``SPLIT_K_ROWS`` rows splits ``w``'s rows instead (``_dense_split_k``).
    """
    cdef const float* xp = f32_data(x, 2, False, "dense_forward: x")
    cdef const float* wp = f32_data(w, 2, False, "dense_forward: w")
    cdef const float* bp = f32_data(b, 1, False, "dense_forward: b") if has_bias else NULL
    cdef float* yp = f32_data(y, 2, True, "dense_forward: y")
    cdef Py_ssize_t n = x.shape[0]
    cdef int k = x.shape[1], cout = w.shape[1]
    if DC_HAVE_FAST_GEMM and n <= DC_MR:  # SPLIT_K_ROWS
        _dense_split_k(xp, <int>n, k, wp, cout, bp, relu, yp, split_k_threads(k, cout, <int>n), act, alpha)
        return
    cdef Py_ssize_t rblocks = (n + DENSE_ROWS - 1) // DENSE_ROWS
    cdef int cblocks = 1 if rblocks >= 4 else max(1, cout // DENSE_COLS)
    cdef int ccols = (cout + cblocks - 1) // cblocks
    cdef int nthreads = _threads(rblocks * cblocks, not DC_HAVE_FAST_GEMM, 2.0 * n * k * cout)
    cdef Py_ssize_t p
    if nthreads == 1:  # no OpenMP region (SERIAL_REGION)
        with nogil:
            for p in range(rblocks * cblocks):
                _dense_task(p, cblocks, ccols, n, k, cout, xp, wp, bp, has_bias, yp, relu, act, alpha)
        return
    cdef Py_ssize_t claim = chunk(rblocks * cblocks, nthreads, 2.0 * n * k * cout / (rblocks * cblocks),
                                  BALANCE_FLOPS)
    with nogil, parallel(num_threads=nthreads):
        for p in prange(rblocks * cblocks, schedule="dynamic", chunksize=claim):
            _dense_task(p, cblocks, ccols, n, k, cout, xp, wp, bp, has_bias, yp, relu, act, alpha)


cdef inline void _dense_task(Py_ssize_t p, int cblocks, int ccols, Py_ssize_t n, int k, int cout, const float* xp,
                             const float* wp, const float* bp, bint has_bias, float* yp, bint relu, int act,
                             float alpha) noexcept nogil:
    """Task ``p`` of ``dense_forward``: a block of rows times a block of columns, then the epilogue."""
    cdef Py_ssize_t r0 = (p // cblocks) * DENSE_ROWS
    cdef int c0 = <int>(p % cblocks) * ccols
    cdef int rows = <int>min(<Py_ssize_t>DENSE_ROWS, n - r0)
    cdef int cols = min(ccols, cout - c0)
    cdef int r, inc = 1
    cdef float one = 1.0, zero = 0.0
    if cols <= 0:
        return
    if rows <= GEMV_ROWS and not DC_HAVE_FAST_GEMM:
        for r in range(rows):
            sgemv("N", &cols, &k, &one, <float*>(wp + c0), &cout, <float*>(xp + (r0 + r) * k), &inc, &zero,
                  yp + (r0 + r) * cout + c0, &inc)
    elif DC_HAVE_FAST_GEMM:
        dc_sgemm_rm(rows, cols, k, xp + r0 * k, k, wp + c0, cout, yp + r0 * cout + c0, cout)
    else:
        sgemm("N", "N", &cols, &rows, &k, &one, <float*>(wp + c0), &cout, <float*>(xp + r0 * k), &k, &zero,
              yp + r0 * cout + c0, &cout)
    _epilogue(yp + r0 * cout + c0, rows, cols, cout, bp + c0 if has_bias else NULL, has_bias, relu, act, alpha)


def split_k_threads(int k, int cout, int n):
    """Threads ``dense_forward`` gives a batch of ``n <= SPLIT_K_ROWS`` rows on dropcore's own GEMM: as many as
    the weights' bytes (``GRAIN_BYTES`` each) or the flops pay for, at most one per block of ``DC_KC`` rows of
    ``w``."""
    cdef Py_ssize_t blocks = (k + DC_KC - 1) // DC_KC
    cdef Py_ssize_t paid = max(<Py_ssize_t>k * cout * 4 // GRAIN_BYTES, <Py_ssize_t>(2.0 * n * k * cout / GRAIN_FLOPS))
    return <int>max(1, min(<Py_ssize_t>max_threads(), min(blocks, paid)))


cdef void _dense_split_k(const float* xp, int n, int k, const float* wp, int cout, const float* bp, bint relu,
                         float* yp, int nthreads, int act, float alpha) except *:
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
    if nthreads == 1:  # no OpenMP region (SERIAL_REGION): the batch-1 case
        with nogil:
            for kb in range(blocks):
                k0 = kb * DC_KC
                dc_sgemm_rm(n, cout, min(DC_KC, k - k0), xp + k0, k, wp + <Py_ssize_t>k0 * cout, cout,
                            parts + kb * size, cout)
    else:
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
    _epilogue(yp, n, cout, cout, bp, bp != NULL, relu, act, alpha)


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


# --- training: conv2d_max_pool with each window's tap, the convolution's and the dense layer's backward -----------
# Ports of the Numba drivers (kernels/conv.py, kernels/dense.py) onto the same C functions, with the same blocks and
# chunks: on the vector targets every sum is formed in the Numba kernels' order, so the results have their bits.
# The wrappers with the kernel contract's signatures are in cython_train_gemm.py.

cdef enum:
    PATH_IM2COL = 0  # conv.py's _PATHS order
    PATH_IMPLICIT = 1
    PATH_DIRECT = 2
    NO_TAP = 255  # reference.conv.NO_TAP: the tap of a window whose maximum is a NaN
    DENSE_SERIAL = 0  # dense_backward's modes (cython_train_gemm.dense_backward picks one, as dense.py does)
    DENSE_TWO_TASKS = 1
    DENSE_BLOCKS = 2
    # Tile rows (2 output rows each) per Winograd call of the backward (conv.py's WINOGRAD_BAND): 16 x tiles x (cin +
    # cout) floats of transforms stay in L2 (4 rows of 13 tiles, 32 + 64 channels: 320 KB)
    WINO_BAND = 4
    WINO4_BAND = 2  # tile rows (4 input-gradient rows each) per F(4x4) call of the backward (conv.py's WINOGRAD4_BAND)
    INF_BITS = 0x7f800000  # the bits of float +inf


cdef struct Geom:
    # A convolution's shapes: input (h, wd, c) per sample, kernel (kh, kw, c, cout), strides, top/left padding and
    # output (oh, ow).
    int h, wd, c, kh, kw, cout, sh, sw, pt, pl, oh, ow


cdef Geom _geom(int h, int wd, int c, int kh, int kw, int cout, int sh, int sw, int pt, int pl, int oh,
                int ow) noexcept:
    cdef Geom g
    g.h, g.wd, g.c, g.kh, g.kw, g.cout, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow = h, wd, c, kh, kw, cout, sh, sw, pt, pl, \
        oh, ow
    return g


cdef inline Py_ssize_t _round16(Py_ssize_t floats) noexcept nogil:
    """``floats`` rounded up to whole 64-byte lines, so that each buffer cut from a slab starts on one."""
    return (floats + 15) // 16 * 16


cdef float* _aligned_base(float[::1] raw) noexcept:
    """The first 64-byte boundary in ``raw`` (allocated 16 floats longer than needed)."""
    return <float*>((<size_t>&raw[0] + 63) & ~(<size_t>63))


cdef void _im2col_rows(const float* xs, float* pf, int oy0, int oy1, const Geom* g) noexcept nogil:
    """The panel of output rows ``oy0 .. oy1`` of the sample ``xs`` (``h x wd x c``): a row of ``kh * kw * c``
    values ``(i, j, c)`` per output pixel, zero where the window leaves the input (conv.py's ``_im2col_rows``).
    Loops, not memcpy: a kernel row of a 1-channel layer is 3 floats, and a library call per run cost more."""
    cdef int kwc = g.kw * g.c, oy, ox, i, iy, ix0, a, e, q
    cdef Py_ssize_t k = <Py_ssize_t>g.kh * kwc
    cdef float* d
    cdef const float* src
    for oy in range(oy0, oy1):
        for ox in range(g.ow):
            ix0 = ox * g.sw - g.pl
            a = max(0, -ix0) * g.c
            e = min(g.kw, g.wd - ix0) * g.c
            for i in range(g.kh):
                iy = oy * g.sh - g.pt + i
                d = pf + ((<Py_ssize_t>(oy - oy0) * g.ow + ox) * k + i * kwc)
                if iy < 0 or iy >= g.h or e <= a:
                    for q in range(kwc):
                        d[q] = 0
                    continue
                src = xs + (<Py_ssize_t>iy * g.wd + ix0) * g.c
                for q in range(a):
                    d[q] = 0
                for q in range(a, e):
                    d[q] = src[q]
                for q in range(e, kwc):
                    d[q] = 0


cdef void _col2im_rows(const float* dpf, float* dxs, int oy0, int oy1, const Geom* g) noexcept nogil:
    """The adjoint of ``_im2col_rows``: add the panel's gradient into the sample's input gradient ``dxs``, in
    conv.py's ``_col2im_rows`` order (overlapping windows add up in the same sequence)."""
    cdef int kwc = g.kw * g.c, oy, ox, i, iy, ix0, a, e, q
    cdef Py_ssize_t k = <Py_ssize_t>g.kh * kwc
    cdef const float* src
    cdef float* dst
    for oy in range(oy0, oy1):
        for ox in range(g.ow):
            ix0 = ox * g.sw - g.pl
            a = max(0, -ix0) * g.c
            e = min(g.kw, g.wd - ix0) * g.c
            for i in range(g.kh):
                iy = oy * g.sh - g.pt + i
                if iy < 0 or iy >= g.h or e <= a:
                    continue
                src = dpf + ((<Py_ssize_t>(oy - oy0) * g.ow + ox) * k + i * kwc + a)
                dst = dxs + ((<Py_ssize_t>iy * g.wd + ix0) * g.c + a)
                for q in range(e - a):
                    dst[q] += src[q]


cdef inline void _panel_times_w(const float* a, int rows, int k, const float* w, int cout, float* y) noexcept nogil:
    """``y = a @ w`` for the row-major panel ``a`` (rows x k) and ``w`` (k x cout): dropcore's GEMM, or BLAS."""
    cdef float one = 1.0, zero = 0.0
    if DC_HAVE_FAST_GEMM:
        dc_sgemm_rm(rows, cout, k, a, k, w, cout, y, cout)
    else:
        sgemm("N", "N", &cout, &rows, &k, &one, <float*>w, &cout, <float*>a, &k, &zero, y, &cout)


cdef inline void _panel_tn_add(const float* a, int rows, int k, const float* b, int cout, float* c) noexcept nogil:
    """``c += a.T @ b`` for the panel ``a`` (rows x k) and ``b`` (rows x cout): conv.py's ``matmul_tn_add``."""
    cdef float one = 1.0
    if DC_HAVE_FAST_GEMM:
        dc_gemm(k, cout, rows, a, 1, k, b, cout, c, cout, 1)
    else:  # column-major c.T (cout x k) += b.T a
        sgemm("N", "T", &cout, &k, &rows, &one, <float*>b, &cout, <float*>a, &k, &one, c, &cout)


cdef void _pool_arg_rows(const float* conv, int ow, int c, int ph, int pw, int prows, int pow_, float* y,
                         unsigned char* arg) noexcept nogil:
    """``dc_max_pool_arg_rows`` in portable loops (the generic target; conv.py's ``_pool_rows``): the first maximum
    of each window and its tap, NaN and ``NO_TAP`` where a NaN is in it. Selects, not branches, so that the
    channel loop vectorizes."""
    cdef int py, px, co, i, j
    cdef unsigned char k, a
    cdef float v, best
    cdef bint nan, take
    cdef const float* first
    cdef const float* tap
    cdef float* yv
    cdef unsigned char* av
    for py in range(prows):
        for px in range(pow_):
            yv = y + (<Py_ssize_t>py * pow_ + px) * c
            av = arg + (<Py_ssize_t>py * pow_ + px) * c
            first = conv + (<Py_ssize_t>py * ph * ow + px * pw) * c
            for co in range(c):
                v = first[co]
                yv[co] = v
                av[co] = 0 if v == v else NO_TAP
            for i in range(ph):
                for j in range(pw):
                    if i == 0 and j == 0:
                        continue
                    tap = conv + ((<Py_ssize_t>py * ph + i) * ow + px * pw + j) * c
                    k = <unsigned char>(i * pw + j)
                    for co in range(c):
                        v = tap[co]
                        best = yv[co]
                        a = av[co]
                        nan = v != v
                        take = nan | ((v > best) & (a != NO_TAP))  # a NaN window keeps its NaN and NO_TAP
                        yv[co] = v if take else best
                        av[co] = NO_TAP if nan else (k if take else a)


cdef void _conv_rows(const float* xp, const float* wp, const float* bp, bint relu, const Geom* g, int path,
                     float* pad, float* panel, int rows_blk, Py_ssize_t ni, int oy0, int oy1,
                     float* out) noexcept nogil:
    """Convolution rows ``oy0 .. oy1`` of sample ``ni`` into ``out`` (rows x ow x cout), on the kernel ``conv2d``
    runs the layer on (``path``); ``bp``: the bias or NULL; ``pad``: the direct kernel's padded rows or NULL."""
    cdef int oy, r0, r1, k = g.kh * g.kw * g.c
    cdef Py_ssize_t row = <Py_ssize_t>g.ow * g.cout
    if path == PATH_DIRECT:
        dc_conv_direct_rows(xp, g.h, g.wd, g.c, wp, g.kh, g.kw, g.cout, bp, g.sh, g.sw, g.pt, g.pl, g.ow, ni, oy0,
                            oy1, out, pad, relu)
    elif path == PATH_IMPLICIT:
        for oy in range(oy0, oy1):
            _implicit_row(xp, g.h, g.wd, g.c, wp, g.kh, g.kw, g.cout, bp, bp != NULL, g.sh, g.sw, g.ow, ni, oy,
                          out + (oy - oy0) * row, relu)
    else:
        r0 = oy0
        while r0 < oy1:  # (a range with a variable step would be a Python loop)
            r1 = min(oy1, r0 + rows_blk)
            _im2col_rows(xp + ni * g.h * g.wd * g.c, panel, r0, r1, g)
            _panel_times_w(panel, (r1 - r0) * g.ow, k, wp, g.cout, out + (r0 - oy0) * row)
            _epilogue(out + (r0 - oy0) * row, (r1 - r0) * g.ow, g.cout, g.cout, bp, bp != NULL, relu)
            r0 = r1


def conv2d_max_pool_arg(const float[:, :, :, ::1] x, const float[:, :, :, ::1] w, const float[::1] b, bint has_bias,
                        int sh, int sw, int pt, int pl, int path, bint padded, int oh, int ow, int ph, int pw,
                        int rows_blk, float[:, :, :, ::1] y, unsigned char[:, :, :, ::1] arg, bint relu):
    """Training's ``conv2d_max_pool``: ``y`` = the ``ph x pw`` max pooling (strides = window) of ``relu?(conv(x,
    w) + b)`` and ``arg`` = each window's tap (``NO_TAP`` for a NaN), for the non-Winograd layers.

    Each task is a band of pooled rows of one sample (conv.py's ``_conv2d_max_pool_fwd``): its convolution rows go
    to the thread's scratch on the layer's kernel (``path``: 0 im2col panels of ``rows_blk`` rows, 1 implicit GEMM,
    2 direct; only im2col on the generic target), then are pooled with their taps while in cache.
    """
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], cin = x.shape[3]
    cdef int kh = w.shape[0], kw = w.shape[1], cout = w.shape[3]
    cdef int poh = y.shape[1], pow_ = y.shape[2]
    cdef Geom g = _geom(h, wd, cin, kh, kw, cout, sh, sw, pt, pl, oh, ow)
    cdef int band = _rows_per_task(n, poh)
    cdef int bands = (poh + band - 1) // band
    cdef Py_ssize_t tasks = <Py_ssize_t>n * bands, t
    cdef int nthreads = _threads(tasks, not DC_HAVE_FAST_GEMM, 2.0 * n * oh * ow * kh * kw * cin * cout)
    cdef bint direct_pad = path == PATH_DIRECT and padded
    cdef Py_ssize_t nconv = _round16(<Py_ssize_t>band * ph * ow * cout)
    cdef Py_ssize_t npad = _round16(dc_direct_scratch(band * ph, kh, sh, wd, kw, sw, pl, ow, cin) if direct_pad else 0)
    cdef Py_ssize_t npanel = _round16(<Py_ssize_t>rows_blk * ow * kh * kw * cin if path == PATH_IM2COL else 0)
    cdef Py_ssize_t per = nconv + npad + npanel
    cdef float[::1] raw = np.empty(nthreads * per + 16, dtype=np.float32)
    cdef float* base = _aligned_base(raw)
    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef const float* bp = &b[0] if has_bias else NULL
    cdef float* yp = &y[0, 0, 0, 0]
    cdef unsigned char* ap = &arg[0, 0, 0, 0]
    cdef Py_ssize_t ni, at
    cdef int p0, p1
    cdef float* slab
    cdef Py_ssize_t claim = chunk(tasks, nthreads, 2.0 * n * oh * ow * kh * kw * cin * cout / max(tasks, 1),
                                  BALANCE_FLOPS)
    with nogil, parallel(num_threads=nthreads):
        for t in prange(tasks, schedule="dynamic", chunksize=claim):
            slab = base + threadid() * per
            ni = t // bands
            p0 = <int>(t % bands) * band
            p1 = min(p0 + band, poh)
            _conv_rows(xp, wp, bp, relu, &g, path, slab + nconv if direct_pad else NULL, slab + nconv + npad,
                       rows_blk, ni, p0 * ph, p1 * ph, slab)
            at = (ni * poh + p0) * pow_ * cout
            if DC_HAVE_FAST_GEMM:  # the vector pooling: the same comparisons in the same order
                dc_max_pool_arg_rows_c(slab, ow, cout, ph, pw, p1 - p0, pow_, yp + at, ap + at)
            else:
                _pool_arg_rows(slab, ow, cout, ph, pw, p1 - p0, pow_, yp + at, ap + at)


cdef struct Back:
    # One backward's operands (see conv2d_backward): pointers are NULL where the call has none.
    const float* x  # (n, h, wd, c)
    const float* w2dt  # (cout, kh * kw * c): w.reshape(k, cout).T
    const float* dy  # (n, oh * ow, cout); NULL when pooled
    const float* yr  # the forward's output when it fused ReLU (unpooled), else NULL
    const float* pdy  # the pooled gradient, forward output and taps (n, poh, pow, cout) of conv2d_max_pool
    const float* py
    const unsigned char* parg
    const float* flipped  # Winograd transform of the kernel turned 180 degrees: dx on Winograd's tiles
    bint wino4  # flipped is F(4x4)'s transform (36 planes; dc_wino4_dx_rows), else F(2x2)'s (16)
    float* dx  # (n, h, wd, c), NULL without need_dx
    int ph, pw, poh, pow_, rows_blk
    bint relu, has_bias, wino_dw, need_dx, wino, whole
    bint direct_dw  # the weight and bias gradients on the direct kernel (_direct_conv_dw.h), no im2col panel
    bint padded  # some window leaves the input: the direct kernel reads zero-padded copies of the rows
    # a 1x1 stride-1 unpadded layer (geometry.pointwise): its im2col panel is its input rows and col2im a copy, so
    # the products read x and write dx in place. Measured on the Zen 3 (one thread, batch 64), the input gradient
    # of MobileNet's 32 -> 64 layer at 32 x 32: 5.01 -> 2.40 ms; 128 -> 128 at 16 x 16: 7.96 -> 6.79 ms.
    bint pointwise
    # dx as the direct convolution of the sample's whole dy with the kernel turned 180 degrees, its channels swapped
    # (geometry.direct_dx_pays): no panel products and col2im
    const float* flipped_direct
    bint direct_dx
    Py_ssize_t panel_off, dpanel_off, dmask_off, scratch_off, pad_off, dxpad_off  # the thread's buffers in its slab


cdef inline void _relu_mask(const float* dy, const float* y, float* out, Py_ssize_t size) noexcept nogil:
    """``out = dy`` where ``y > 0``, else 0 (conv.py's ``_relu_mask``)."""
    cdef Py_ssize_t i
    cdef float d, zero = 0
    for i in range(size):
        d = dy[i]  # loaded whatever the condition, so that the select vectorizes
        out[i] = d if y[i] > zero else zero


cdef union Bits:
    # A float and its bits (GCC's sanctioned type pun).
    float f
    unsigned int u


cdef void _unpool_rows(const Back* p, const Geom* g, Py_ssize_t s, int oy0, int oy1, float* out) noexcept nogil:
    """Rows ``oy0 .. oy1`` of sample ``s``'s convolution gradient from the pooled gradient and taps (conv.py's
    ``_unpool_rows``): each window's gradient at its tap (with ``relu``, where the window's maximum is positive),
    written ``0 + dy`` as ``max_pool2d_backward`` does; zero elsewhere, rows and columns past the windows too."""
    cdef int py, i, oy, px, j
    cdef unsigned char tap
    cdef Py_ssize_t cell
    cdef const unsigned char* av
    cdef const float* dv
    cdef const float* yv
    memset(out, 0, <Py_ssize_t>(oy1 - oy0) * g.ow * g.cout * sizeof(float))
    for py in range(oy0 // p.ph, min(p.poh, (oy1 + p.ph - 1) // p.ph)):
        for i in range(p.ph):
            oy = py * p.ph + i
            if oy < oy0 or oy >= oy1:  # this row of the window is in another block of rows
                continue
            for px in range(p.pow_):
                cell = ((s * p.poh + py) * p.pow_ + px) * g.cout
                av, dv, yv = p.parg + cell, p.pdy + cell, p.py + cell
                for j in range(p.pw):
                    tap = <unsigned char>(i * p.pw + j)  # NO_TAP is never a tap
                    _unpool_tap(av, dv, yv if p.relu else NULL, tap,
                                out + (<Py_ssize_t>(oy - oy0) * g.ow + px * p.pw + j) * g.cout, g.cout)


cdef inline void _unpool_tap(const unsigned char* av, const float* dv, const float* yv, unsigned char tap, float* o,
                             int cout) noexcept nogil:
    """``o = 0 + dv`` where ``av == tap`` (and ``yv > 0``, when not NULL), else +0, over ``cout`` channels.

    Written as a mask on the bits of ``0 + dv`` (+0 is all zero bits: the same values as the select), and ``yv > 0``
    tested on its bits (0 < bits <= those of +inf: the same answer for every float, NaN included): GCC vectorizes
    that. As selects it kept the loop scalar (the add or the float compare, which may trap, went behind a branch):
    cifar's first layer, backward, 2.5x slower than the Numba kernel."""
    cdef Bits v, y
    cdef unsigned int zero = 0, one = 1
    cdef int co
    if yv != NULL:
        for co in range(cout):
            v.f = <float>0 + dv[co]
            y.f = yv[co]
            v.u = v.u & (zero - <unsigned int>((av[co] == tap) & (y.u - one < INF_BITS)))
            o[co] = v.f
    else:
        for co in range(cout):
            v.f = <float>0 + dv[co]
            v.u = v.u & (zero - <unsigned int>(av[co] == tap))
            o[co] = v.f


cdef inline void _add_rows(const float* rows, int m, int cout, float* acc) noexcept nogil:
    """``acc += rows[r]`` for each of the ``m`` rows (``cout`` wide), row after row (conv.py's bias gradient)."""
    cdef int r, co
    cdef const float* row
    for r in range(m):
        row = rows + <Py_ssize_t>r * cout
        for co in range(cout):
            acc[co] += row[co]


cdef void _backward_sample(const Back* p, const Geom* g, Py_ssize_t s, float* dwsum, float* dbsum,
                           float* slab) noexcept nogil:
    """Sample ``s``'s share of the gradients (conv.py's ``_conv2d_bwd``, one iteration of its sample loop): its dx
    (owned by this thread), its terms of the chunk's weight and bias partials ``dwsum`` (dW, or dU in Winograd's
    domain) and ``dbsum``."""
    cdef int k = g.kh * g.kw * g.c, oy0, oy1, m, ty0
    cdef int tiles_out = (g.oh + 1) // 2, tiles_in = (g.h + 1) // 2
    cdef Py_ssize_t sample_in = <Py_ssize_t>g.h * g.wd * g.c, row0, cell
    cdef float* panel = slab + p.panel_off
    cdef float* dpanel = slab + p.dpanel_off
    cdef float* dmask = slab + p.dmask_off
    cdef float* scratch = slab + p.scratch_off
    cdef float* dxs = p.dx + s * sample_in if p.need_dx else NULL
    cdef float* tile
    cdef const float* dys
    cdef const float* src
    if p.need_dx and not p.wino and not p.pointwise and not p.direct_dx:
        memset(dxs, 0, sample_in * sizeof(float))
    oy0 = 0
    while oy0 < g.oh:
        oy1 = min(g.oh, oy0 + p.rows_blk)
        m = (oy1 - oy0) * g.ow
        row0 = (s * g.oh * g.ow + oy0 * g.ow) * g.cout
        tile = dmask + (<Py_ssize_t>oy0 * g.ow * g.cout if p.whole else 0)
        if p.ph > 0:  # (if, not a conditional expression: Cython's temporary would drop the const)
            dys = tile
        else:
            dys = p.dy + row0
        if p.ph > 0 and DC_HAVE_FAST_GEMM:  # the vector kernel: the same values
            cell = s * p.poh * p.pow_ * g.cout
            dc_unpool_rows(p.pdy + cell, p.py + cell, p.parg + cell, p.poh, p.pow_, g.cout, p.ph, p.pw, p.relu, oy0,
                           oy1, g.ow, tile)
        elif p.ph > 0:
            _unpool_rows(p, g, s, oy0, oy1, tile)
        elif p.relu:
            _relu_mask(dys, p.yr + row0, tile, <Py_ssize_t>m * g.cout)
            dys = tile
        if p.direct_dw:  # dW and db in one pass over the rows' gradient
            dc_conv_dw_rows(p.x, g.h, g.wd, g.c, dys, g.kh, g.kw, g.cout, g.sh, g.sw, g.pt, g.pl, g.ow, s, oy0, oy1,
                            dwsum, dbsum if p.has_bias else NULL, slab + p.pad_off if p.padded else NULL)
        elif p.pointwise:  # the panel's rows are the input's pixels
            _panel_tn_add(p.x + s * sample_in + <Py_ssize_t>oy0 * g.ow * g.c, m, k, dys, g.cout, dwsum)
        elif not p.wino_dw:
            _im2col_rows(p.x + s * sample_in, panel, oy0, oy1, g)
            _panel_tn_add(panel, m, k, dys, g.cout, dwsum)
        if p.need_dx and p.pointwise:  # each pixel's gradient is its panel row: written, not added into zeros
            _panel_times_w(dys, m, g.cout, p.w2dt, k, dxs + <Py_ssize_t>oy0 * g.ow * g.c)
        elif p.need_dx and not p.wino and not p.direct_dx:
            _panel_times_w(dys, m, g.cout, p.w2dt, k, dpanel)
            _col2im_rows(dpanel, dxs, oy0, oy1, g)
        if p.has_bias and not p.direct_dw:
            _add_rows(dys, m, g.cout, dbsum)
        oy0 = oy1
    if p.relu or p.ph > 0:
        src = dmask
    else:
        src = p.dy + s * g.oh * g.ow * g.cout
    if p.wino_dw:  # dU += this sample's tiles, band by band of the output's tile rows
        for ty0 in range(0, tiles_out, 4):  # WINO_BAND
            dc_wino_dw_rows(p.x, g.h, g.wd, g.c, src, g.cout, g.pt, g.pl, g.oh, g.ow, s, ty0,
                            min(ty0 + WINO_BAND, tiles_out), dwsum, scratch)
    if p.direct_dx:  # dx: the full convolution of dy with the flipped kernel, every pixel written
        dc_conv_direct_rows(src, g.oh, g.ow, g.cout, p.flipped_direct, g.kh, g.kw, g.c, NULL, 1, 1, g.kh - 1 - g.pt,
                            g.kw - 1 - g.pl, g.wd, 0, 0, g.h, dxs, slab + p.dxpad_off, 0)
    if p.wino and p.wino4:  # dx: the full 3x3 convolution of dy with the flipped kernel on F(4x4), every pixel
        for ty0 in range(0, (g.h + 3) // 4, 2):  # WINO4_BAND
            dc_wino4_dx_rows(src, g.oh, g.ow, g.cout, p.flipped, g.c, g.pt, g.pl, g.h, g.wd, ty0,
                             min(ty0 + WINO4_BAND, (g.h + 3) // 4), dxs, scratch)
    elif p.wino:  # dx: the full 3x3 convolution of dy with the flipped kernel, every pixel written
        for ty0 in range(0, tiles_in, 4):  # WINO_BAND
            dc_wino_rows(src, g.oh, g.ow, g.cout, p.flipped, g.c, NULL, 2 - g.pt, 2 - g.pl, g.h, g.wd, 0, ty0,
                         min(ty0 + WINO_BAND, tiles_in), dxs, 0, 0, scratch, NULL)


cdef inline const float* _fptr(const float[::1] a) noexcept:
    """The first element of a flat float operand, NULL for None (an operand the call does not have)."""
    if a is None:
        return NULL
    return &a[0]


def conv2d_backward(const float[:, :, :, ::1] x, const float[:, ::1] w2dt, int kh, int kw, int sh, int sw, int pt,
                    int pl, int oh, int ow, int rows_blk, int nchunks, bint has_bias, bint relu, const float[::1] dy,
                    const float[::1] yr, const float[::1] pdy, const float[::1] py, const unsigned char[::1] parg,
                    int ph, int pw, int poh, int pow_, const float[::1] flipped, bint wino_dw, bint direct_dw,
                    bint padded, float[::1] dx, float[::1] dw, float[::1] db, const float[::1] flipped_direct=None,
                    bint flipped_f4=False):
    """The convolution's gradients (conv.py's ``_conv2d_bwd``): ``dx`` (None: not needed), ``dw`` (``kh * kw * c x
    cout``, or with ``wino_dw`` the ``16 x c x cout`` gradient of the kernel's Winograd transform, of which the
    caller takes ``G^T dU G``) and ``db`` (filled only with ``has_bias``). Operands are flat views.

    The gradient of the output is ``dy`` (masked where ``yr``, the forward's fused-ReLU output, is not positive,
    when ``relu``), or, with ``ph > 0``, rebuilt tile by tile from ``conv2d_max_pool``'s ``pdy``, ``py`` and
    ``parg``. ``flipped`` (or None): the input gradient on Winograd's tiles instead of panel products and col2im;
    ``flipped_direct`` (or None; a stride-1 layer's kernel turned 180 degrees, ``kh x kw x cout x c``): on the
    direct kernel instead. ``flipped_f4``: ``flipped`` is F(4x4)'s transform (``winograd4_weights``, 36 planes),
    the input gradient on F(4x4)'s tiles (``dc_wino4_dx_rows``); else F(2x2)'s (16).
    ``direct_dw`` (``geometry.direct_dw_pays``, vector targets only): the weight and bias gradients on the direct
    kernel (``_direct_conv_dw.h``) instead of im2col panels, reading zero-padded copies of the input rows when
    ``padded`` (some window leaves the input).

    The samples are split into ``nchunks`` chunks whatever the thread count; each chunk sums its samples' weight
    and bias terms into its own partial, and the partials are added in chunk order: the result never depends on
    the thread count (and on the vector targets it has the Numba kernel's bits).
    """
    cdef int n = x.shape[0], c = x.shape[3], cout = w2dt.shape[0], k = w2dt.shape[1]
    cdef Geom g = _geom(x.shape[1], x.shape[2], c, kh, kw, cout, sh, sw, pt, pl, oh, ow)
    cdef Back p
    cdef Py_ssize_t dwsize = dw.shape[0], size = dwsize + cout
    p.x, p.w2dt, p.dy, p.yr = &x[0, 0, 0, 0], &w2dt[0, 0], _fptr(dy), _fptr(yr)
    p.pdy, p.py, p.parg = _fptr(pdy), _fptr(py), NULL
    if parg is not None:
        p.parg = &parg[0]
    p.flipped, p.dx = _fptr(flipped), NULL if dx is None else &dx[0]
    p.ph, p.pw, p.poh, p.pow_, p.rows_blk = ph, pw, poh, pow_, rows_blk
    p.relu, p.has_bias, p.wino_dw, p.need_dx = relu, has_bias, wino_dw, dx is not None
    p.direct_dw, p.padded = direct_dw, direct_dw and padded
    p.pointwise = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == x.shape[1] \
        and ow == x.shape[2]
    p.wino = p.need_dx and flipped is not None
    p.wino4 = p.wino and flipped_f4
    if p.wino and flipped.shape[0] != (36 if p.wino4 else 16) * c * cout:
        raise ValueError(f"conv2d_backward: flipped has {flipped.shape[0]} floats, expected the "
                         f"{36 if p.wino4 else 16} x {cout} x {c} of F({4 if p.wino4 else 2}x{4 if p.wino4 else 2})'s "
                         f"transform")
    p.flipped_direct = _fptr(flipped_direct)
    p.direct_dx = p.need_dx and flipped_direct is not None
    # the sample's whole dy is kept: Winograd's tiles and the direct dx read rows across blocks
    p.whole = p.wino or wino_dw or p.direct_dx
    cdef Py_ssize_t rows = <Py_ssize_t>oh * ow if p.whole else (<Py_ssize_t>rows_blk * ow if relu or ph > 0 else 0)
    p.panel_off = 0
    p.dpanel_off = _round16(0 if wino_dw or direct_dw or p.pointwise else <Py_ssize_t>rows_blk * ow * k)
    p.dmask_off = p.dpanel_off + _round16(<Py_ssize_t>rows_blk * ow * k
                                          if p.need_dx and not p.wino and not p.pointwise and not p.direct_dx else 0)
    p.scratch_off = p.dmask_off + _round16(rows * cout)
    p.pad_off = p.scratch_off + _round16(max(<Py_ssize_t>16 * WINO_BAND * ((x.shape[2] + 1) // 2),
                                             <Py_ssize_t>36 * WINO4_BAND * ((x.shape[2] + 3) // 4)) * (c + cout)
                                         if p.whole else 0)
    p.dxpad_off = p.pad_off + _round16(dc_direct_scratch(rows_blk, kh, sh, x.shape[2], kw, sw, pl, ow, c)
                                       if p.padded else 0)
    cdef Py_ssize_t per = p.dxpad_off + _round16(dc_direct_scratch(x.shape[1], kh, 1, ow, kw, 1, kw - 1 - pl,
                                                                   x.shape[2], cout) if p.direct_dx else 0)
    cdef double flops = 2.0 * n * oh * ow * k * cout * (2 if p.need_dx else 1)
    cdef int nthreads = _threads(nchunks, not DC_HAVE_FAST_GEMM, flops)
    cdef float[::1] raw = np.empty(nthreads * per + 16, dtype=np.float32)
    cdef float* base = _aligned_base(raw)
    cdef float[:, ::1] parts = np.empty((nchunks, size), dtype=np.float32)
    cdef Py_ssize_t t, s
    cdef float* part
    cdef Py_ssize_t claim = chunk(nchunks, nthreads, flops / max(nchunks, 1), BALANCE_FLOPS)
    with nogil, parallel(num_threads=nthreads):
        for t in prange(nchunks, schedule="dynamic", chunksize=claim):
            part = &parts[t, 0]
            memset(part, 0, size * sizeof(float))
            for s in range(t * n // nchunks, (t + 1) * n // nchunks):
                _backward_sample(&p, &g, s, part, part + dwsize, base + threadid() * per)
    _sum_partials(parts, &dw[0], dwsize, &db[0] if has_bias else NULL, cout, nthreads)


cdef void _sum_partials(float[:, ::1] parts, float* dw, Py_ssize_t dwsize, float* db, int cout,
                        int nthreads) noexcept:
    """``dw`` (the partials' first ``dwsize`` columns), then ``db`` (the next ``cout``, when not NULL) = the chunks'
    partials added in chunk order, as conv.py's ``dw = dwp[0].copy(); dw += dwp[t]``: each element's sum in that
    order, the elements split between the threads in blocks."""
    cdef Py_ssize_t nchunks = parts.shape[0], blocks = (dwsize + 4095) // 4096, blk
    with nogil, parallel(num_threads=nthreads if blocks > 1 else 1):
        for blk in prange(blocks, schedule="static"):
            _sum_columns(parts, blk * 4096, min(dwsize, (blk + 1) * 4096), dw + blk * 4096)
    if db != NULL:
        _sum_columns(parts, dwsize, dwsize + cout, db)


cdef inline void _sum_columns(float[:, ::1] parts, Py_ssize_t i0, Py_ssize_t i1, float* out) noexcept nogil:
    """``out[i - i0] = parts[0, i] + parts[1, i] + ...`` (in that order) for ``i`` in ``i0 .. i1``."""
    cdef Py_ssize_t t, i
    cdef float* row
    memcpy(out, &parts[0, i0], (i1 - i0) * sizeof(float))
    for t in range(1, parts.shape[0]):
        row = &parts[t, i0]
        for i in range(i1 - i0):
            out[i] = out[i] + row[i]


# dense_backward: dx = dy @ w.T, dw = x.T @ dy, db = dy.sum(0) (dense.py's backward). On dropcore's GEMM every split
# forms the same sums (k ascending, whatever the block), so each product may be cut where it is cheapest.

cdef void _dx_block(const float* dy, const float* dyt, const float* w, float* dx, int n, int m, int k_in, int i0,
                    int i1, float* buf) noexcept nogil:
    """``dx[:, i0:i1] = dy @ w[i0:i1].T``. On dropcore's GEMM, which reads B row-major: through ``dyt`` (``dy.T``,
    when not NULL: the block ``w[i0:i1] @ dy.T`` formed in ``buf`` and written transposed, dense.py's
    ``_dx_fast_t``) or through ``w[i0:i1].T`` copied into ``buf`` (``_dx_fast_cols``): the same products in the same
    order. On BLAS, ``w`` is read transposed in place."""
    cdef int cols = i1 - i0, r, j, q
    cdef float one = 1.0, zero = 0.0
    if not DC_HAVE_FAST_GEMM:  # column-major dx.T block (cols x n) = w[i0:i1] (read transposed) @ dy.T
        sgemm("T", "N", &cols, &n, &m, &one, <float*>(w + <Py_ssize_t>i0 * m), &m, <float*>dy, &m, &zero, dx + i0,
              &k_in)
    elif dyt != NULL:
        dc_sgemm_rm(cols, n, m, w + <Py_ssize_t>i0 * m, m, dyt, n, buf, n)
        for r in range(n):
            for j in range(cols):
                dx[<Py_ssize_t>r * k_in + i0 + j] = buf[<Py_ssize_t>j * n + r]
    else:
        for j in range(cols):
            for q in range(m):
                buf[<Py_ssize_t>q * cols + j] = w[(<Py_ssize_t>i0 + j) * m + q]
        dc_gemm(n, cols, m, dy, m, 1, buf, cols, dx + i0, k_in, 0)


cdef void _dw_block(const float* x, const float* dy, float* dw, int n, int m, int k_in, int i0,
                    int i1) noexcept nogil:
    """``dw[i0:i1] = x[:, i0:i1].T @ dy``, the columns of ``x`` read in place (dense.py's ``_dw``)."""
    cdef int cols = i1 - i0
    cdef float one = 1.0, zero = 0.0
    if DC_HAVE_FAST_GEMM:
        dc_gemm(cols, m, n, x + i0, 1, k_in, dy, m, dw + <Py_ssize_t>i0 * m, m, 0)
    else:  # column-major dw.T block (m x cols) = dy.T @ x[:, i0:i1]
        sgemm("N", "T", &m, &cols, &n, &one, <float*>dy, &m, <float*>(x + i0), &k_in, &zero,
              dw + <Py_ssize_t>i0 * m, &m)


def dense_backward(const float[:, ::1] dy, const float[:, ::1] x, const float[:, ::1] w, float[:, ::1] dx,
                   float[:, ::1] dw, float[::1] db, int mode, int nblk):
    """The dense layer's gradients into ``dx``, ``dw`` and ``db`` (None: no bias), in dense.py's ``mode``:
    ``DENSE_SERIAL`` (small products: one thread), ``DENSE_TWO_TASKS`` (dx and dw side by side) or
    ``DENSE_BLOCKS`` (each product in ``nblk`` blocks of ``w``'s rows, the tasks of both in one region)."""
    cdef int n = x.shape[0], k_in = x.shape[1], m = w.shape[1]
    cdef int blocks = 1 if mode != DENSE_BLOCKS else nblk
    cdef bint transposed = DC_HAVE_FAST_GEMM and mode == DENSE_BLOCKS and n <= m
    cdef int nthreads = 1 if mode == DENSE_SERIAL else _threads(2 * blocks, not DC_HAVE_FAST_GEMM,
                                                                4.0 * n * k_in * m)
    # each thread's block of w.T or of dx.T (malloc: a NumPy scratch cost a tenth of the smallest layers' call)
    cdef Py_ssize_t per = _round16(<Py_ssize_t>((k_in + blocks - 1) // blocks) * max(n, m)) if DC_HAVE_FAST_GEMM \
        else 0
    cdef float* bufs = <float*>malloc((nthreads * per + 1) * sizeof(float))
    cdef float* dyt = <float*>malloc((<Py_ssize_t>n * m if transposed else 1) * sizeof(float))
    cdef int r, j
    if bufs == NULL or dyt == NULL:
        free(bufs)
        free(dyt)
        raise MemoryError()
    with nogil:
        if transposed:
            for r in range(n):
                for j in range(m):
                    dyt[<Py_ssize_t>j * n + r] = dy[r, j]
        if mode == DENSE_SERIAL:  # no OpenMP region: waking the team costs more than these products
            _dense_tasks(&dy[0, 0], NULL, &x[0, 0], &w[0, 0], &dx[0, 0], &dw[0, 0], n, m, k_in, 1, 0, bufs)
            _dense_tasks(&dy[0, 0], NULL, &x[0, 0], &w[0, 0], &dx[0, 0], &dw[0, 0], n, m, k_in, 1, 1, bufs)
        else:
            _dense_region(&dy[0, 0], dyt if transposed else NULL, &x[0, 0], &w[0, 0], &dx[0, 0], &dw[0, 0], n, m,
                          k_in, blocks, nthreads, bufs, per)
        if db is not None:  # dense.py's _db: row by row
            memset(&db[0], 0, m * sizeof(float))
            _add_rows(&dy[0, 0], n, m, &db[0])
    free(bufs)
    free(dyt)


cdef void _dense_region(const float* dy, const float* dyt, const float* x, const float* w, float* dx, float* dw, int n,
                        int m, int k_in, int blocks, int nthreads, float* bufs, Py_ssize_t per) noexcept nogil:
    """The ``2 * blocks`` tasks of a dense backward (``_dense_tasks``) on ``nthreads`` OpenMP threads."""
    cdef int t
    with parallel(num_threads=nthreads):
        for t in prange(2 * blocks, schedule="static"):
            _dense_tasks(dy, dyt, x, w, dx, dw, n, m, k_in, blocks, t, bufs + threadid() * per)


cdef inline void _dense_tasks(const float* dy, const float* dyt, const float* x, const float* w, float* dx, float* dw,
                              int n, int m, int k_in, int blocks, int t, float* buf) noexcept nogil:
    """Task ``t`` of a dense backward: a block of ``dx``'s columns (``t < blocks``) or of ``dw``'s rows."""
    cdef int b = t % blocks
    if t < blocks:
        _dx_block(dy, dyt, w, dx, n, m, k_in, k_in * b // blocks, k_in * (b + 1) // blocks, buf)
    else:
        _dw_block(x, dy, dw, n, m, k_in, k_in * b // blocks, k_in * (b + 1) // blocks)


def winograd_rows_address():
    """The address of the C function ``dc_wino_rows_flagged`` (see ``_winograd.h``) for the Numba kernels, or 0
    when the variant has no Winograd kernels (the generic one)."""
    return <size_t>&dc_wino_rows_flagged if DC_HAVE_WINOGRAD else 0


def winograd_dw_address():
    """The address of the C function ``dc_wino_dw_rows`` (see ``_winograd.h``) for the Numba kernels, or 0 when the
    variant has no Winograd kernels (the generic one)."""
    return <size_t>&dc_wino_dw_rows if DC_HAVE_WINOGRAD else 0


def winograd4_dx_address():
    """The address of the C function ``dc_wino4_dx_rows`` (see ``_winograd4.h``) for the Numba kernels, or 0 on the
    generic variant (no vector kernels)."""
    return <size_t>&dc_wino4_dx_rows if DC_HAVE_FAST_GEMM else 0


def direct_dw_address():
    """The address of the C function ``dc_conv_dw_rows_flagged`` (see ``_direct_conv_dw.h``) for the Numba kernels,
    or 0 on the generic variant (no vector kernels)."""
    return <size_t>&dc_conv_dw_rows_flagged if DC_HAVE_FAST_GEMM else 0


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
