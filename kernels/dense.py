"""Dense layer kernels (Numba): ``y = x @ w + b`` (optional fused ReLU) and its backward pass.

Where the Cython extension has dropcore's own GEMM (AVX-512 or AVX2: :data:`dropcore.kernels.blas.HAVE_FAST_GEMM`),
every product runs on it, BLAS never: its sums do not depend on the split, and on AVX-512 it runs at twice the speed
of OpenBLAS's AVX2 kernels. ``dx = dy @ w.T`` reads one operand transposed: through a copy of ``w.T`` block by block,
or, for a batch no wider than the outputs, of ``dy.T`` (smaller), the product then formed transposed.
Mid-sized backward passes run ``dx`` and ``dw`` side by side, one thread each. Without it (the generic target), each
share is a single-threaded BLAS call (:func:`dropcore.kernels.blas.gemm`, which takes leading dimensions, so a block
of columns needs no copy).

Each product is split across the threads over the axis that lets every thread read only its share of the larger
operand:

- forward: over output columns when ``w`` is the larger operand (a thread reads only its columns of ``w``; with
  row blocks every thread would pack all of ``w``: measured 0.69 ms against 2-thread BLAS's 0.45 ms on
  (32, 9216) x (9216, 128)), over rows of ``x`` otherwise; bias and ReLU follow while the block is in cache;
- ``dx = dy @ w.T``: over columns of ``dx`` (rows of ``w``) when ``w`` is the larger operand, else over rows;
- ``dw = x.T @ dy``: over rows of ``dw``, reading the matching columns of ``x`` in place.

On BLAS, small batches (``N <= SMALL_BATCH``) run the forward as one-row products: OpenBLAS runs those as matrix-vector
products straight from ``w``, while a product of a few rows packs all of ``w`` first (measured on (N, 9216) x
(9216, 128): 0.12 ms for N = 4 as four one-row calls, 0.50 ms as two two-row calls). Products of fewer than
``SMALL_WORK`` multiply-adds (``SMALL_WORK_FAST`` on dropcore's GEMM) run serially: waking the thread pool costs
more than they do.

The public wrappers hold BLAS to one thread while the ``prange`` regions call it from every thread.
"""
import numpy as np
from numba import prange


from .blas import HAVE_FAST_GEMM, fast_gemm, gemm
from .blocking import SMALL_WORK, SMALL_WORK_FAST
from .blocking import blocks as _blocks
from .config import njit, pjit
from .threads import blas_single_thread

F32 = np.float32
#: Batches up to this size use one-row blocks in the forward.
SMALL_BATCH = 8
@njit
def _bias_relu(y, b, relu, r0, r1, c0, c1):
    """Epilogue on ``y[r0:r1, c0:c1]``: add the bias (when given) and clamp at 0 (when ``relu``)."""
    for r in range(r0, r1):
        row = y[r]
        for j in range(c0, c1):
            v = row[j]
            if b is not None:
                v += b[j]
            if relu and v < F32(0.0):
                v = F32(0.0)
            row[j] = v


@njit
def _dense_serial(x, w, b, relu, fast):
    n, k_in, m = x.shape[0], x.shape[1], w.shape[1]
    if fast:
        y = np.empty((n, m), dtype=F32)
        fast_gemm(x.reshape(-1), k_in, 1, w.reshape(-1), m, y.reshape(-1), m, n, m, k_in)
    else:
        y = np.dot(x, w)
    _bias_relu(y, b, relu, 0, n, 0, m)
    return y


@pjit
def _dense_rows(x, w, b, relu, nblk, fast):
    n, k_in, m = x.shape[0], x.shape[1], w.shape[1]
    y = np.empty((n, m), dtype=F32)
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    for k in prange(nblk):
        r0 = n * k // nblk
        r1 = n * (k + 1) // nblk
        if fast:
            fast_gemm(xf[r0 * k_in:], k_in, 1, wf, m, yf[r0 * m:], m, r1 - r0, m, k_in)
        else:
            np.dot(x[r0:r1], w, y[r0:r1])
        _bias_relu(y, b, relu, r0, r1, 0, m)
    return y


@pjit
def _dense_cols(x, w, b, relu, nblk, fast):
    n, k_in, m = x.shape[0], x.shape[1], w.shape[1]
    y = np.empty((n, m), dtype=F32)
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    for k in prange(nblk):
        c0 = m * k // nblk
        c1 = m * (k + 1) // nblk
        if fast:
            fast_gemm(xf, k_in, 1, wf[c0:], m, yf[c0:], m, n, c1 - c0, k_in)
        else:
            gemm(xf, wf[c0:], yf[c0:], n, c1 - c0, k_in, k_in, m, m)
        _bias_relu(y, b, relu, 0, n, c0, c1)
    return y


def dense(x, w, b, relu=False):
    """Dense forward ``x @ w + b`` (``b`` may be ``None``), ReLU fused when ``relu``; float32 ``(N, out)``."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    n, k_in = x.shape
    m = w.shape[1]
    if HAVE_FAST_GEMM:
        if n * k_in * m <= SMALL_WORK_FAST:
            return _dense_serial(x, w, b, relu, True)
        if n < k_in and _blocks(m) > 1:  # w is the larger operand: each thread reads only its columns of it
            return _dense_cols(x, w, b, relu, _blocks(m), True)
        return _dense_rows(x, w, b, relu, _blocks(n), True)
    if n * k_in * m <= SMALL_WORK:  # OpenBLAS runs products this small on one thread by itself
        return _dense_serial(x, w, b, relu, False)
    with blas_single_thread():
        if n <= SMALL_BATCH:  # one-row products: matrix-vector products straight from w (BLAS)
            return _dense_rows(x, w, b, relu, n, False)
        if n < k_in and _blocks(m) > 1:
            return _dense_cols(x, w, b, relu, _blocks(m), False)
        return _dense_rows(x, w, b, relu, _blocks(n), False)


@pjit
def _dx_rows(dy, w, nblk):
    n = dy.shape[0]
    dx = np.empty((n, w.shape[0]), dtype=F32)
    wt = w.T  # Fortran-ordered view: BLAS reads it transposed, no copy
    for k in prange(nblk):
        r0 = n * k // nblk
        r1 = n * (k + 1) // nblk
        np.dot(dy[r0:r1], wt, dx[r0:r1])
    return dx


@pjit
def _dx_cols(dy, w, nblk):
    """``dx[:, i0:i1] = dy @ w[i0:i1].T``: each thread reads only its rows of ``w``."""
    n, m, k_in = dy.shape[0], dy.shape[1], w.shape[0]
    dx = np.empty((n, k_in), dtype=F32)
    dyf, wf, dxf = dy.reshape(-1), w.reshape(-1), dx.reshape(-1)
    for k in prange(nblk):
        i0 = k_in * k // nblk
        i1 = k_in * (k + 1) // nblk
        gemm(dyf, wf[i0 * m:], dxf[i0:], n, i1 - i0, m, m, m, k_in, False, True)
    return dx


@pjit
def _dw(x, dy, nblk, fast):
    """``dw[i0:i1] = x[:, i0:i1].T @ dy``, split over rows of ``dw``; the columns of ``x`` are read in place."""
    n, k_in, m = x.shape[0], x.shape[1], dy.shape[1]
    dw = np.empty((k_in, m), dtype=F32)
    xf, dyf, dwf = x.reshape(-1), dy.reshape(-1), dw.reshape(-1)
    for k in prange(nblk):
        i0 = k_in * k // nblk
        i1 = k_in * (k + 1) // nblk
        if fast:
            fast_gemm(xf[i0:], 1, k_in, dyf, m, dwf[i0 * m:], m, i1 - i0, m, n)
        else:
            gemm(xf[i0:], dyf, dwf[i0 * m:], i1 - i0, m, n, k_in, m, m, True, False)
    return dw


@njit
def _db(dy):
    db = np.zeros(dy.shape[1], dtype=F32)
    for r in range(dy.shape[0]):
        row = dy[r]
        for j in range(row.shape[0]):
            db[j] += row[j]
    return db


@njit
def _dx_fast(dy, w, dx):
    """``dx = dy @ w.T`` on dropcore's GEMM, which reads B row-major: through a transposed copy of ``w``."""
    n, m, k_in = dy.shape[0], dy.shape[1], w.shape[0]
    wt = np.ascontiguousarray(w.T)
    fast_gemm(dy.reshape(-1), m, 1, wt.reshape(-1), k_in, dx.reshape(-1), k_in, n, k_in, m)


@pjit
def _dx_fast_cols(dy, w, nblk):
    """``dx[:, i0:i1] = dy @ w[i0:i1].T`` on dropcore's GEMM: each thread transposes only its rows of ``w`` into a
    buffer of its own (the GEMM reads B row-major), in cache for the product that follows. A whole transposed copy
    of ``w`` first, on one thread, cost more than the product (mnist_cnn's 9216 x 128: 2.6 against 3.0 ms)."""
    n, m, k_in = dy.shape[0], dy.shape[1], w.shape[0]
    dx = np.empty((n, k_in), dtype=F32)
    dyf, dxf = dy.reshape(-1), dx.reshape(-1)
    for k in prange(nblk):
        i0 = k_in * k // nblk
        i1 = k_in * (k + 1) // nblk
        wt = np.ascontiguousarray(w[i0:i1].T)
        fast_gemm(dyf, m, 1, wt.reshape(-1), i1 - i0, dxf[i0:], k_in, n, i1 - i0, m)
    return dx


@pjit
def _dx_fast_t(dy, w, nblk):
    """``dx = dy @ w.T`` on dropcore's GEMM for a batch no wider than the layer's outputs: each thread forms its
    block of ``dx.T = w[i0:i1] @ dy.T`` (``w`` read in place, ``dy.T`` a small copy) and writes it transposed, so
    the copy that makes an operand row-major is ``n x k_in``, not ``w``'s ``k_in x m``. The same products in the
    same order as :func:`_dx_fast_cols` (an FMA's factors commute): the same bits."""
    n, m, k_in = dy.shape[0], dy.shape[1], w.shape[0]
    dx = np.empty((n, k_in), dtype=F32)
    dyt = np.ascontiguousarray(dy.T)
    wf, dytf = w.reshape(-1), dyt.reshape(-1)
    for k in prange(nblk):
        i0 = k_in * k // nblk
        i1 = k_in * (k + 1) // nblk
        block = np.empty((i1 - i0, n), dtype=F32)
        fast_gemm(wf[i0 * m:], m, 1, dytf, n, block.reshape(-1), n, i1 - i0, n, m)
        dx[:, i0:i1] = block.T
    return dx


@njit
def _dw_fast(x, dy, dw):
    """``dw = x.T @ dy`` on dropcore's GEMM, ``x.T`` read in place (the GEMM takes A's element strides)."""
    n, k_in, m = x.shape[0], x.shape[1], dy.shape[1]
    fast_gemm(x.reshape(-1), 1, k_in, dy.reshape(-1), m, dw.reshape(-1), m, k_in, m, n)


@njit
def _backward_serial(dy, x, w, fast):
    if not fast:
        return np.dot(dy, w.T), np.dot(x.T, dy)
    dx = np.empty((x.shape[0], x.shape[1]), dtype=F32)
    dw = np.empty((x.shape[1], w.shape[1]), dtype=F32)
    _dx_fast(dy, w, dx)
    _dw_fast(x, dy, dw)
    return dx, dw


@pjit
def _backward_two_tasks(dy, x, w):
    """``dx`` and ``dw`` side by side, one thread each, on dropcore's GEMM: for mid-sized layers (LeNet's 400 x
    120) the two products are of a size, and each is too small to split well on its own."""
    dx = np.empty((x.shape[0], x.shape[1]), dtype=F32)
    dw = np.empty((x.shape[1], w.shape[1]), dtype=F32)
    for t in prange(2):
        if t == 0:
            _dx_fast(dy, w, dx)
        else:
            _dw_fast(x, dy, dw)
    return dx, dw


def dense_backward(dy, x, w, has_bias):
    """Dense backward -> ``(dx, dw, db)``: ``dy @ w.T``, ``x.T @ dy``, ``dy.sum(0)`` (``None`` without bias).

    For a fused ReLU the caller masks ``dy`` first (``relu_backward``).
    """
    dy, x, w = np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    n, k_in = x.shape
    m = w.shape[1]
    if n * k_in * m <= SMALL_WORK:  # OpenBLAS runs products this small on one thread by itself
        dx, dw = _backward_serial(dy, x, w, HAVE_FAST_GEMM)
    elif HAVE_FAST_GEMM and n * k_in * m <= SMALL_WORK_FAST:
        dx, dw = _backward_two_tasks(dy, x, w)
    elif HAVE_FAST_GEMM:
        dx = _dx_fast_t(dy, w, _blocks(k_in)) if n <= m else _dx_fast_cols(dy, w, _blocks(k_in))
        dw = _dw(x, dy, _blocks(k_in), True)
    else:
        with blas_single_thread():
            dx = _dx_cols(dy, w, _blocks(k_in)) if n < k_in else _dx_rows(dy, w, _blocks(n))
            dw = _dw(x, dy, _blocks(k_in), False)
    return dx, dw, (_db(dy) if has_bias else None)
