"""Training's convolution and dense kernels on the Cython extension (``_cy_gemm.pyx``, compiled ahead of time), with
the kernel contract's signatures: ``conv2d_max_pool``, ``conv2d_backward``, ``conv2d_max_pool_backward`` and
``dense_backward`` (see ``README.md``, "Families and signatures").

Why: a process that trains on the Numba kernels first compiles them (~35 s on an empty cache, 17 s of it the
convolution's backward); these are compiled when the package is built. They port the Numba drivers
(``kernels/conv.py``, ``kernels/dense.py``) onto the same C functions (``_gemm.h``, ``_winograd.h``,
``_direct_conv.h``, ``_pool.h``) with the same blocks and chunks, so on the vector targets (avx512, avx2) their
results have the Numba kernels' bits; on the generic target the products run on BLAS, within the reference's
tolerance. Nothing depends on the thread count: the backward sums its weight gradient in ``BACKWARD_CHUNKS`` chunks
of samples whatever the threads, and every other split is fixed by the shapes.

Imports no Numba. The blocks each sum is formed in, and so the bits, come from ``blocking.py``, as the Numba
kernels' do.
"""
import numpy as np

# The compiled variant for this CPU (or DROPCORE_ISA's), set up (BLAS, OpenMP cap); ImportError when none is built.
from .compiled import gemm as _gemm
from .alignment import aligned_empty
from .blocking import BACKWARD_CHUNKS, PANEL_BYTES, SMALL_WORK, SMALL_WORK_FAST, winograd_weights_grad
from .blocking import blocks as _blocks
from .geometry import (conv_path, direct_dw_pays, direct_dx_pays, window_2d, windows_inside, winograd4_dx_pays,
                       winograd_pays)
from .reference.conv import check_pool_taps

_PATHS = ("im2col", "implicit", "direct")  # the order _cy_gemm.conv2d_max_pool_arg numbers them in
_DENSE_SERIAL, _DENSE_TWO_TASKS, _DENSE_BLOCKS = 0, 1, 2
_F32 = np.dtype(np.float32)  # a dtype object: NumPy resolves it faster than the type (a few 100 ns per call)
_NO_BIAS = np.empty(0, dtype=_F32)


def _c32(a):
    return np.asarray(a, dtype=_F32, order="C")


def _rows_blk(ow, w_shape, oh):
    """Output rows per im2col panel (conv.py's ``_plan``): the blocks the weight gradient's products sum over."""
    kh, kw, cin, _ = w_shape
    return max(1, min(oh, PANEL_BYTES // (4 * ow * kh * kw * cin)))


def _winograd_weights(w, tile=2):
    """The Winograd F(``tile`` x ``tile``, 3x3) transform of the 3x3 kernel ``w``: ``(16, cin, cout)``, or ``(36,
    cin, cout)`` for ``tile=4``; 64-byte aligned (the GEMMs read it as vectors)."""
    u = aligned_empty((16 if tile == 2 else 36,) + w.shape[2:])
    (_gemm.winograd_weights if tile == 2 else _gemm.winograd4_weights)(_c32(w), u)
    return u


def conv2d_max_pool(x, w, b, strides, padding, pool, relu=False):
    """``max_pool2d(conv2d(x, w, b, strides, padding, relu), pool, pool, "valid")`` and each window's first
    maximum ``arg`` (uint8, ``NO_TAP`` where the window holds a NaN): ``(y, arg)``. The convolution's output never
    goes to memory: each task pools its band of convolution rows while they are in cache (on Winograd's tiles for
    3x3 stride-1 layers with 2x2 pooling, a tile being a window)."""
    check_pool_taps(pool)
    x, w = _c32(x), _c32(w)
    n, h, wd, _ = x.shape
    kh, kw, _, cout = w.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, (kh, kw), strides, padding)
    ph, pw = pool
    y = np.empty((n, max(oh, 0) // ph, max(ow, 0) // pw, cout), dtype=np.float32)
    arg = np.empty(y.shape, dtype=np.uint8)
    if y.size == 0:
        return y, arg
    bias, has_bias, relu = _NO_BIAS if b is None else _c32(b), b is not None, bool(relu)
    if tuple(pool) == (2, 2) and winograd_pays(w.shape, strides, _gemm.HAVE_WINOGRAD):
        _gemm.conv2d_winograd_arg(x, _winograd_weights(w), bias, has_bias, pt, pl, oh, ow, y, arg, relu)
        return y, arg
    path = conv_path((h, wd), w.shape, strides, padding, _gemm.HAVE_FAST_GEMM)
    padded = not windows_inside((h, wd), w.shape, strides, (pt, pl), (oh, ow))
    _gemm.conv2d_max_pool_arg(x, w, bias, has_bias, strides[0], strides[1], pt, pl, _PATHS.index(path), padded, oh,
                              ow, ph, pw, _rows_blk(ow, w.shape, oh), y, arg, relu)
    return y, arg


def conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None):
    """Gradients of ``conv2d`` w.r.t. ``x``, ``w`` and the bias: ``(dx, dw, db)``, ``dx`` ``None`` without
    ``need_dx`` (nobody needs it: the first layer), ``db`` ``None`` without ``has_bias``. ``relu_output``: the
    forward's output when it fused ReLU; ``dy`` then passes only where it is positive (fused in, no extra pass)."""
    relu = relu_output is not None
    return _backward(x, w, strides, padding, has_bias, need_dx, relu, dy=dy,
                     relu_output=_c32(relu_output) if relu else None)


def conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, has_bias, need_dx=True, relu=False):
    """Gradients of :func:`conv2d_max_pool` w.r.t. ``x``, ``w`` and the bias from the pooled gradient ``dy`` and
    the forward's ``(y, arg)``: each window's gradient to its tap ``arg`` (with ``relu``, where ``y > 0``), then as
    :func:`conv2d_backward`, the convolution's gradient rebuilt tile by tile in cache (never a full-size tensor)."""
    return _backward(x, w, strides, padding, has_bias, need_dx, bool(relu),
                     pooled=(_c32(dy), np.ascontiguousarray(arg, dtype=np.uint8), _c32(y), tuple(pool)))


def _flat(a):
    return None if a is None else a.reshape(-1)


def _backward(x, w, strides, padding, has_bias, need_dx, relu, dy=None, relu_output=None, pooled=None):
    """The backward on the layer's geometry (conv.py's ``_backward``), from the convolution's gradient ``dy`` or
    from ``pooled`` = ``(dy, arg, y, (ph, pw))`` of a ``conv2d_max_pool``."""
    x, w = _c32(x), _c32(w)
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, (kh, kw), strides, padding)
    wino = winograd_pays(w.shape, strides, _gemm.HAVE_WINOGRAD)
    dx = np.empty(x.shape, dtype=np.float32) if need_dx else None
    du = np.empty(16 * cin * cout if wino else kh * kw * cin * cout, dtype=np.float32)
    db = np.empty(cout, dtype=np.float32)
    if n == 0 or oh <= 0 or ow <= 0:  # no window: every gradient is zero
        du[:], db[:] = 0, 0
        if need_dx:
            dx[:] = 0
        return dx, np.zeros(w.shape, np.float32), (db if has_bias else None)
    # The panel gradient dy @ w2d^T reads a C-contiguous (cout, k) copy of w2d^T, tiny next to the products.
    w2dt = np.ascontiguousarray(w.reshape(kh * kw * cin, cout).T)
    # The input gradient of a 3x3 stride-1 convolution is the 3x3 stride-1 convolution of dy with the kernel
    # turned 180 degrees and its channels swapped, padded by 2 - pad: Winograd's tiles, per sample.
    # F(4x4)'s tiles where they pay (geometry.winograd4_dx_pays), else F(2x2)'s.
    dx_f4 = need_dx and winograd4_dx_pays(w.shape, strides, _gemm.HAVE_FAST_GEMM)
    turned = w[::-1, ::-1].transpose(0, 1, 3, 2)
    flipped = _winograd_weights(turned, 4) if dx_f4 else _winograd_weights(turned) if need_dx and wino else None
    # Other stride-1 layers with few channels: the direct kernel's convolution of dy with that kernel.
    flipped_direct = np.ascontiguousarray(turned).reshape(-1) if need_dx and flipped is None \
        and _gemm.HAVE_FAST_GEMM and direct_dx_pays(w.shape, strides, (pt, pl)) else None
    if pooled is None:
        pdy = arg = py = None
        ph = pw = poh = pow_ = 0
        dy = _c32(dy)
    else:
        pdy, arg, py, (ph, pw) = pooled
        poh, pow_ = pdy.shape[1:3]
    direct_dw = _gemm.HAVE_FAST_GEMM and direct_dw_pays(w.shape, strides, (pt, pl))
    padded = not windows_inside((h, wd), w.shape, strides, (pt, pl), (oh, ow))
    _gemm.conv2d_backward(x, w2dt, kh, kw, strides[0], strides[1], pt, pl, oh, ow, _rows_blk(ow, w.shape, oh),
                          max(1, min(n, BACKWARD_CHUNKS)), bool(has_bias), relu, _flat(dy), _flat(relu_output),
                          _flat(pdy), _flat(py), _flat(arg), ph, pw, poh, pow_, _flat(flipped), wino, direct_dw,
                          padded, _flat(dx), du, db, flipped_direct, dx_f4)
    dw = winograd_weights_grad(du.reshape(4, 4, cin, cout)) if wino else du.reshape(w.shape)
    return dx, dw, (db if has_bias else None)


def dense_backward(dy, x, w, has_bias):
    """Dense backward ``(dx, dw, db)``: ``dy @ w.T``, ``x.T @ dy`` and ``dy.sum(0)`` (``None`` without a bias).
    For a fused ReLU the caller masks ``dy`` first (``relu_backward``)."""
    dy, x, w = _c32(dy), _c32(x), _c32(w)
    n, k_in = x.shape
    m = w.shape[1]
    dx = np.empty((n, k_in), dtype=_F32)
    dw = np.empty((k_in, m), dtype=_F32)
    db = np.empty(m, dtype=_F32) if has_bias else None
    if n == 0 or k_in == 0 or m == 0:  # an empty sum: zero gradients (the GEMMs need every size >= 1)
        for a in (dx, dw, db):
            if a is not None:
                a[...] = 0
        return dx, dw, db
    work = n * k_in * m
    if work <= SMALL_WORK:
        mode = _DENSE_SERIAL
    elif _gemm.HAVE_FAST_GEMM and work <= SMALL_WORK_FAST:
        mode = _DENSE_TWO_TASKS
    else:
        mode = _DENSE_BLOCKS
    _gemm.dense_backward(dy, x, w, dx, dw, db, mode, _blocks(k_in))
    return dx, dw, db
