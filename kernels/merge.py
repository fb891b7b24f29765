"""The merge ops (Numba), same contract as :mod:`dropcore.kernels.reference.merge`.

A concatenation along ``axis`` is a copy of rows: seen as 2-D, input ``i`` is ``(rows, w_i)`` with ``rows`` the
product of the axes before ``axis`` and the output ``(rows, sum w_i)``, and each input fills its own columns. The
copies split over rows, so both cores share the (memory-bound) work; the split of the backward is the same copy
the other way. ``add`` runs in chunks of elements, each chunk summing the inputs in the order given.
"""
import numpy as np
from numba import prange

from .config import pjit

_CHUNK = 16384  # elements per parallel task of add


@pjit
def _into_columns(part, whole, col):
    for r in prange(part.shape[0]):
        whole[r, col:col + part.shape[1]] = part[r]


@pjit
def _from_columns(whole, part, col):
    for r in prange(part.shape[0]):
        part[r] = whole[r, col:col + part.shape[1]]


def _rows(shape, axis):
    return int(np.prod(shape[:axis], dtype=np.int64))


def concatenate(xs, axis):
    """``xs`` joined along ``axis``."""
    axis = axis % xs[0].ndim
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    y = np.empty(shape, dtype=np.float32)
    rows, col = _rows(shape, axis), 0
    whole = y.reshape(rows, -1)
    for x in xs:
        part = np.ascontiguousarray(x, dtype=np.float32).reshape(rows, -1)
        if part.size:
            _into_columns(part, whole, col)
        col += part.shape[1]
    return y


def concatenate_backward(dy, x_shapes, axis):
    """``dy`` split along ``axis`` into C-contiguous parts of ``x_shapes`` (a tuple)."""
    axis = axis % dy.ndim
    rows, col = _rows(dy.shape, axis), 0
    whole = np.ascontiguousarray(dy, dtype=np.float32).reshape(rows, -1)
    parts = []
    for shape in x_shapes:
        dx = np.empty(shape, dtype=np.float32)
        part = dx.reshape(rows, -1)
        if part.size:
            _from_columns(whole, part, col)
        col += part.shape[1]
        parts.append(dx)
    return tuple(parts)


@pjit
def _add_to(y, x, first):
    """``y += x`` (``y = first + x`` when ``first`` is not ``y``), chunk by chunk."""
    n = y.shape[0]
    for t in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(t * _CHUNK, min(n, (t + 1) * _CHUNK)):
            y[i] = first[i] + x[i]


def add(xs):
    """The sum of ``xs`` in order."""
    flat = [np.ascontiguousarray(x, dtype=np.float32).reshape(-1) for x in xs]
    y = np.empty(xs[0].shape, dtype=np.float32)
    out = y.reshape(-1)
    _add_to(out, flat[1], flat[0])
    for x in flat[2:]:
        _add_to(out, x, out)
    return y
