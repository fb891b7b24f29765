"""Zero padding (Numba), same contract as :mod:`dropcore.kernels.reference.pad`.

Each task is one output row of one sample (``N * OH`` of them, split over the threads): zeros, or the input's row
between zeros; the crop of the backward is the same copy the other way.
"""
import numpy as np
from numba import prange

from .config import pjit


@pjit
def _pad(x, y, top, left):
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    oh = y.shape[1]
    for t in prange(n * oh):
        s, oy = t // oh, t % oh
        row = y[s, oy]
        row[:] = 0
        if top <= oy < top + h:
            row[left:left + w] = x[s, oy - top]


@pjit
def _crop(dy, dx, top, left):
    n, h, w = dx.shape[0], dx.shape[1], dx.shape[2]
    for t in prange(n * h):
        s, iy = t // h, t % h
        dx[s, iy] = dy[s, iy + top, left:left + w]


def zero_pad2d(x, padding):
    """``x`` zero-padded by ``((top, bottom), (left, right))``."""
    (top, bottom), (left, right) = padding
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    y = np.empty((n, h + top + bottom, w + left + right, c), dtype=np.float32)
    if y.size:
        _pad(x, y, top, left)
    return y


def zero_pad2d_backward(dy, padding):
    """``dy`` cropped back to the unpadded rows and columns."""
    (top, bottom), (left, right) = padding
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    n, oh, ow, c = dy.shape
    dx = np.empty((n, oh - top - bottom, ow - left - right, c), dtype=np.float32)
    if dx.size:
        _crop(dy, dx, top, left)
    return dx
