"""Element-wise ops with constants (NumPy reference): Keras's ``Rescaling``, ``x * scale + offset``.

``scale`` and ``offset`` are floats or 1-D arrays of one value per channel (the last axis) or of one value. The
product is rounded, then the sum, as NumPy computes ``x * scale + offset``: the fast sets round the same way (no
fused multiply-add), so they give the same bits.
"""
import functools
import math

import numpy as np


#: The rows the fast sets see have at least this many elements, when the shape allows: a row of 3 channels (an RGB
#: input) kept the loop scalar and ran 3x slower than NumPy (64x32x32x3, 2-core EPYC); tiled to 3072 it vectorizes.
ROW = 1024


def tiled_rows(shape, *constants):
    """``(rows, width, tiled)``: an array of ``shape`` (C-contiguous, channels last) as ``rows x width``, the
    trailing axes joined until a row holds at least :data:`ROW` elements, and each constant (a float, or 1 or
    ``C`` values) as ``width`` float32 values, the channels' pattern repeated along the row (read-only: cached,
    as a training step asks for the same ones each time; building them cost as much as the kernel)."""
    return _tiled_rows(tuple(int(d) for d in shape),
                       *(tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in constants))


@functools.lru_cache(maxsize=64)
def _tiled_rows(shape, *constants):
    c, width = shape[-1], 1
    for d in reversed(shape):
        width *= d
        if width >= ROW:
            break
    rows = math.prod(shape) // width if width else 0
    tiled = []
    for v in constants:
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        t = np.full(width, v[0], dtype=np.float32) if v.size == 1 else np.tile(v, width // c)
        t.flags.writeable = False
        tiled.append(t)
    return rows, width, tiled


def _constant(v, dtype):
    return np.asarray(v, dtype=dtype)


def rescale(x, scale, offset):
    """``x * scale + offset``, ``scale`` and ``offset`` broadcast over the last axis."""
    return x * _constant(scale, x.dtype) + _constant(offset, x.dtype)


def rescale_backward(dy, scale):
    """The gradient of :func:`rescale` with respect to ``x``: ``dy * scale``."""
    return dy * _constant(scale, dy.dtype)
