"""2-D max and average pooling (NumPy reference), channels-last ``(N, H, W, C)``.

Every windowed function loops over the ``ph * pw`` window taps only: tap ``(i, j)`` of output ``(oy, ox)`` reads
the padded input at ``(oy * sh + i, ox * sw + j)``, which for a fixed tap is one strided view of the whole batch.
Padding follows TensorFlow's rule (:func:`dropcore.kernels.geometry.window_2d`); padded positions never win a max
and are not counted by an average.
The global pools (Keras's ``GlobalAveragePooling2D``/``GlobalMaxPooling2D``) are one NumPy reduction over H and W.
"""
import numpy as np

from ..geometry import window_2d


def _tap(a, i, j, oh, ow, strides):
    """Strided view of the padded array ``a`` read by window tap ``(i, j)`` of every output position."""
    sh, sw = strides
    return a[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, ...]


def _counts(size, k, s, pad_before, out):
    """Number of non-padded positions in each of the ``out`` windows along one axis."""
    start = np.arange(out) * s - pad_before
    return np.minimum(start + k, size) - np.maximum(start, 0)


def max_pool2d(x, pool, strides, padding):
    """Max over each ``pool`` window of ``x``; padded positions never win. Returns ``(N, OH, OW, C)``."""
    n, h, w, c = x.shape
    oh, ow, pads_h, pads_w = window_2d(h, w, pool, strides, padding)
    # TensorFlow's "same" padding never makes a window entirely of padding, so -inf cannot reach the output.
    xp = np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=-np.inf)
    y = np.full((n, oh, ow, c), -np.inf, dtype=x.dtype)
    for i in range(pool[0]):
        for j in range(pool[1]):
            np.maximum(y, _tap(xp, i, j, oh, ow, strides), out=y)  # np.maximum propagates NaN
    return y


def max_pool2d_backward(dy, x, y, pool, strides, padding):
    """Gradient of :func:`max_pool2d`: each window's ``dy`` goes to the first tap (row-major) equal to its max."""
    h, w = x.shape[1:3]
    oh, ow, (pt, pb), (pl, pr) = window_2d(h, w, pool, strides, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    # A padded position must not take the gradient even when the input holds the same value as the padding.
    real = np.pad(np.ones((1, h, w, 1), dtype=bool), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    dxp = np.zeros_like(xp, dtype=dy.dtype)
    taken = np.zeros(y.shape, dtype=bool)
    for i in range(pool[0]):
        for j in range(pool[1]):
            hit = (_tap(xp, i, j, oh, ow, strides) == y) & _tap(real, i, j, oh, ow, strides) & ~taken
            taken |= hit
            # For one tap the windows read distinct positions, so this in-place add never collides with itself.
            _tap(dxp, i, j, oh, ow, strides)[...] += np.where(hit, dy, 0)
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :])


def _window_counts(h, w, pool, strides, padding, dtype):
    """``(oh, ow, pads_h, pads_w, count)`` where ``count[oy, ox, 1]`` is the number of real positions per window."""
    oh, ow, pads_h, pads_w = window_2d(h, w, pool, strides, padding)
    ch = _counts(h, pool[0], strides[0], pads_h[0], oh)
    cw = _counts(w, pool[1], strides[1], pads_w[0], ow)
    return oh, ow, pads_h, pads_w, (ch[:, None] * cw[None, :]).astype(dtype)[:, :, None]


def avg_pool2d(x, pool, strides, padding):
    """Mean over each ``pool`` window of ``x``; with ``"same"`` the divisor counts only non-padded positions."""
    n, h, w, c = x.shape
    oh, ow, pads_h, pads_w, count = _window_counts(h, w, pool, strides, padding, x.dtype)
    xp = np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)))
    total = np.zeros((n, oh, ow, c), dtype=x.dtype)
    for i in range(pool[0]):
        for j in range(pool[1]):
            total += _tap(xp, i, j, oh, ow, strides)
    return total / count


def avg_pool2d_backward(dy, x_shape, pool, strides, padding):
    """Gradient of :func:`avg_pool2d`: each window spreads ``dy / count`` over its non-padded positions."""
    n, h, w, c = x_shape
    oh, ow, (pt, pb), (pl, pr), count = _window_counts(h, w, pool, strides, padding, dy.dtype)
    g = dy / count
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
    for i in range(pool[0]):
        for j in range(pool[1]):
            _tap(dxp, i, j, oh, ow, strides)[...] += g
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :])


def global_avg_pool2d(x):
    """Mean of ``x`` (N, H, W, C) over H and W (Keras's ``GlobalAveragePooling2D``). Returns ``(N, C)``."""
    return x.mean(axis=(1, 2))


def global_avg_pool2d_backward(dy, x_shape):
    """Gradient of :func:`global_avg_pool2d`: every position of a channel receives ``dy / (H * W)``."""
    n, h, w, c = x_shape
    g = dy / dy.dtype.type(h * w)
    return np.ascontiguousarray(np.broadcast_to(g[:, None, None, :], (n, h, w, c)))


def global_max_pool2d(x):
    """Max of ``x`` (N, H, W, C) over H and W (Keras's ``GlobalMaxPooling2D``); NaN propagates. Returns ``(N, C)``."""
    return x.max(axis=(1, 2))


def global_max_pool2d_backward(dy, x, y):
    """Gradient of :func:`global_max_pool2d`: each (sample, channel)'s ``dy`` goes to the first position (row-major
    over H, W) equal to its max, the tie rule of :func:`max_pool2d_backward`; a NaN max takes no position."""
    n, h, w, c = x.shape
    hit = x.reshape(n, h * w, c) == y[:, None, :]
    # A position is the first hit when the running count of hits reaches 1 there.
    first = hit & (np.cumsum(hit, axis=1) == 1)
    dx = np.where(first, dy[:, None, :], np.zeros((), dtype=dy.dtype))
    return dx.reshape(n, h, w, c)
