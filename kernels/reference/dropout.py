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
(:func:`gaussian_noise`), computed in float64 and rounded once to float32.
"""
import numpy as np

from .activation import relu
from .rng import dropout_key, keep_mask, random_bits  # noqa: F401  (dropout_key: the layers' keys, from here)

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
