"""2-D max and average pooling (Numba), same contract as :mod:`dropcore.kernels.reference.pool`.

Channels are innermost (contiguous in NHWC), so every inner loop is a vectorizable run over ``C``. Windows are
clipped to the input instead of padding it. Parallel splits are chosen so that no two threads write one element:
the forwards and the average backward (a gather: each input pixel sums the windows that cover it) split over
``N * rows``; the max backward scatters into overlapping windows, so it splits over samples. The global pools
split over ``N * channel blocks`` (see ``_GLOBAL_BLOCK``): each task reduces its channels down all ``H * W`` rows.
"""
import numpy as np
from numba import prange

from .config import njit, pjit
from .geometry import window_2d

_NEG_INF = np.float32(-np.inf)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@njit
def _max_pool_row(x, y, n, oy, ph, pw, sh, sw, pt, pl):
    """Output row ``y[n, oy]`` of the max pool."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    iy0 = oy * sh - pt
    for ox in range(y.shape[2]):
        ix0 = ox * sw - pl
        yv = y[n, oy, ox]
        for k in range(c):
            yv[k] = _NEG_INF
        for iy in range(max(iy0, 0), min(iy0 + ph, h)):
            for ix in range(max(ix0, 0), min(ix0 + pw, w)):
                xv = x[n, iy, ix]
                for k in range(c):
                    v = xv[k]
                    # `v != v` lets a NaN in the window reach the output (the engine checks for NaN).
                    yv[k] = v if (v > yv[k]) | (v != v) else yv[k]


@pjit
def _max_pool_fwd(x, y, ph, pw, sh, sw, pt, pl):
    rows = y.shape[1]
    for t in prange(y.shape[0] * rows):
        _max_pool_row(x, y, t // rows, t % rows, ph, pw, sh, sw, pt, pl)


@njit
def _max_pool_back_sample(dy, x, y, dx, n, g, ph, pw, sh, sw, pt, pl):
    """``dx[n]`` of the max pool; ``g`` (length C) holds the window gradient not yet given to a tap."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    dxn = dx[n]
    for iy in range(h):
        for ix in range(w):
            for k in range(c):
                dxn[iy, ix, k] = _ZERO
    for oy in range(y.shape[1]):
        iy0 = oy * sh - pt
        for ox in range(y.shape[2]):
            ix0 = ox * sw - pl
            yv = y[n, oy, ox]
            for k in range(c):
                g[k] = dy[n, oy, ox, k]
            for iy in range(max(iy0, 0), min(iy0 + ph, h)):
                for ix in range(max(ix0, 0), min(ix0 + pw, w)):
                    xv = x[n, iy, ix]
                    dv = dxn[iy, ix]
                    for k in range(c):
                        # The first tap equal to the max takes the gradient; zeroing g makes later ties add 0.
                        hit = xv[k] == yv[k]
                        dv[k] += g[k] if hit else _ZERO
                        g[k] = _ZERO if hit else g[k]


@pjit
def _max_pool_bwd(dy, x, y, dx, ph, pw, sh, sw, pt, pl):
    for n in prange(x.shape[0]):
        g = np.empty(x.shape[3], dtype=np.float32)
        _max_pool_back_sample(dy, x, y, dx, n, g, ph, pw, sh, sw, pt, pl)


@njit
def _avg_pool_row(x, y, n, oy, ph, pw, sh, sw, pt, pl):
    """Output row ``y[n, oy]`` of the average pool (divisor: the window's non-padded positions)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    iy0 = oy * sh - pt
    y0, y1 = max(iy0, 0), min(iy0 + ph, h)
    for ox in range(y.shape[2]):
        ix0 = ox * sw - pl
        x0, x1 = max(ix0, 0), min(ix0 + pw, w)
        yv = y[n, oy, ox]
        for k in range(c):
            yv[k] = _ZERO
        for iy in range(y0, y1):
            for ix in range(x0, x1):
                xv = x[n, iy, ix]
                for k in range(c):
                    yv[k] += xv[k]
        inv = _ONE / np.float32((y1 - y0) * (x1 - x0))
        for k in range(c):
            yv[k] *= inv


@pjit
def _avg_pool_fwd(x, y, ph, pw, sh, sw, pt, pl):
    rows = y.shape[1]
    for t in prange(y.shape[0] * rows):
        _avg_pool_row(x, y, t // rows, t % rows, ph, pw, sh, sw, pt, pl)


@njit
def _covering(i, k, s, pad, out):
    """``(first, stop)`` range of the windows along one axis that cover input position ``i``."""
    # first = ceil((i + pad - k + 1) / s), written as a floor division that is right for negative numerators too.
    return max(-((k - 1 - i - pad) // s), 0), min((i + pad) // s + 1, out)


@njit
def _avg_back_row(dy, dx, n, iy, ph, pw, sh, sw, pt, pl):
    """Input row ``dx[n, iy]``: the sum of ``dy / count`` over every window covering each pixel."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    oh, ow = dy.shape[1], dy.shape[2]
    oy0, oy1 = _covering(iy, ph, sh, pt, oh)
    for ix in range(w):
        dv = dx[n, iy, ix]
        for k in range(c):
            dv[k] = _ZERO
        ox0, ox1 = _covering(ix, pw, sw, pl, ow)
        for oy in range(oy0, oy1):
            wy = oy * sh - pt
            cy = min(wy + ph, h) - max(wy, 0)
            for ox in range(ox0, ox1):
                wx = ox * sw - pl
                inv = _ONE / np.float32(cy * (min(wx + pw, w) - max(wx, 0)))
                gv = dy[n, oy, ox]
                for k in range(c):
                    dv[k] += gv[k] * inv


@pjit
def _avg_pool_bwd(dy, dx, ph, pw, sh, sw, pt, pl):
    rows = dx.shape[1]
    for t in prange(dx.shape[0] * rows):
        _avg_back_row(dy, dx, t // rows, t % rows, ph, pw, sh, sw, pt, pl)


def max_pool2d(x, pool, strides, padding):
    """Max over each ``pool`` window of float32 ``x`` (N, H, W, C); padded positions never win."""
    n, h, w, c = x.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    y = np.empty((n, oh, ow, c), dtype=np.float32)
    _max_pool_fwd(x, y, pool[0], pool[1], strides[0], strides[1], pt, pl)
    return y


def max_pool2d_backward(dy, x, y, pool, strides, padding):
    """Gradient of :func:`max_pool2d`: each window's ``dy`` goes to its first (row-major) tap equal to the max."""
    h, w = x.shape[1:3]
    _, _, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    dx = np.empty_like(x)  # zeroed per sample by the thread that owns it (first touch, then stays in cache)
    _max_pool_bwd(dy, x, y, dx, pool[0], pool[1], strides[0], strides[1], pt, pl)
    return dx


def avg_pool2d(x, pool, strides, padding):
    """Mean over each ``pool`` window of float32 ``x``; ``"same"`` divides by the non-padded count (TensorFlow)."""
    n, h, w, c = x.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    y = np.empty((n, oh, ow, c), dtype=np.float32)
    _avg_pool_fwd(x, y, pool[0], pool[1], strides[0], strides[1], pt, pl)
    return y


def avg_pool2d_backward(dy, x_shape, pool, strides, padding):
    """Gradient of :func:`avg_pool2d` for an input of shape ``x_shape``."""
    n, h, w, c = x_shape
    _, _, (pt, _), (pl, _) = window_2d(h, w, pool, strides, padding)
    dx = np.empty((n, h, w, c), dtype=np.float32)
    _avg_pool_bwd(dy, dx, pool[0], pool[1], strides[0], strides[1], pt, pl)
    return dx


# Channels per task of the global pools. Whole samples alone would leave a batch of one on one thread; blocks of
# 256 channels (1 KiB of each row) still read long contiguous runs, and for C <= 256 a task is simply a sample.
_GLOBAL_BLOCK = 256


@njit
def _global_block(x, y, n, k0, k1, average):
    """``y[n, k0:k1]``: the mean (``average``) or the max (NaN propagates) of ``x[n, :, k0:k1]`` over the
    ``H * W`` rows of ``x`` (N, H * W, C)."""
    # Slices indexed from 0: with indices from k0 Numba cannot prove them non-negative, and its wraparound
    # check kept the loops scalar (4x slower).
    yv = y[n, k0:k1]
    m = k1 - k0
    start = _ZERO if average else _NEG_INF
    for k in range(m):
        yv[k] = start
    for p in range(x.shape[1]):
        xv = x[n, p, k0:k1]
        if average:  # one float32 accumulator per channel, rows added in order: the reference's order
            for k in range(m):
                yv[k] += xv[k]
        else:
            for k in range(m):
                v = xv[k]
                # `v != v` lets a NaN reach the output (the engine checks for NaN).
                yv[k] = v if (v > yv[k]) | (v != v) else yv[k]
    if average:
        count = np.float32(x.shape[1])
        for k in range(m):
            yv[k] /= count


@pjit
def _global_pool_fwd(x, y, average):
    c = x.shape[2]
    blocks = (c + _GLOBAL_BLOCK - 1) // _GLOBAL_BLOCK
    for t in prange(x.shape[0] * blocks):
        k0 = t % blocks * _GLOBAL_BLOCK
        _global_block(x, y, t // blocks, k0, min(k0 + _GLOBAL_BLOCK, c), average)


@njit
def _global_avg_back_block(dy, dx, n, k0, k1):
    """``dx[n, :, k0:k1] = dy[n, k0:k1] / (H * W)`` for ``dx`` (N, H * W, C)."""
    count = np.float32(dx.shape[1])
    gv = dy[n, k0:k1]
    m = k1 - k0
    for p in range(dx.shape[1]):
        dv = dx[n, p, k0:k1]
        for k in range(m):
            dv[k] = gv[k] / count


@pjit
def _global_avg_bwd(dy, dx):
    c = dx.shape[2]
    blocks = (c + _GLOBAL_BLOCK - 1) // _GLOBAL_BLOCK
    for t in prange(dx.shape[0] * blocks):
        k0 = t % blocks * _GLOBAL_BLOCK
        _global_avg_back_block(dy, dx, t // blocks, k0, min(k0 + _GLOBAL_BLOCK, c))


@njit
def _global_max_back_block(dy, x, y, dx, g, n, k0, k1):
    """``dx[n, :, k0:k1]``: each channel's ``dy`` at its first row equal to the max, 0 elsewhere; ``g[k]`` holds
    channel ``k0 + k``'s gradient not yet given to a row."""
    yv = y[n, k0:k1]
    gv = dy[n, k0:k1]
    m = k1 - k0
    for k in range(m):
        g[k] = gv[k]
    for p in range(x.shape[1]):
        xv = x[n, p, k0:k1]
        dv = dx[n, p, k0:k1]
        for k in range(m):
            # Every element is written once (no zeroing pass): the first hit takes g, and zeroing g makes later
            # ties (and every other row) write 0.
            hit = xv[k] == yv[k]
            dv[k] = g[k] if hit else _ZERO
            g[k] = _ZERO if hit else g[k]


@pjit
def _global_max_bwd(dy, x, y, dx):
    c = x.shape[2]
    blocks = (c + _GLOBAL_BLOCK - 1) // _GLOBAL_BLOCK
    for t in prange(x.shape[0] * blocks):
        k0 = t % blocks * _GLOBAL_BLOCK
        g = np.empty(_GLOBAL_BLOCK, dtype=np.float32)
        _global_max_back_block(dy, x, y, dx, g, t // blocks, k0, min(k0 + _GLOBAL_BLOCK, c))


def _rows(a):
    """``a`` (N, H, W, C) as ``(N, H * W, C)``: a view of a C-contiguous array."""
    n, h, w, c = a.shape
    return a.reshape(n, h * w, c)


def global_avg_pool2d(x):
    """Mean of float32 ``x`` (N, H, W, C) over H and W (``GlobalAveragePooling2D``); returns ``(N, C)``."""
    y = np.empty((x.shape[0], x.shape[3]), dtype=np.float32)
    _global_pool_fwd(_rows(x), y, True)
    return y


def global_avg_pool2d_backward(dy, x_shape):
    """Gradient of :func:`global_avg_pool2d` for an input of shape ``x_shape``: ``dy / (H * W)`` everywhere."""
    dx = np.empty(tuple(x_shape), dtype=np.float32)
    _global_avg_bwd(dy, _rows(dx))
    return dx


def global_max_pool2d(x):
    """Max of float32 ``x`` (N, H, W, C) over H and W (``GlobalMaxPooling2D``; NaN propagates); returns ``(N, C)``."""
    y = np.empty((x.shape[0], x.shape[3]), dtype=np.float32)
    _global_pool_fwd(_rows(x), y, False)
    return y


def global_max_pool2d_backward(dy, x, y):
    """Gradient of :func:`global_max_pool2d`: each channel's ``dy`` goes to its first (row-major) position equal to
    the max."""
    dx = np.empty_like(x)  # every element written once by the thread that owns its channels
    _global_max_bwd(dy, _rows(x), y, _rows(dx))
    return dx
