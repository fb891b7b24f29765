"""The depthwise convolution of the kernel contract on the Cython extension (``_cy_depthwise.pyx`` over
``_depthwise.h``): ``depthwise_conv2d`` and its bound kernel for inference programs, and
``depthwise_conv2d_backward`` for training. ``cython_ops`` exposes them in the "cython" set.

The C kernels run a depth multiplier of 1, where each output channel is its input channel's; for ``M > 1`` the input's
channels are repeated ``M`` times first (output channel ``c * M + m`` reads channel ``c``, and ``w`` viewed as
``(kh, kw, C * M)`` is in that order already), and the input gradient of the repeats is summed back. Depthwise layers
of MobileNets have ``M = 1``; the copy costs one pass over the input otherwise.

Imports no Numba. Results do not depend on the thread count (see ``_cy_depthwise.pyx``).
"""
import numpy as np

from .blocking import BACKWARD_CHUNKS
from .compiled import depthwise as _dw
from .geometry import window_2d
from .reference.activation import epilogue as _epilogue
from .reference.depthwise import dilated_size

_F32 = np.dtype(np.float32)
_NO_BIAS = np.empty(0, dtype=_F32)
_NO_RELU = np.empty((1, 1, 1, 1), dtype=_F32)  # a placeholder for ``ro`` when no ReLU was fused


def _c32(a):
    return np.asarray(a, dtype=_F32, order="C")


def _geometry(x_shape, w_shape, strides, padding, dilation):
    """``(oh, ow, pt, pl)`` (``oh``, ``ow`` at least 0)."""
    oh, ow, (pt, _), (pl, _) = window_2d(x_shape[1], x_shape[2], dilated_size(w_shape[:2], dilation), strides,
                                         padding)
    return max(oh, 0), max(ow, 0), pt, pl


def _check(x_shape, w, b):
    """``w`` as float32, after checking that it fits inputs of ``x_shape`` and the bias ``b``: the C kernels trust
    the shapes (a mismatch would read out of bounds)."""
    w = _c32(w)
    if len(x_shape) != 4 or w.ndim != 4 or x_shape[3] != w.shape[2] or (
            b is not None and np.shape(b) != (w.shape[2] * w.shape[3],)):
        raise ValueError(f"depthwise_conv2d: x has shape {tuple(x_shape)}, w {w.shape}, b "
                         f"{None if b is None else np.shape(b)}: expected x (N, H, W, C), w (kh, kw, C, mult), b "
                         f"(C * mult,)")
    return w


def _repeat(x, mult):
    """``x`` with each channel repeated ``mult`` times (channel ``c * mult + m`` is ``c``), for the C kernels."""
    return x if mult == 1 else np.repeat(x, mult, axis=3)


def depthwise_conv2d_kernel(x_shape, w, b, strides, padding, relu=False, dilation=(1, 1), activation=None,
                            alpha=None):
    """``(run, y_shape)``: ``run(x, y)`` fills the preallocated ``y`` with ``depthwise_conv2d(x, w, b, ...)`` for
    inputs of ``x_shape``. ``w`` and ``b`` are read by reference (a program bound to a model that trains follows
    its in-place updates). ``activation`` (as ``cython_ops.conv2d_kernel``'s: ReLU6 after MobileNet's depthwise
    layers) is applied to each output row right after it is written, with the bits of the stand-alone op."""

    w = _check(x_shape, w, b)
    n, _, _, c = x_shape
    kh, kw, _, mult = w.shape
    oh, ow, pt, pl = _geometry(x_shape, w.shape, strides, padding, dilation)
    w3 = w.reshape(kh, kw, c * mult)  # a view: the weights' updates show through
    bias, has_bias = _NO_BIAS if b is None else _c32(b), b is not None
    fused_relu, act, a = _epilogue(activation, alpha)
    relu = bool(relu) or fused_relu
    (sh, sw), (dh, dw) = strides, dilation

    def run(x, y):
        _dw.depthwise_forward(_repeat(x, mult), w3, bias, has_bias, sh, sw, dh, dw, pt, pl, y, relu, act, a)

    return run, (n, oh, ow, c * mult)


def depthwise_conv2d(x, w, b, strides, padding, relu=False, dilation=(1, 1)):
    """Depthwise 2-D convolution (NHWC, ``w`` ``(kh, kw, C, mult)``, output channel ``c * mult + m``), with the
    bias and ReLU fused."""
    x = _c32(x)
    run, shape = depthwise_conv2d_kernel(x.shape, w, b, strides, padding, relu, dilation)
    y = np.empty(shape, dtype=_F32)
    if y.size:
        run(x, y)
    return y


def depthwise_conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None,
                              dilation=(1, 1)):
    """Gradients of :func:`depthwise_conv2d` w.r.t. ``x``, ``w`` and the bias: ``(dx, dw, db)`` (``dx`` ``None``
    without ``need_dx``, ``db`` without ``has_bias``). ``relu_output``: the forward's output when it fused ReLU;
    ``dy`` passes only where it is positive (masked once, in the weight gradient's pass). The weight gradient sums its
    (sample, output row) rows in ``BACKWARD_CHUNKS`` fixed chunks (fewer for fewer rows) whatever the threads."""
    x, w, dy = _c32(x), _c32(w), _c32(dy)
    n, h, wd, c = x.shape
    kh, kw, _, mult = w.shape
    oh, ow, pt, pl = _geometry(x.shape, w.shape, strides, padding, dilation)
    (sh, sw), (dh, dwd) = strides, dilation
    xr = _repeat(x, mult)
    chunks = max(1, min(n * oh, BACKWARD_CHUNKS))
    dwp = np.empty((chunks, kh * kw * c * mult), dtype=_F32)
    dbp = np.empty((chunks, c * mult), dtype=_F32)
    if relu_output is not None and dy.size:
        # Masked once, by the weight gradient as it reads each row (the kernels read each gradient value several
        # times): the masked rows g then feed the input gradient.
        g = np.empty_like(dy)
        _dw.depthwise_backward_dw(xr, dy, _c32(relu_output), True, kh, kw, sh, sw, dh, dwd, pt, pl, dwp, dbp,
                                  bool(has_bias), g)
        dy = g
    else:
        _dw.depthwise_backward_dw(xr, dy, _NO_RELU, False, kh, kw, sh, sw, dh, dwd, pt, pl, dwp, dbp, bool(has_bias))
    dw = dwp.sum(axis=0).reshape(w.shape)  # the chunks in order
    db = dbp.sum(axis=0) if has_bias else None
    dx = None
    if need_dx:
        dxr = np.empty(xr.shape, dtype=_F32)
        if strides == (1, 1):
            # At stride 1 the input gradient is the forward of dy with the kernel turned 180 degrees (padding
            # size - 1 - pad): the forward's register tiles, 5x faster than the gather (56x56x128, one thread).
            eh, ew = dilated_size((kh, kw), dilation)
            flipped = np.ascontiguousarray(w.reshape(kh, kw, c * mult)[::-1, ::-1])
            _dw.depthwise_forward(dy, flipped, _NO_BIAS, False, 1, 1, dh, dwd, eh - 1 - pt, ew - 1 - pl, dxr, False,
                                  0, 0.0)
        else:
            _dw.depthwise_backward_dx(dy, w.reshape(kh, kw, c * mult), sh, sw, dh, dwd, pt, pl, dxr)
        dx = dxr if mult == 1 else dxr.reshape(n, h, wd, c, mult).sum(axis=4)
    return dx, dw, db
