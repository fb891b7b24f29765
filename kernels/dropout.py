"""Dropout and noise (Numba): the dropout family, same contract as :mod:`dropcore.kernels.reference.dropout`.

Dropout never builds a mask array: each element's keep bit is hashed from its flat index in the noise shape by the
inlined :func:`dropcore.kernels.rng.keep`, so the result depends neither on the thread count nor on the chunking
(``activation.CHUNK`` elements a task). Per-channel dropout views ``x`` as ``(N, S, C)`` and hashes the ``C`` bits
of sample ``n`` once per chunk of rows. Gaussian noise hashes two values per element the same way (Box-Muller in
float64, as the reference); the noise layers' formulas on it (``gaussian_dropout``, ``add_gaussian_noise``,
``alpha_dropout``) round as the reference's float32 expressions do, product then sum, compiled without ``contract``
(:data:`_NO_FMA`) so that LLVM fuses no multiply-add.
"""
import numpy as np
from numba import prange

from . import rng
from .activation import CHUNK, _flat
from .config import FASTMATH, njit, pjit
from .geometry import window_2d
from .reference.dropout import (ALPHA_P, alpha_dropout_affine, drop_block_gamma, dropout_scale,
                                gaussian_dropout_scale, pool_weights)

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
#: The fast-math flags without ``contract``: an FMA would round ``x * a + b`` once where the reference rounds twice.
_NO_FMA = FASTMATH - {"contract"}
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


@njit(fastmath=_NO_FMA)
def _noise_apply_span(x, y, z, s, add):
    """``y = x + z s`` (``add``) or ``y = x m`` with ``m = z s + 1`` left in ``z``, on a chunk whose noise ``z`` is
    drawn."""
    if add:
        for i in range(x.size):
            y[i] = x[i] + z[i] * s
    else:
        for i in range(x.size):
            z[i] = z[i] * s + _ONE
            y[i] = x[i] * z[i]


@njit
def _multiply_span(a, b, out):
    for i in range(a.size):
        out[i] = a[i] * b[i]


@njit(fastmath=_NO_FMA)
def _alpha_span(x, y, lo, k0, k1, thr, a, b, c):
    """AlphaDropout of the chunk ``x`` whose first element has flat index ``lo`` in the noise shape."""
    for i in range(x.size):
        y[i] = x[i] * a + b if rng.keep(lo + i, k0, k1, thr) else c


@njit(fastmath=_NO_FMA)
def _alpha_channels(x, y, n, keep, k0, k1, thr, a, b, c, offset):
    """Sample ``n`` of per-channel AlphaDropout (``x`` viewed as (N, S, C)); ``keep``: this task's length-C buffer."""
    ch = x.shape[2]
    for k in range(ch):
        keep[k] = rng.keep(offset + n * ch + k, k0, k1, thr)
    for s in range(x.shape[1]):
        xv, yv = x[n, s], y[n, s]
        for k in range(ch):
            yv[k] = xv[k] * a + b if keep[k] else c


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
def _noise_apply_par(x, y, m, k0, k1, s, add, offset):
    """``m``: the chunks' noise, then GaussianDropout's multiplier (a buffer like ``x``)."""
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _gaussian_span(m[lo:hi], offset + lo, k0, k1)  # the draws of gaussian_noise, then the formula
        _noise_apply_span(x[lo:hi], y[lo:hi], m[lo:hi], s, add)


@pjit
def _multiply_par(a, b, out):
    n = a.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _multiply_span(a[lo:hi], b[lo:hi], out[lo:hi])


@pjit
def _alpha_par(x, y, k0, k1, thr, a, b, c, offset):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = t * CHUNK, min(n, (t + 1) * CHUNK)
        _alpha_span(x[lo:hi], y[lo:hi], offset + lo, k0, k1, thr, a, b, c)


@pjit
def _alpha_channels_par(x, y, k0, k1, thr, a, b, c, offset):
    for t in prange(x.shape[0]):
        keep = np.empty(x.shape[2], dtype=np.bool_)
        _alpha_channels(x, y, t, keep, k0, k1, thr, a, b, c, offset)


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
        rows = (x.shape[0], int(np.prod(x.shape[1:-1])), x.shape[-1])  # (a -1 cannot reshape an empty batch)
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


def _noise_apply(x, key, s, add, offset):
    y, m = np.empty_like(x), np.empty_like(x)
    _noise_apply_par(_flat(x), _flat(y), _flat(m), np.uint64(key[0]), np.uint64(key[1]), np.float32(s), add,
                     np.int64(offset))
    return y, m


def gaussian_dropout(x, rate, key, offset=0):
    """``(y, m)``: ``y = x * m``, GaussianDropout's multiplier ``m = z * s + 1`` with ``z`` that of
    :func:`gaussian_noise` of ``x.shape`` at ``offset`` and ``s = sqrt(rate / (1 - rate))``; ``m`` is kept for the
    backward."""
    return _noise_apply(x, key, gaussian_dropout_scale(rate), False, offset)


def gaussian_dropout_backward(dy, m):
    """Gradient of :func:`gaussian_dropout` from its multiplier: ``dy * m``."""
    dx = np.empty_like(dy)
    _multiply_par(_flat(dy), _flat(m), _flat(dx))
    return dx


def add_gaussian_noise(x, stddev, key, offset=0):
    """``x + z * stddev``: GaussianNoise, ``z`` that of :func:`gaussian_noise` of ``x.shape`` at ``offset``."""
    return _noise_apply(x, key, stddev, True, offset)[0]


def _channel_rows(shape):
    """``shape`` viewed as (N, S, C) for per-channel noise, written out (a -1 cannot reshape an empty batch)."""
    return shape[0], int(np.prod(shape[1:-1])), shape[-1]


def _alpha_constants(rate):
    a, b = alpha_dropout_affine(rate)
    return np.float32(a), np.float32(b), np.float32(a * ALPHA_P + b)


def alpha_dropout(x, rate, key, per_channel=False, offset=0):
    """AlphaDropout: ``x * a + b`` where :func:`dropout` with the same arguments keeps a unit, ``a * ALPHA_P + b``
    where it drops it (``reference.dropout.alpha_dropout_affine``)."""
    k0, k1, thr, _ = _stream(rate, key)
    a, b, c = _alpha_constants(rate)
    y = np.empty_like(x)
    if per_channel and x.ndim >= 2:
        rows = _channel_rows(x.shape)
        _alpha_channels_par(x.reshape(rows), y.reshape(rows), k0, k1, thr, a, b, c, np.int64(offset))
    else:
        _alpha_par(_flat(x), _flat(y), k0, k1, thr, a, b, c, np.int64(offset))
    return y


def alpha_dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of :func:`alpha_dropout`: ``dy * a`` where the unit was kept, 0 elsewhere: dropout's kernel with
    ``a`` for its scale."""
    k0, k1, thr, _ = _stream(rate, key)
    a = _alpha_constants(rate)[0]
    dx = np.empty_like(dy)
    if per_channel and dy.ndim >= 2:
        rows = _channel_rows(dy.shape)
        _dropout_channels_par(dy.reshape(rows), dx.reshape(rows), k0, k1, thr, a, False, np.int64(offset))
    else:
        _dropout_par(_flat(dy), _flat(dx), k0, k1, thr, a, False, np.int64(offset))
    return dx


@njit
def _drop_block_sample(x, y, bs, k0, k1, thr, base):
    """One sample ``x`` (H, W, C) of DropBlock, element ``i``'s noise index ``base + i``: the corners' bits, their
    blocks as running ORs along the rows then down the columns, the kept units counted per channel, then ``y = x *
    m`` (``m`` 0 in a block, ``float32(H W / kept)`` elsewhere), as the Cython kernel."""
    h, w, c = x.shape
    vh, vw = h - bs + 1, w - bs + 1
    cor = np.empty((vh, vw, c), dtype=np.bool_)
    for a in range(vh):
        for e in range(vw):
            for k in range(c):
                cor[a, e, k] = not rng.keep(base + (a * w + e) * c + k, k0, k1, thr)
    hor = np.zeros((vh, w, c), dtype=np.bool_)
    for a in range(vh):
        for j in range(w):
            for e in range(max(0, j - bs + 1), min(j, vw - 1) + 1):
                for k in range(c):
                    hor[a, j, k] |= cor[a, e, k]
    drp = np.zeros((h, w, c), dtype=np.bool_)
    cnt = np.zeros(c, dtype=np.int64)
    for i in range(h):
        for j in range(w):
            for a in range(max(0, i - bs + 1), min(i, vh - 1) + 1):
                for k in range(c):
                    drp[i, j, k] |= hor[a, j, k]
            for k in range(c):
                cnt[k] += not drp[i, j, k]
    scale = np.empty(c, dtype=np.float32)
    for k in range(c):
        scale[k] = np.float32(np.float64(h * w) / np.float64(cnt[k])) if cnt[k] > 0 else _ZERO
    for i in range(h):
        for j in range(w):
            for k in range(c):
                y[i, j, k] = x[i, j, k] * (_ZERO if drp[i, j, k] else scale[k])


@pjit
def _drop_block_par(x, y, bs, k0, k1, thr, offset):
    per = x.shape[1] * x.shape[2] * x.shape[3]
    for t in prange(x.shape[0]):
        _drop_block_sample(x[t], y[t], bs, k0, k1, thr, offset + t * per)


def drop_block2d(x, rate, block_size, key, offset=0):
    """DropBlock of ``x`` (N, H, W, C): blocks of ``block_size`` (at most H and W) at the corners whose bits
    (``drop_block_gamma``'s probability, stream index ``offset`` + flat index) drop, kept units scaled by ``H W /
    kept`` per (sample, channel) map; one task a sample."""
    n, h, w, c = x.shape
    y = np.empty_like(x)
    k0, k1, thr, _ = _stream(drop_block_gamma(rate, block_size, h, w), key)
    _drop_block_par(x, y, np.int64(block_size), k0, k1, thr, np.int64(offset))
    return y


def drop_block2d_backward(dy, rate, block_size, key, offset=0):
    """Gradient of :func:`drop_block2d`: ``dy`` times the same multiplier (drawn again)."""
    return drop_block2d(dy, rate, block_size, key, offset)


# --- MaxPoolingDropout2D: one task a sample, the loops of the Cython kernels (the same float32 sums) -------------
# Compiled without fast-math: "contract" fused a weight's product into the sum (an ulp off the reference in a
# quarter of the windows) and "reassoc" may reorder the sums; these loops must add in the reference's order.

@njit(fastmath=False)
def _mpd_train_sample(x, y, arg, keep, geo, base, k0, k1, thr):
    """The training rule on one sample (H, W, C): NumPy's argmax over each window's taps, a dropped or padded tap
    -inf (the first maximum wins; a NaN wins and stops it); ``keep``: this task's (H, W, C) buffer."""
    h, w, c = x.shape
    ph, pw, sh, sw, pt, pl = geo
    for iy in range(h):
        for ix in range(w):
            for ch in range(c):
                keep[iy, ix, ch] = rng.keep(base + (iy * w + ix) * c + ch, k0, k1, thr)
    for oy in range(y.shape[0]):
        for ox in range(y.shape[1]):
            for ch in range(c):
                best, bi, anyk = -np.inf, 0, False
                for ti in range(ph):
                    iy = oy * sh + ti - pt
                    for tj in range(pw):
                        ix = ox * sw + tj - pl
                        if iy < 0 or iy >= h or ix < 0 or ix >= w:
                            continue
                        k = ti * pw + tj
                        kk = keep[iy, ix, ch]
                        v = x[iy, ix, ch] if kk else np.float32(-np.inf)
                        if k == 0 or (best == best and (v > best or v != v)):
                            best, bi = v, k
                        anyk = anyk or kk
                y[oy, ox, ch] = best if anyk else _ZERO
                arg[oy, ox, ch] = bi if anyk else -1


@njit(fastmath=False)
def _scatter_taps(dwin, dx, geo):
    """``dx`` (one sample, zeroed here) from per-window gradients ``dwin`` (OH, OW, C, K), each pixel's taps added
    in tap order from 0 (the reference's ``_scatter``)."""
    h, w, c = dx.shape
    ph, pw, sh, sw, pt, pl = geo
    dx[:] = _ZERO
    for ti in range(ph):
        for tj in range(pw):
            k = ti * pw + tj
            for oy in range(dwin.shape[0]):
                iy = oy * sh + ti - pt
                if iy < 0 or iy >= h:
                    continue
                for ox in range(dwin.shape[1]):
                    ix = ox * sw + tj - pl
                    if ix < 0 or ix >= w:
                        continue
                    for ch in range(c):
                        dx[iy, ix, ch] += dwin[oy, ox, ch, k]


@njit(fastmath=False)
def _sort_taps(v, idx):
    """Stable insertion sort of ``v`` ascending with NaN last (``argsort(kind="stable")``), ``idx`` alike."""
    for i in range(1, v.size):
        a, t, j = v[i], idx[i], i
        while j > 0:
            p = v[j - 1]
            if not (p > a or (p != p and a == a)):
                break
            v[j], idx[j] = p, idx[j - 1]
            j -= 1
        v[j], idx[j] = a, t


@njit(fastmath=False)
def _wpool_sample(x, dy, out, wtab, geo, backward):
    """Weighted pooling of one sample: each window's taps sorted (padding as NaN); ``out[o] = sum_i w_i a_i`` in
    sorted order (float32), or with ``backward`` ``out`` = dx from ``dwin[o, tap_i] = dy[o] w_i``."""
    h, w, c = x.shape
    ph, pw, sh, sw, pt, pl = geo
    oh, ow = dy.shape[0], dy.shape[1]
    kk = ph * pw
    v = np.empty(kk, dtype=np.float32)
    idx = np.empty(kk, dtype=np.int64)
    dwin = np.empty((oh, ow, c, kk) if backward else (0, 0, 0, 0), dtype=np.float32)
    for oy in range(oh):
        for ox in range(ow):
            for ch in range(c):
                n = 0
                for ti in range(ph):
                    iy = oy * sh + ti - pt
                    for tj in range(pw):
                        ix = ox * sw + tj - pl
                        idx[ti * pw + tj] = ti * pw + tj
                        if iy < 0 or iy >= h or ix < 0 or ix >= w:
                            v[ti * pw + tj] = np.float32(np.nan)
                        else:
                            v[ti * pw + tj] = x[iy, ix, ch]
                            n += 1
                _sort_taps(v, idx)
                if backward:
                    g = dy[oy, ox, ch]
                    for i in range(kk):
                        dwin[oy, ox, ch, idx[i]] = g * wtab[n, i]
                else:
                    acc = _ZERO
                    for i in range(kk):
                        wt = wtab[n, i]
                        term = v[i] * wt if wt != 0 else _ZERO
                        acc = term if i == 0 else acc + term
                    out[oy, ox, ch] = acc
    if backward:
        _scatter_taps(dwin, out, geo)


@pjit
def _mpd_train_par(x, y, arg, geo, k0, k1, thr, offset):
    per = x.shape[1] * x.shape[2] * x.shape[3]
    for t in prange(x.shape[0]):
        keep = np.empty(x.shape[1:], dtype=np.bool_)
        _mpd_train_sample(x[t], y[t], arg[t], keep, geo, offset + t * per, k0, k1, thr)


@pjit
def _mpd_backward_par(dy, arg, dx, geo):
    kk = geo[0] * geo[1]
    for t in prange(dx.shape[0]):
        oh, ow, c = dy.shape[1], dy.shape[2], dy.shape[3]
        dwin = np.zeros((oh, ow, c, kk), dtype=np.float32)
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(c):
                    if arg[t, oy, ox, ch] >= 0:
                        dwin[oy, ox, ch, arg[t, oy, ox, ch]] = dy[t, oy, ox, ch]
        _scatter_taps(dwin, dx[t], geo)


@pjit
def _wpool_par(x, dy, out, wtab, geo, backward):
    for t in prange(x.shape[0]):
        _wpool_sample(x[t], dy[t], out[t], wtab, geo, backward)


def _pool_geometry(x_shape, pool, strides, padding):
    oh, ow, (pt, _), (pl, _) = window_2d(x_shape[1], x_shape[2], pool, strides, padding)
    return (oh, ow), tuple(np.int64(v) for v in (pool[0], pool[1], strides[0], strides[1], pt, pl))


def max_pool_dropout2d(x, rate, key, pool, strides, padding, offset=0):
    """MaxPoolingDropout's training rule: ``(y, arg)``, the max of each window's kept inputs (0 where none is) and
    the tap of the first kept maximum (int32, -1 where none is kept); see ``reference.dropout``."""
    (oh, ow), geo = _pool_geometry(x.shape, pool, strides, padding)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    arg = np.empty(y.shape, dtype=np.int32)
    k0, k1, thr, _ = _stream(rate, key)
    _mpd_train_par(x, y, arg, geo, k0, k1, thr, np.int64(offset))
    return y, arg


def max_pool_dropout2d_backward(dy, arg, x_shape, pool, strides, padding):
    """Gradient of :func:`max_pool_dropout2d`: each window's ``dy`` to its tap ``arg``, added in tap order."""
    _, geo = _pool_geometry(x_shape, pool, strides, padding)
    dx = np.empty(tuple(x_shape), dtype=np.float32)
    _mpd_backward_par(dy, arg, dx, geo)
    return dx


def weighted_pool2d(x, rate, pool, strides, padding):
    """MaxPoolingDropout's inference rule: probabilistic weighted pooling over each window's sorted inputs."""
    (oh, ow), geo = _pool_geometry(x.shape, pool, strides, padding)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    _wpool_par(x, y, y, pool_weights(rate, pool[0] * pool[1]).astype(np.float32), geo, False)
    return y


def weighted_pool2d_backward(dy, x, rate, pool, strides, padding):
    """Gradient of :func:`weighted_pool2d`: ``dy * w_i`` to the input at sorted position ``i`` (sorted again)."""
    _, geo = _pool_geometry(x.shape, pool, strides, padding)
    dx = np.empty_like(x)
    _wpool_par(x, dy, dx, pool_weights(rate, pool[0] * pool[1]).astype(np.float32), geo, True)
    return dx
