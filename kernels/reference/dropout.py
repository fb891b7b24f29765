"""Dropout and noise (NumPy reference): the dropout family of the kernel contract.

Dropout is inverted dropout with a counter-based mask (:mod:`dropcore.kernels.reference.rng`): element ``i`` of the
noise shape is kept when ``random_bits(i) >= keep_threshold(rate)`` and kept values are multiplied by
``np.float32(1) / np.float32(1 - rate)``. Nothing is stored between forward and backward: the backward recomputes
the mask from the same ``key``, and the fused ReLU-dropout backward reads it off ``y > 0``.

``offset``: the index, in the stream, of this call's first mask element. Monte-Carlo dropout passes the batch's
first row times the mask elements of a sample, so that a sample's mask depends on its row in the whole input, not
on how the input was cut into batches.

Gaussian noise (GaussianDropout, GaussianNoise) comes from the same counter-based hash: element ``i`` of a call is
the Box-Muller transform of the 32-bit values at stream indices ``2 (offset + i)`` and ``2 (offset + i) + 1``
(:func:`gaussian_noise`), computed in float64 and rounded once to float32. The layers' formulas on it are ops of
their own, so that no layer applies noise in NumPy: :func:`gaussian_dropout` (``x * (1 + s z)``),
:func:`add_gaussian_noise` (``x + s z``) and :func:`alpha_dropout` (Dropout's keep bits, then SELU's affine map).

MaxPoolingDropout (Wu & Gu 2015): :func:`max_pool_dropout2d` is the training rule (max of each window's kept inputs,
one keep bit per input element), :func:`weighted_pool2d` the inference rule (probabilistic weighted pooling over
each window's sorted inputs, :func:`pool_weights`).

DropBlock (:func:`drop_block2d`) draws a block's top-left corner with the keep bits of ``drop_block_gamma``: corner
``(n, a, e, c)`` is dropped where the element at that index of the input (stream index ``offset`` + its flat index)
is, for every corner whose block lies wholly inside the map.
"""
import math

import numpy as np

from ..geometry import window_2d
from .activation import SELU_ALPHA, SELU_SCALE, relu
from .rng import dropout_key, keep_mask, random_bits  # noqa: F401  (dropout_key: the layers' keys, from here)

#: AlphaDropout sets dropped units to SELU's negative saturation.
ALPHA_P = -SELU_ALPHA * SELU_SCALE
_TWO_PI = 2.0 * np.pi
_INV_2_32 = 2.0**-32


def dropout_scale(rate):
    """The float32 factor applied to kept units, ``1 / (1 - rate)``."""
    return np.float32(1.0) / np.float32(1.0 - rate)


def noise_shape(shape, per_channel):
    """The mask's shape: ``shape`` itself, or ``(N, 1, ..., 1, C)`` for per-channel (spatial) dropout."""
    if not per_channel or len(shape) < 2:
        return tuple(shape)
    return (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)


def dropout_mask(noise_shape, rate, key, offset=0):
    """float32 array of ``noise_shape`` holding 0 (dropped) or ``1 / (1 - rate)`` (kept)."""
    return np.where(keep_mask(noise_shape, rate, key, offset), dropout_scale(rate), np.float32(0))


def gaussian_noise(shape, key, offset=0):
    """float32 standard normal noise of ``shape`` from the stream ``key``: element ``i`` (C order) is
    ``sqrt(-2 ln u1) * cos(2 pi u2)`` with ``u1 = (h(2j) + 1) / 2**32`` in ``(0, 1]`` and ``u2 = h(2j + 1) / 2**32``
    in ``[0, 1)``, ``h = random_bits`` and ``j = offset + i``: every step exact or correctly rounded in float64, then
    rounded to float32. ``offset`` shifts the elements as for dropout masks (a stream repeats after 2**31 elements)."""
    n = int(np.prod(shape))
    bits = random_bits(2 * n, key, 2 * offset).astype(np.float64)
    u1 = (bits[0::2] + 1.0) * _INV_2_32
    u2 = bits[1::2] * _INV_2_32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)).astype(np.float32).reshape(shape)


def dropout(x, rate, key, per_channel=False, offset=0):
    """Inverted dropout of ``x``; ``per_channel`` drops whole channels per sample. ``rate == 0`` copies ``x``."""
    if rate == 0:
        return x.copy()
    keep = keep_mask(noise_shape(x.shape, per_channel), rate, key, offset)
    return np.where(keep, x * x.dtype.type(dropout_scale(rate)), x.dtype.type(0))


def dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of :func:`dropout`: the same (recomputed) mask and scale applied to ``dy``."""
    return dropout(dy, rate, key, per_channel, offset)


def relu_dropout(x, rate, key, per_channel=False, offset=0):
    """``dropout(relu(x))`` in one pass."""
    return dropout(relu(x), rate, key, per_channel, offset)


def relu_dropout_backward(dy, y, rate):
    """Gradient of :func:`relu_dropout` from its output: ``dy * scale`` exactly where ``y > 0``.

    A unit with ``y > 0`` was positive and kept (``scale >= 1`` keeps it positive); every other unit has zero
    gradient, so the mask need not be recomputed.
    """
    return np.where(y > 0, dy * dy.dtype.type(dropout_scale(rate)), dy.dtype.type(0))


def gaussian_dropout_scale(rate):
    """The float32 standard deviation of GaussianDropout's multiplier, ``sqrt(rate / (1 - rate))``."""
    return np.float32(math.sqrt(rate / (1.0 - rate)))


def gaussian_dropout(x, rate, key, offset=0):
    """``(y, m)``: ``y = x * m`` with the multiplier ``m = z * s + 1`` (float32, two roundings: the multiply, then
    the add; returned in ``x``'s dtype for the backward), ``z`` the :func:`gaussian_noise` of ``x.shape`` from
    ``key`` and ``offset``, ``s`` :func:`gaussian_dropout_scale`: multiplicative noise N(1, rate / (1 - rate))
    (Keras's GaussianDropout)."""
    m = gaussian_noise(x.shape, key, offset) * gaussian_dropout_scale(rate)
    m += np.float32(1.0)
    m = m.astype(x.dtype, copy=False)
    return x * m, m


def gaussian_dropout_backward(dy, m):
    """Gradient of :func:`gaussian_dropout` from its multiplier ``m``: ``dy * m``. The forward returns ``m`` because
    drawing the noise again (log, cos and sqrt per element) cost as much as the forward itself."""
    return dy * m


def add_gaussian_noise(x, stddev, key, offset=0):
    """``x + z * stddev`` (the product rounded to float32 first), ``z`` the :func:`gaussian_noise` of ``x.shape``
    (Keras's GaussianNoise). Its gradient is ``dy`` itself: no backward op."""
    z = gaussian_noise(x.shape, key, offset) * np.float32(stddev)
    return x + z.astype(x.dtype, copy=False)


def alpha_dropout_affine(rate):
    """AlphaDropout's ``(a, b)`` (Keras's formula, Python floats): kept units become ``a x + b``, dropped ones
    ``a * ALPHA_P + b``, so zero-mean unit-variance inputs keep mean 0 and variance 1."""
    a = ((1.0 - rate) * (1.0 + rate * ALPHA_P ** 2)) ** -0.5
    return a, -a * ALPHA_P * rate


def alpha_dropout(x, rate, key, per_channel=False, offset=0):
    """AlphaDropout of ``x``: ``x * a + b`` (in ``x``'s dtype, the product rounded first) where Dropout with the same
    ``rate``, ``key``, ``per_channel`` and ``offset`` keeps a unit, ``a * ALPHA_P + b`` where it drops it."""
    keep = keep_mask(noise_shape(x.shape, per_channel), rate, key, offset)
    a, b = alpha_dropout_affine(rate)
    t = x.dtype.type
    return np.where(keep, x * t(a) + t(b), t(a * ALPHA_P + b))


def alpha_dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of :func:`alpha_dropout`: ``dy * a`` where the unit was kept (the mask drawn again), 0 elsewhere."""
    keep = keep_mask(noise_shape(dy.shape, per_channel), rate, key, offset)
    t = dy.dtype.type
    return np.where(keep, dy * t(alpha_dropout_affine(rate)[0]), t(0))


def drop_block_gamma(rate, block_size, h, w):
    """DropBlock's probability of a block at each valid corner of an ``h x w`` map (Ghiasi et al.'s formula)."""
    b = block_size
    return rate / b ** 2 * (h * w) / ((h - b + 1) * (w - b + 1))


def drop_block2d_mask(shape, rate, block_size, key, offset=0):
    """The float64 multiplier of DropBlock for an input of ``shape`` (N, H, W, C): 0 in a dropped block, ``H W /
    kept`` elsewhere (``kept``: the units kept in that (sample, channel) map; a map with none kept is all 0)."""
    n, h, w, c = shape
    b = block_size
    # a block's top-left corner (a, e) may be any element with a <= h - b, e <= w - b: its bit is the element's
    corners = ~keep_mask(tuple(shape), drop_block_gamma(rate, b, h, w), key, offset)[:, :h - b + 1, :w - b + 1, :]
    dropped = np.zeros(shape, dtype=bool)
    for i in range(b):
        for j in range(b):
            dropped[:, i:i + h - b + 1, j:j + w - b + 1, :] |= corners
    kept = ~dropped
    count = kept.sum(axis=(1, 2), keepdims=True)
    scale = np.where(count > 0, (h * w) / np.maximum(count, 1), 0.0)
    return kept * scale


def drop_block2d(x, rate, block_size, key, offset=0):
    """DropBlock of ``x`` (N, H, W, C): ``x`` times :func:`drop_block2d_mask` rounded to ``x``'s dtype."""
    return x * drop_block2d_mask(x.shape, rate, block_size, key, offset).astype(x.dtype)


def drop_block2d_backward(dy, rate, block_size, key, offset=0):
    """Gradient of :func:`drop_block2d`: ``dy`` times the same multiplier, drawn again (nothing is stored)."""
    return drop_block2d(dy, rate, block_size, key, offset)


def pool_windows(a, pool, strides, padding, fill):
    """``(N, OH, OW, C, K)``: each window's ``K = ph * pw`` inputs in row-major order, padding as ``fill``."""
    oh, ow, pads_h, pads_w = window_2d(a.shape[1], a.shape[2], pool, strides, padding)
    (sh, sw), (ph, pw) = strides, pool
    ap = np.pad(a, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=fill)
    return np.stack([ap[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                     for i in range(ph) for j in range(pw)], axis=-1)


def _scatter(dwin, shape, pool, strides, padding):
    """The input gradient from per-window gradients ``(N, OH, OW, C, K)``: each pixel's taps added in tap order,
    starting from 0 (overlapping windows add up; padding is cut off)."""
    n, h, w, c = shape
    oh, ow, (pt, pb), (pl, pr) = window_2d(h, w, pool, strides, padding)
    (sh, sw), (ph, pw) = strides, pool
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dwin.dtype)
    for i in range(ph):
        for j in range(pw):
            dxp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += dwin[..., i * pw + j]
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :])


def max_pool_dropout2d(x, rate, key, pool, strides, padding, offset=0):
    """MaxPoolingDropout's training rule: ``(y, arg)``, ``y`` the max of each window's kept inputs (Dropout's keep
    bits for ``rate``, one per input element, stream index ``offset`` + flat index; padding is never kept), 0 where
    none is; ``arg`` (int32) the row-major tap of the first kept maximum (``np.argmax``'s: NaN wins), -1 where none
    is kept."""
    kept = pool_windows(keep_mask(x.shape, rate, key, offset), pool, strides, padding, False)
    t = x.dtype.type
    win = np.where(kept, pool_windows(x, pool, strides, padding, 0), t(-np.inf))
    first = np.argmax(win, axis=-1)
    any_kept = kept.any(axis=-1)
    y = np.where(any_kept, np.take_along_axis(win, first[..., None], -1)[..., 0], t(0))
    return np.ascontiguousarray(y), np.where(any_kept, first, -1).astype(np.int32)


def max_pool_dropout2d_backward(dy, arg, x_shape, pool, strides, padding):
    """Gradient of :func:`max_pool_dropout2d`: each window's ``dy`` to its tap ``arg`` (none where -1)."""
    dwin = np.where(arg[..., None] == np.arange(pool[0] * pool[1]), dy[..., None], dy.dtype.type(0))
    return _scatter(dwin, x_shape, pool, strides, padding)


def pool_weights(rate, k):
    """Weighted pooling's float64 weights, ``(k + 1, k)``: row ``n`` (a window of ``n`` real inputs) gives sorted
    position ``i < n`` the weight ``(1 - rate) rate**(n - 1 - i)``, the probability that it is the largest kept
    input; the positions from ``n`` on (padding) weigh 0."""
    i, n = np.arange(k), np.arange(k + 1)[:, None]
    return np.where(i < n, (1.0 - rate) * np.power(rate, np.maximum(n - 1 - i, 0)), 0.0)


def _ranked(x, rate, pool, strides, padding):
    """``(ranked, order, w)``: each window's inputs sorted ascending (stable, NaN last; padding sorts as NaN), their
    taps, and each sorted position's weight in ``x``'s dtype."""
    real = pool_windows(np.ones((1,) + x.shape[1:], dtype=bool), pool, strides, padding, False)
    win = np.where(real, pool_windows(x, pool, strides, padding, 0), x.dtype.type(np.nan))
    order = np.argsort(win, axis=-1, kind="stable")
    k = pool[0] * pool[1]
    w = pool_weights(rate, k)[real.sum(axis=-1)].astype(x.dtype)
    return np.take_along_axis(win, order, -1), order, w


def weighted_pool2d(x, rate, pool, strides, padding):
    """MaxPoolingDropout's inference rule (probabilistic weighted pooling): each window's sum of ``w_i a_i`` over
    its real inputs sorted ascending, ``w`` from :func:`pool_weights`; the products added in sorted order in ``x``'s
    dtype (a position of weight 0 adds 0). The expectation of :func:`max_pool_dropout2d`'s output."""
    ranked, _, w = _ranked(x, rate, pool, strides, padding)
    terms = np.where(w != 0, ranked, x.dtype.type(0)) * w
    y = terms[..., 0].copy()
    for i in range(1, terms.shape[-1]):
        y += terms[..., i]
    return y


def weighted_pool2d_backward(dy, x, rate, pool, strides, padding):
    """Gradient of :func:`weighted_pool2d`: ``dy * w_i`` to the input at sorted position ``i`` (sorted again)."""
    _, order, w = _ranked(x, rate, pool, strides, padding)
    dwin = np.zeros(order.shape, dtype=dy.dtype)
    np.put_along_axis(dwin, order, dy[..., None] * w.astype(dy.dtype), -1)
    return _scatter(dwin, x.shape, pool, strides, padding)
