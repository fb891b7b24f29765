"""Activations and dropout (Numba), same contract as :mod:`dropcore.kernels.reference.activation`.

Element-wise kernels see their arrays flattened (a view, no copy) and split them into fixed-size chunks, one
``prange`` iteration each, so they run at memory speed. Dropout never builds a mask array: each element's keep bit
is hashed from its flat index in the noise shape by the inlined :func:`dropcore.kernels.rng.keep`, so the result
depends neither on the thread count nor on the chunking. Per-channel dropout views ``x`` as ``(N, S, C)`` and
hashes the ``C`` bits of sample ``n`` once per chunk of rows. Gaussian noise hashes two values per element the same
way (Box-Muller in float64, as the reference).
"""
import numpy as np
from numba import prange

from . import rng
from .config import njit, pjit
from .reference.activation import dropout_scale

#: Elements per parallel task: large enough to amortize scheduling, small enough to balance the threads.
CHUNK = 1 << 15

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_TWO_PI = 2.0 * np.pi
_INV_2_32 = 2.0**-32


def _stream(rate, key):
    """The RNG arguments as the kernels take them: ``(k0, k1, threshold)`` as uint64, and the float32 scale."""
    return np.uint64(key[0]), np.uint64(key[1]), np.uint64(rng.keep_threshold(rate)), dropout_scale(rate)


@njit
def _relu_span(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = _ZERO if v <= _ZERO else v  # written so that a NaN passes through


@njit
def _relu_backward_span(dy, y, dx):
    for i in range(dy.size):
        dx[i] = dy[i] if y[i] > _ZERO else _ZERO


@njit
def _dropout_span(x, y, lo, k0, k1, thr, scale, relu):
    """Dropout of the chunk ``x`` whose first element has flat index ``lo`` in the noise shape."""
    if relu:
        for i in range(x.size):
            v = x[i]
            y[i] = v * scale if rng.keep(lo + i, k0, k1, thr) and not v <= _ZERO else _ZERO
    else:
        for i in range(x.size):
            y[i] = x[i] * scale if rng.keep(lo + i, k0, k1, thr) else _ZERO


@njit
def _mask_span(m, lo, k0, k1, thr, scale):
    for i in range(m.size):
        m[i] = scale if rng.keep(lo + i, k0, k1, thr) else _ZERO


@njit
def _gaussian_span(z, lo, k0, k1):
    """Standard normal noise of the chunk ``z`` whose first element has flat index ``lo`` (see the reference)."""
    for i in range(z.size):
        j = np.uint64(2) * np.uint64(lo + i)
        u1 = (np.float64(rng.random_bits(j, k0, k1)) + 1.0) * _INV_2_32
        u2 = np.float64(rng.random_bits(j + np.uint64(1), k0, k1)) * _INV_2_32
        z[i] = np.float32(np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2))


@njit
def _relu_dropout_backward_span(dy, y, dx, scale):
    for i in range(dy.size):
        dx[i] = dy[i] * scale if y[i] > _ZERO else _ZERO


@njit
def _sigmoid_span(x, y):
    for i in range(x.size):
        v = x[i]
        e = np.exp(-abs(v))
        r = _ONE / (_ONE + e)
        y[i] = r if v >= _ZERO else e * r


@njit
def _sigmoid_backward_span(dy, y, dx):
    for i in range(dy.size):
        dx[i] = dy[i] * y[i] * (_ONE - y[i])


@njit
def _dropout_channels(x, y, n, s0, s1, keep, k0, k1, thr, scale, relu, offset):
    """Rows ``s0..s1`` of sample ``n`` of per-channel dropout; ``keep`` is this task's length-C buffer."""
    c = x.shape[2]
    for k in range(c):
        keep[k] = rng.keep(offset + n * c + k, k0, k1, thr)
    for s in range(s0, s1):
        xv, yv = x[n, s], y[n, s]
        if relu:
            for k in range(c):
                v = xv[k]
                yv[k] = v * scale if keep[k] and not v <= _ZERO else _ZERO
        else:
            for k in range(c):
                yv[k] = xv[k] * scale if keep[k] else _ZERO


# Thin prange drivers: task t covers elements [lo, hi) = [t * CHUNK, (t + 1) * CHUNK). The spans get slices and
# loop from 0: indexing the whole array from a variable start costs a negative-index check per element that stops
# LLVM from vectorizing (measured 10x slower).
@pjit
def _relu_par(x, y):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _relu_span(x[lo:hi], y[lo:hi])


@pjit
def _relu_backward_par(dy, y, dx):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _relu_backward_span(dy[lo:hi], y[lo:hi], dx[lo:hi])


@pjit
def _dropout_par(x, y, k0, k1, thr, scale, relu, offset):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _dropout_span(x[lo:hi], y[lo:hi], offset + lo, k0, k1, thr, scale, relu)


@pjit
def _mask_par(m, k0, k1, thr, scale, offset):
    n = m.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _mask_span(m[lo:hi], offset + lo, k0, k1, thr, scale)


@pjit
def _gaussian_par(z, k0, k1, offset):
    n = z.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _gaussian_span(z[lo:hi], offset + lo, k0, k1)


@pjit
def _relu_dropout_backward_par(dy, y, dx, scale):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _relu_dropout_backward_span(dy[lo:hi], y[lo:hi], dx[lo:hi], scale)


@pjit
def _sigmoid_par(x, y):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _sigmoid_span(x[lo:hi], y[lo:hi])


@pjit
def _sigmoid_backward_par(dy, y, dx):
    n = dy.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _sigmoid_backward_span(dy[lo:hi], y[lo:hi], dx[lo:hi])


@pjit
def _dropout_channels_par(x, y, k0, k1, thr, scale, relu, offset):
    n, rows, c = x.shape
    per_task = max(1, CHUNK // max(c, 1))
    tasks = (rows + per_task - 1) // per_task
    for t in prange(n * tasks):
        i, s0 = t // tasks, (t % tasks) * per_task
        keep = np.empty(c, dtype=np.bool_)
        _dropout_channels(x, y, i, s0, min(rows, s0 + per_task), keep, k0, k1, thr, scale, relu, offset)


@njit
def _softmax_row(x, y, r):
    xv, yv = x[r], y[r]
    m = xv[0]
    for k in range(1, xv.size):
        m = max(m, xv[k])
    total = _ZERO
    for k in range(xv.size):
        e = np.exp(xv[k] - m)
        yv[k] = e
        total += e
    inv = _ONE / total
    for k in range(xv.size):
        yv[k] *= inv


@njit
def _softmax_backward_row(dy, y, dx, r):
    dv, yv, out = dy[r], y[r], dx[r]
    dot = _ZERO
    for k in range(yv.size):
        dot += dv[k] * yv[k]
    for k in range(yv.size):
        out[k] = yv[k] * (dv[k] - dot)


@pjit
def _softmax_par(x, y):
    for r in prange(x.shape[0]):
        _softmax_row(x, y, r)


@pjit
def _softmax_backward_par(dy, y, dx):
    for r in prange(dy.shape[0]):
        _softmax_backward_row(dy, y, dx, r)


def _flat(a):
    return a.reshape(-1)


def relu(x):
    """``max(x, 0)`` of float32 ``x`` (NaN propagates)."""
    y = np.empty_like(x)
    _relu_par(_flat(x), _flat(y))
    return y


def relu_backward(dy, y):
    """Pass ``dy`` where the ReLU output ``y`` is positive."""
    dx = np.empty_like(dy)
    _relu_backward_par(_flat(dy), _flat(y), _flat(dx))
    return dx


def _dropout(x, rate, key, per_channel, relu, offset):
    k0, k1, thr, scale = _stream(rate, key)
    y = np.empty_like(x)
    if per_channel and x.ndim >= 2:
        rows = (x.shape[0], -1, x.shape[-1])
        _dropout_channels_par(x.reshape(rows), y.reshape(rows), k0, k1, thr, scale, relu, np.int64(offset))
    else:
        _dropout_par(_flat(x), _flat(y), k0, k1, thr, scale, relu, np.int64(offset))
    return y


def dropout(x, rate, key, per_channel=False, offset=0):
    """Inverted dropout of float32 ``x``; ``per_channel`` drops whole channels per sample (noise ``(N,1,..,1,C)``);
    ``offset``: the stream index of the first mask element.

    ``rate == 0`` returns an exact copy of ``x``.
    """
    if rate == 0:
        return x.copy()
    return _dropout(x, rate, key, per_channel, False, offset)


def dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of :func:`dropout`: the same mask (recomputed from ``key``) and scale applied to ``dy``."""
    return dropout(dy, rate, key, per_channel, offset)


def dropout_mask(noise_shape, rate, key, offset=0):
    """float32 array of ``noise_shape`` holding 0 (dropped) or ``1 / (1 - rate)`` (kept), for Keras ``noise_shape``."""
    k0, k1, thr, scale = _stream(rate, key)
    m = np.empty(tuple(noise_shape), dtype=np.float32)
    _mask_par(_flat(m), k0, k1, thr, scale, np.int64(offset))
    return m


def gaussian_noise(shape, key, offset=0):
    """float32 standard normal noise of ``shape`` from the stream ``key`` (the reference's Box-Muller construction,
    equal to it up to float32 rounding); ``offset``: the stream index of the first element."""
    z = np.empty(tuple(shape), dtype=np.float32)
    _gaussian_par(_flat(z), np.uint64(key[0]), np.uint64(key[1]), np.int64(offset))
    return z


def relu_dropout(x, rate, key, per_channel=False, offset=0):
    """``dropout(relu(x))`` in one pass over ``x`` (bit-identical to the two separate ops)."""
    return _dropout(x, rate, key, per_channel, True, offset)


def relu_dropout_backward(dy, y, rate):
    """Gradient of :func:`relu_dropout` from its output: ``dy * scale`` exactly where ``y > 0``."""
    dx = np.empty_like(dy)
    _relu_dropout_backward_par(_flat(dy), _flat(y), _flat(dx), dropout_scale(rate))
    return dx


def softmax(x):
    """Softmax of float32 ``x`` over the last axis (max-subtracted)."""
    y = np.empty_like(x)
    _softmax_par(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]))
    return y


def softmax_backward(dy, y):
    """Gradient of :func:`softmax` from its output: ``y * (dy - sum(dy * y))`` per row."""
    dx = np.empty_like(dy)
    _softmax_backward_par(dy.reshape(-1, dy.shape[-1]), y.reshape(-1, y.shape[-1]), dx.reshape(-1, dy.shape[-1]))
    return dx


def sigmoid(x):
    """Logistic function of float32 ``x`` (through ``exp(-|x|)``: never overflows)."""
    y = np.empty_like(x)
    _sigmoid_par(_flat(x), _flat(y))
    return y


def sigmoid_backward(dy, y):
    """Gradient of :func:`sigmoid` from its output: ``dy * y * (1 - y)``."""
    dx = np.empty_like(dy)
    _sigmoid_backward_par(_flat(dy), _flat(y), _flat(dx))
    return dx
