"""Depthwise 2-D convolution (NumPy reference): each input channel convolved with its own filters.

Layouts: ``x`` is ``(N, H, W, C)``, ``w`` is ``(kh, kw, C, M)`` (``M``: the depth multiplier, Keras's layout), ``y``
is ``(N, OH, OW, C * M)`` with output channel ``c * M + m`` (Keras's and ONNX's order). ``dilation`` spreads the
taps ``(dh, dw)`` apart: padding follows TensorFlow's rule on the dilated size ``(k - 1) * d + 1``. One strided view
of the padded input per tap, broadcast against the tap's ``(C, M)`` weights: vectorized over everything but the
taps. Works in the dtype it receives (float64 for finite differences).
"""
import numpy as np

from ..geometry import window_2d


def dilated_size(ksize, dilation):
    """The extent ``(k - 1) * d + 1`` on each axis of a ``ksize`` kernel dilated by ``dilation``."""
    return tuple((k - 1) * d + 1 for k, d in zip(ksize, dilation))


def _taps(x_shape, w_shape, strides, padding, dilation):
    """The geometry: ``(oh, ow, pads, taps)``, ``taps`` the ``(i, j, view index)`` of each kernel tap into the padded
    input (output ``(oy, ox)`` reads ``xp[oy * sh + i * dh, ox * sw + j * dw]``)."""
    (sh, sw), (dh, dw) = strides, dilation
    kh, kw = w_shape[:2]
    oh, ow, pads_h, pads_w = window_2d(x_shape[1], x_shape[2], dilated_size((kh, kw), dilation), strides, padding)
    taps = [(i, j, (slice(None), slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                    slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)))
            for i in range(kh) for j in range(kw)]
    return oh, ow, (pads_h, pads_w), taps


def depthwise_conv2d(x, w, b, strides, padding, relu=False, dilation=(1, 1)):
    """``y[n, oy, ox, c * M + m] = sum_ij x[n, oy * sh + i * dh - pt, ox * sw + j * dw - pl, c] * w[i, j, c, m]``,
    plus ``b`` (``(C * M,)``, or nothing when ``None``), ReLU applied when ``relu``."""
    n, _, _, c = x.shape
    mult = w.shape[3]
    oh, ow, pads, taps = _taps(x.shape, w.shape, strides, padding, dilation)
    dtype = np.result_type(x, w)
    y = np.zeros((n, max(oh, 0), max(ow, 0), c, mult), dtype)
    if y.size:
        xp = np.pad(x, ((0, 0),) + pads + ((0, 0),))
        for i, j, at in taps:
            y += xp[at][..., None] * w[i, j]
    y = y.reshape(n, max(oh, 0), max(ow, 0), c * mult)
    if b is not None:
        y += b
    if relu:
        np.maximum(y, 0, out=y)
    return y


def depthwise_conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None,
                              dilation=(1, 1)):
    """Gradients of :func:`depthwise_conv2d` w.r.t. ``x``, ``w`` and the bias: ``(dx, dw, db)``; ``dx`` is ``None``
    without ``need_dx``, ``db`` without ``has_bias``. ``relu_output``: the forward's output when it fused ReLU;
    ``dy`` then passes only where that output is positive."""
    if relu_output is not None:
        dy = np.where(relu_output > 0, dy, 0).astype(dy.dtype)
    n, h, wd, c = x.shape
    mult = w.shape[3]
    oh, ow, ((pt, pb), (pl, pr)), taps = _taps(x.shape, w.shape, strides, padding, dilation)
    dtype = np.result_type(dy, x, w)
    db = dy.reshape(-1, c * mult).sum(axis=0) if has_bias else None
    dw = np.zeros(w.shape, dtype)
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype) if need_dx else None
    if dy.size:
        dy5 = dy.reshape(n, oh, ow, c, mult)
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        for i, j, at in taps:
            dw[i, j] = np.einsum("nhwc,nhwcm->cm", xp[at], dy5)
            if need_dx:
                dxp[at] += np.einsum("nhwcm,cm->nhwc", dy5, w[i, j])
    dx = np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + wd]) if need_dx else None
    return dx, dw, db
