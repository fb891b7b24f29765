"""Element-wise ops with constants (Numba), same contract as :mod:`dropcore.kernels.reference.elementwise`.

``rescale`` runs over rows of at least ``ROW`` elements (the channels' constants tiled along them: see
``reference.elementwise.tiled_rows``), split over the threads. It is compiled without the
``contract`` fast-math flag: a fused multiply-add rounds once where NumPy's ``x * scale + offset`` rounds twice,
and Rescaling's outputs are NumPy's bits.
"""
import numpy as np
from numba import prange

from .config import FASTMATH, pjit
from .reference.elementwise import tiled_rows

_NO_FMA = FASTMATH - {"contract"}


@pjit(fastmath=_NO_FMA)
def _rescale_rows(x, s, o, y, add_offset):
    for r in prange(x.shape[0]):
        for k in range(x.shape[1]):
            v = x[r, k] * s[k]
            y[r, k] = v + o[k] if add_offset else v


def _apply(x, scale, offset):
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    if x.size:
        rows, width, (s, o) = tiled_rows(x.shape, scale, 0.0 if offset is None else offset)
        _rescale_rows(x.reshape(rows, width), s, o, y.reshape(rows, width), offset is not None)
    return y


def rescale(x, scale, offset):
    """``x * scale + offset`` over the last axis."""
    return _apply(x, scale, offset)


def rescale_backward(dy, scale):
    """``dy * scale``."""
    return _apply(dy, scale, None)
