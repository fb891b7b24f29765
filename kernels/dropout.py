"""Dropout and noise (Numba): the dropout family, same contract as :mod:`dropcore.kernels.reference.dropout`.

Dropout never builds a mask array: each element's keep bit is hashed from its flat index in the noise shape by the
inlined :func:`dropcore.kernels.rng.keep`, so the result depends neither on the thread count nor on the chunking
(``activation.CHUNK`` elements a task). Per-channel dropout views ``x`` as ``(N, S, C)`` and hashes the ``C`` bits
of sample ``n`` once per chunk of rows. Gaussian noise hashes two values per element the same way (Box-Muller in
float64, as the reference).
"""
import numpy as np
from numba import prange

from . import rng
from .activation import CHUNK, _flat
from .config import njit, pjit
from .reference.dropout import dropout_scale

_ZERO = np.float32(0.0)
_TWO_PI = 2.0 * np.pi
_INV_2_32 = 2.0**-32


def _stream(rate, key):
    """The RNG arguments as the kernels take them: ``(k0, k1, threshold)`` as uint64, and the float32 scale."""
    return np.uint64(key[0]), np.uint64(key[1]), np.uint64(rng.keep_threshold(rate)), dropout_scale(rate)


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
def _dropout_channels_par(x, y, k0, k1, thr, scale, relu, offset):
    n, rows, c = x.shape
    per_task = max(1, CHUNK // max(c, 1))
    tasks = (rows + per_task - 1) // per_task
    for t in prange(n * tasks):
        i, s0 = t // tasks, (t % tasks) * per_task
        keep = np.empty(c, dtype=np.bool_)
        _dropout_channels(x, y, i, s0, min(rows, s0 + per_task), keep, k0, k1, thr, scale, relu, offset)


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
