"""2-D convolution (NumPy reference): im2col + one matrix product, and its backward via col2im.

Layouts: ``x`` is ``(N, H, W, Cin)``, ``w`` is ``(kh, kw, Cin, Cout)``, ``y`` is ``(N, OH, OW, Cout)``. A column
(one row of the im2col matrix) is ordered ``(i, j, c)`` so that it matches ``w.reshape(kh * kw * Cin, Cout)``.
Padding follows TensorFlow's rule (:func:`dropcore.kernels.geometry.window_2d`).
"""
import numpy as np

from ..geometry import window_2d
from .pool import max_pool2d


def _window(x_shape, w_shape, strides, padding):
    """``(oh, ow, (pt, pb), (pl, pr))`` for an input of shape ``x_shape`` and a kernel of shape ``w_shape``."""
    return window_2d(x_shape[1], x_shape[2], w_shape[:2], strides, padding)


def im2col(x, ksize, strides, padding):
    """Unfold ``x`` into the ``(N * OH * OW, kh * kw * Cin)`` matrix of its receptive fields (zeros for padding)."""
    n, h, w, c = x.shape
    kh, kw = ksize
    sh, sw = strides
    oh, ow, pads_h, pads_w = window_2d(h, w, ksize, strides, padding)
    xp = np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)))
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    # One strided view per kernel tap: tap (i, j) of output (oy, ox) reads xp[oy * sh + i, ox * sw + j].
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
    return cols.reshape(n * oh * ow, kh * kw * c)


def col2im(cols, x_shape, ksize, strides, padding):
    """Adjoint of :func:`im2col`: scatter-add ``cols`` back into an array of shape ``x_shape`` (padding dropped)."""
    n, h, w, c = x_shape
    kh, kw = ksize
    sh, sw = strides
    oh, ow, (pt, pb), (pl, pr) = window_2d(h, w, ksize, strides, padding)
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=cols.dtype)
    # Overlapping windows (stride < kernel) hit the same input pixel from several taps: the sums add up here.
    for i in range(kh):
        for j in range(kw):
            xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += cols[:, :, :, i, j, :]
    return np.ascontiguousarray(xp[:, pt:pt + h, pl:pl + w, :])


def conv2d(x, w, b, strides, padding, relu=False):
    """Convolve channels-last ``x`` with ``w`` (``(kh, kw, Cin, Cout)``), add ``b`` (or nothing when ``None``),
    optionally apply ReLU. Returns ``(N, OH, OW, Cout)``."""
    kh, kw, cin, cout = w.shape
    n = x.shape[0]
    oh, ow, _, _ = _window(x.shape, w.shape, strides, padding)
    y = im2col(x, (kh, kw), strides, padding) @ w.reshape(kh * kw * cin, cout)
    if b is not None:
        y += b
    if relu:
        np.maximum(y, 0, out=y)
    return y.reshape(n, oh, ow, cout)


def conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None):
    """Gradients of :func:`conv2d` w.r.t. ``x``, ``w`` and the bias (``None`` if no bias).
    ``need_dx=False`` skips the input gradient (returned as ``None``). ``relu_output``: the forward's output when
    it fused ReLU; ``dy`` then passes only where that output is positive."""
    if relu_output is not None:
        dy = np.where(relu_output > 0, dy, 0).astype(dy.dtype)
    kh, kw, cin, cout = w.shape
    w2d = w.reshape(kh * kw * cin, cout)
    dy2d = dy.reshape(-1, cout)
    cols = im2col(x, (kh, kw), strides, padding)
    dw = (cols.T @ dy2d).reshape(w.shape)
    db = dy2d.sum(axis=0) if has_bias else None
    dx = col2im(dy2d @ w2d.T, x.shape, (kh, kw), strides, padding) if need_dx else None
    return dx, dw, db


#: ``arg`` of a window whose maximum no tap equals (a NaN): it gives no gradient, as in ``max_pool2d_backward``.
NO_TAP = 255
#: The most taps a window of ``conv2d_max_pool`` may have (``arg`` is a uint8 and ``NO_TAP`` is taken).
MAX_TAPS = NO_TAP


def check_pool_taps(pool):
    """Raise a ValueError for a pooling window of more than ``MAX_TAPS`` taps (``conv2d_max_pool`` cannot say
    which of them holds the maximum)."""
    if pool[0] * pool[1] > MAX_TAPS:
        raise ValueError(f"conv2d_max_pool: a {pool[0]}x{pool[1]} window has {pool[0] * pool[1]} taps; expected at "
                         f"most {MAX_TAPS} (run the convolution and max_pool2d apart)")


def conv2d_max_pool(x, w, b, strides, padding, pool, relu=False):
    """``max_pool2d(conv2d(x, w, b, strides, padding, relu), pool, pool, "valid")`` (windows of ``pool`` at strides
    of ``pool``: the poolings a convolution can run in its own pass) and where each window's maximum is: ``(y,
    arg)``, ``arg`` (uint8, shaped like ``y``) the row-major index in its window of the first tap equal to the
    maximum, ``NO_TAP`` where none is (a NaN)."""
    check_pool_taps(pool)
    z = conv2d(x, w, b, strides, padding, relu)
    y = max_pool2d(z, pool, pool, "valid")
    ph, pw = pool
    poh, pow_ = y.shape[1:3]
    # The first tap equal to the maximum has the largest NO_TAP - tap among those equal (0: none is): uint8
    # products and maxima over contiguous arrays (a masked copy per tap was 8x slower).
    best, hit = np.zeros(y.shape, dtype=np.uint8), np.empty(y.shape, dtype=bool)
    for tap in range(ph * pw):
        i, j = divmod(tap, pw)
        np.equal(z[:, i:poh * ph:ph, j:pow_ * pw:pw, :], y, out=hit)
        np.maximum(best, hit.view(np.uint8) * np.uint8(NO_TAP - tap), out=best)
    return y, np.uint8(NO_TAP) - best


def conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, has_bias, need_dx=True, relu=False):
    """Gradients of :func:`conv2d_max_pool` w.r.t. ``x``, ``w`` and the bias, from the pooled gradient ``dy`` and
    the forward's ``(y, arg)``: each window's gradient goes to its tap ``arg`` (with ``relu``, only where the
    window's maximum ``y`` is positive: the ReLU passed it), as ``max_pool2d_backward`` then ``conv2d_backward``."""
    kh, kw, _, cout = w.shape
    oh, ow, _, _ = _window(x.shape, w.shape, strides, padding)
    ph, pw = pool
    poh, pow_ = y.shape[1:3]
    dz = np.zeros((x.shape[0], oh, ow, cout), dtype=dy.dtype)
    passed = y > 0 if relu else np.ones(y.shape, dtype=bool)
    for i in range(ph):
        for j in range(pw):
            dz[:, i:poh * ph:ph, j:pow_ * pw:pw, :] = np.where((arg == i * pw + j) & passed, dy, 0)
    return conv2d_backward(dz, x, w, strides, padding, has_bias, need_dx)
