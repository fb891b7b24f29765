"""Depthwise 2-D convolution (Numba): direct loops over the taps, the channel axis innermost (contiguous in
channels-last arrays, so LLVM vectorizes it), one parallel task per output row (forward), per input row (the input
gradient, a gather: each task writes its own row) or per fixed chunk of output rows (the weight gradient, each chunk
into its own partial, summed in order afterwards: no split follows the thread count).

Same contract as :mod:`dropcore.kernels.reference.depthwise`: ``w`` is ``(kh, kw, C, M)`` and output channel
``c * M + m`` reads input channel ``c``. Float32 in and out.
"""
import numpy as np
from numba import prange

from .blocking import BACKWARD_CHUNKS
from .config import njit, pjit
from .geometry import window_2d
from .reference.depthwise import dilated_size

_F32 = np.float32


def _c32(a):
    return np.ascontiguousarray(a, dtype=_F32)


@njit
def _span(at, k, d, size):
    """The taps ``a .. b - 1`` of a window starting at ``at`` (taps ``d`` apart) inside ``0 .. size - 1``."""
    a, b = 0, k
    while a < k and at + a * d < 0:
        a += 1
    while b > a and at + (b - 1) * d >= size:
        b -= 1
    return a, b


@njit
def _tap(acc, xv, wv, mult):
    """``acc[c * mult + m] += xv[c] * wv[c, m]``."""
    if mult == 1:
        w1 = wv[:, 0]
        for k in range(xv.shape[0]):
            acc[k] += xv[k] * w1[k]
    else:
        for k in range(xv.shape[0]):
            for m in range(mult):
                acc[k * mult + m] += xv[k] * wv[k, m]


@pjit
def _forward(x, w, b, has_bias, relu, sh, sw, dh, dw, pt, pl, y):
    n, h, wd, _ = x.shape
    kh, kw, _, mult = w.shape
    oh, ow = y.shape[1], y.shape[2]
    zero = np.float32(0.0)
    for t in prange(n * oh):
        ni, oy = t // oh, t % oh
        iy0 = oy * sh - pt
        i0, i1 = _span(iy0, kh, dh, h)
        for ox in range(ow):
            acc = y[ni, oy, ox]
            acc[:] = zero
            ix0 = ox * sw - pl
            j0, j1 = _span(ix0, kw, dw, wd)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    _tap(acc, x[ni, iy0 + i * dh, ix0 + j * dw], w[i, j], mult)
            if has_bias:
                for k in range(acc.shape[0]):
                    acc[k] += b[k]
            if relu:
                for k in range(acc.shape[0]):
                    if acc[k] < zero:
                        acc[k] = zero


@njit
def _grad_row(dy, ro, has_ro, ni, oy, g):
    """Row ``(ni, oy)`` of ``dy`` into ``g`` (ow, C * M), masked by ``ro > 0`` when ``has_ro``."""
    zero = np.float32(0.0)
    src = dy[ni, oy]
    if has_ro:
        mask = ro[ni, oy]
        for ox in range(src.shape[0]):
            for k in range(src.shape[1]):
                g[ox, k] = src[ox, k] if mask[ox, k] > zero else zero
    else:
        g[:, :] = src


@pjit
def _backward_dx(dy, ro, has_ro, w, sh, sw, dh, dw, pt, pl, dx):
    n, h, wd, c = dx.shape
    kh, kw, _, mult = w.shape
    oh, ow = dy.shape[1], dy.shape[2]
    zero = np.float32(0.0)
    for t in prange(n * h):
        ni, iy = t // h, t % h
        for ix in range(wd):
            d = dx[ni, iy, ix]
            d[:] = zero
            for i in range(kh):
                ny = iy + pt - i * dh
                if ny < 0 or ny % sh != 0 or ny // sh >= oh:
                    continue
                for j in range(kw):
                    nx = ix + pl - j * dw
                    if nx < 0 or nx % sw != 0 or nx // sw >= ow:
                        continue
                    g = dy[ni, ny // sh, nx // sw]
                    wv = w[i, j]
                    if has_ro:
                        r = ro[ni, ny // sh, nx // sw]
                        for k in range(c):
                            for m in range(mult):
                                if r[k * mult + m] > zero:
                                    d[k] += g[k * mult + m] * wv[k, m]
                    elif mult == 1:
                        w1 = wv[:, 0]
                        for k in range(c):
                            d[k] += g[k] * w1[k]
                    else:
                        for k in range(c):
                            for m in range(mult):
                                d[k] += g[k * mult + m] * wv[k, m]


@pjit
def _backward_dw(dy, ro, has_ro, x, kh, kw, sh, sw, dh, dw, pt, pl, dwp, dbp, has_bias):
    n, h, wd, c = x.shape
    oh, ow, cm = dy.shape[1], dy.shape[2], dy.shape[3]
    mult = cm // c
    chunks = dwp.shape[0]
    rows = n * oh
    for q in prange(chunks):
        pw, pb = dwp[q], dbp[q]
        pw[:] = 0
        pb[:] = 0
        g = np.empty((ow, cm), dtype=np.float32)
        for r in range(q * rows // chunks, (q + 1) * rows // chunks):
            ni, oy = r // oh, r % oh
            _grad_row(dy, ro, has_ro, ni, oy, g)
            if has_bias:
                for ox in range(ow):
                    for k in range(cm):
                        pb[k] += g[ox, k]
            iy0 = oy * sh - pt
            i0, i1 = _span(iy0, kh, dh, h)
            for ox in range(ow):
                ix0 = ox * sw - pl
                j0, j1 = _span(ix0, kw, dw, wd)
                gv = g[ox]
                for i in range(i0, i1):
                    for j in range(j0, j1):
                        xv = x[ni, iy0 + i * dh, ix0 + j * dw]
                        t = pw[i, j]
                        if mult == 1:
                            t1 = t[:, 0]
                            for k in range(c):
                                t1[k] += xv[k] * gv[k]
                        else:
                            for k in range(c):
                                for m in range(mult):
                                    t[k, m] += xv[k] * gv[k * mult + m]


def _geometry(x, w, strides, padding, dilation):
    oh, ow, (pt, _), (pl, _) = window_2d(x.shape[1], x.shape[2], dilated_size(w.shape[:2], dilation), strides,
                                         padding)
    return max(oh, 0), max(ow, 0), pt, pl


def depthwise_conv2d(x, w, b, strides, padding, relu=False, dilation=(1, 1)):
    """Depthwise 2-D convolution (NHWC, ``w`` ``(kh, kw, C, M)``, output channel ``c * M + m``) with the bias
    (``None``: none) and ReLU fused."""
    x, w = _c32(x), _c32(w)
    oh, ow, pt, pl = _geometry(x, w, strides, padding, dilation)
    y = np.empty((x.shape[0], oh, ow, w.shape[2] * w.shape[3]), dtype=_F32)
    if y.size:
        bias = _c32(b) if b is not None else np.empty(0, _F32)
        _forward(x, w, bias, b is not None, bool(relu), strides[0], strides[1], dilation[0], dilation[1], pt, pl, y)
    return y


def depthwise_conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=True, relu_output=None,
                              dilation=(1, 1)):
    """Gradients of :func:`depthwise_conv2d`: ``(dx, dw, db)`` as the reference's; the weight gradient summed in
    ``BACKWARD_CHUNKS`` fixed chunks of output rows (fewer for fewer rows), whatever the threads."""
    dy, x, w = _c32(dy), _c32(x), _c32(w)
    n = x.shape[0]
    kh, kw, c, mult = w.shape
    oh, ow, pt, pl = _geometry(x, w, strides, padding, dilation)
    has_ro = relu_output is not None
    ro = _c32(relu_output) if has_ro else np.empty((1, 1, 1, 1), _F32)
    (sh, sw), (dh, dwd) = strides, dilation
    chunks = max(1, min(n * oh, BACKWARD_CHUNKS))
    dwp = np.empty((chunks, kh, kw, c, mult), dtype=_F32)
    dbp = np.empty((chunks, c * mult), dtype=_F32)
    _backward_dw(dy, ro, has_ro, x, kh, kw, sh, sw, dh, dwd, pt, pl, dwp, dbp, bool(has_bias))
    dx = None
    if need_dx:
        dx = np.empty(x.shape, dtype=_F32)
        if dx.size:
            _backward_dx(dy, ro, has_ro, w, sh, sw, dh, dwd, pt, pl, dx)
    return dx, dwp.sum(axis=0), (dbp.sum(axis=0) if has_bias else None)
