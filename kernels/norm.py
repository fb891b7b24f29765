"""Batch normalization kernels (Numba) over every axis but the last; ``x`` is viewed as ``(rows, C)``.

Per-channel sums are taken over fixed-size row chunks in ``prange``, each chunk into its own float64 partials,
then reduced serially in chunk order: the result does not depend on the thread count, and float64 keeps the sums
of ~10^5 float32 terms exact enough. As in the reference, the data are shifted by their first row before the
moments are taken (``var = E[d^2] - E[d]^2`` on the shifted ``d`` does not cancel catastrophically, and a
constant channel gives exactly ``var = 0`` and ``y == beta``).
"""
import numpy as np
from numba import prange

from .config import njit, pjit
from .reference.norm import relu_cap_mask

F32 = np.float32
F64 = np.float64
#: Elements per chunk (rows per chunk = CHUNK // C): large enough to amortize the partials, small enough to balance.
CHUNK = 32768


def _rows(x):
    """``x`` as a ``(rows, C)`` view and the rows per chunk."""
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    return x2, max(1, CHUNK // c)


@njit
def _moments_chunk(x2, shift, r0, r1, s1, s2):
    """``s1 = sum(d)``, ``s2 = sum(d * d)`` over rows ``r0:r1`` with ``d = x - shift`` (float64)."""
    c = x2.shape[1]
    a1 = np.zeros(c, dtype=F64)
    a2 = np.zeros(c, dtype=F64)
    for r in range(r0, r1):
        row = x2[r]
        for j in range(c):
            d = F64(row[j]) - F64(shift[j])
            a1[j] += d
            a2[j] += d * d
    s1[:] = a1
    s2[:] = a2


@njit
def _reduce_partials(s1, s2):
    """Per-channel totals of the chunks' float64 partials, added in chunk order (independent of the threads)."""
    nchunks, c = s1.shape
    t1 = np.zeros(c, dtype=F64)
    t2 = np.zeros(c, dtype=F64)
    for k in range(nchunks):
        for j in range(c):
            t1[j] += s1[k, j]
            t2[j] += s2[k, j]
    return t1, t2


@njit
def _normalize_chunk(x2, mean, scale, beta, y2, r0, r1):
    """``y = (x - mean) * scale + beta`` on rows ``r0:r1`` (subtracting first keeps a constant channel exact)."""
    for r in range(r0, r1):
        row = x2[r]
        out = y2[r]
        for j in range(x2.shape[1]):
            out[j] = (row[j] - mean[j]) * scale[j] + beta[j]


@pjit
def _batch_norm_train(x2, gamma, beta, eps, chunk):
    rows, c = x2.shape
    nchunks = (rows + chunk - 1) // chunk
    shift = x2[0]
    s1 = np.empty((nchunks, c), dtype=F64)
    s2 = np.empty((nchunks, c), dtype=F64)
    for k in prange(nchunks):
        _moments_chunk(x2, shift, k * chunk, min(rows, (k + 1) * chunk), s1[k], s2[k])
    mean = np.empty(c, dtype=F32)
    var = np.empty(c, dtype=F32)
    inv_std = np.empty(c, dtype=F32)
    scale = np.empty(c, dtype=F32)
    t1, t2 = _reduce_partials(s1, s2)
    for j in range(c):
        dmean = t1[j] / rows
        v = max(t2[j] / rows - dmean * dmean, F64(0.0))
        mean[j] = F32(F64(shift[j]) + dmean)
        var[j] = F32(v)
        inv_std[j] = F32(F64(1.0) / np.sqrt(v + F64(eps)))
        scale[j] = gamma[j] * inv_std[j]
    y2 = np.empty_like(x2)
    for k in prange(nchunks):
        _normalize_chunk(x2, mean, scale, beta, y2, k * chunk, min(rows, (k + 1) * chunk))
    return y2, mean, var, inv_std


def batch_norm_train(x, gamma, beta, eps):
    """Normalize float32 ``x`` with its batch statistics -> ``(y, mean, var, inv_std)``.

    ``var`` is the biased batch variance, ``inv_std = 1/sqrt(var + eps)``; statistics have shape ``(C,)``.
    """
    x2, chunk = _rows(x)
    y2, mean, var, inv_std = _batch_norm_train(x2, gamma, beta, F32(eps), chunk)
    return y2.reshape(x.shape), mean, var, inv_std


@njit
def _grad_sums_chunk(dy2, x2, mean, r0, r1, s1, s2):
    """``s1 = sum(dy)``, ``s2 = sum(dy * (x - mean))`` over rows ``r0:r1`` (float64)."""
    c = x2.shape[1]
    a1 = np.zeros(c, dtype=F64)
    a2 = np.zeros(c, dtype=F64)
    for r in range(r0, r1):
        xr = x2[r]
        gr = dy2[r]
        for j in range(c):
            g = F64(gr[j])
            a1[j] += g
            a2[j] += g * F64(xr[j] - mean[j])
    s1[:] = a1
    s2[:] = a2


@njit
def _grad_input_chunk(dy2, x2, mean, a, b, cst, dx2, r0, r1):
    """``dx = a * dy + b * (x - mean) + cst`` on rows ``r0:r1`` (the standard formula, folded per channel)."""
    for r in range(r0, r1):
        xr = x2[r]
        gr = dy2[r]
        out = dx2[r]
        for j in range(x2.shape[1]):
            out[j] = a[j] * gr[j] + b[j] * (xr[j] - mean[j]) + cst[j]


@pjit
def _batch_norm_backward(dy2, x2, mean, inv_std, gamma, chunk):
    rows, c = x2.shape
    nchunks = (rows + chunk - 1) // chunk
    s1 = np.empty((nchunks, c), dtype=F64)
    s2 = np.empty((nchunks, c), dtype=F64)
    for k in prange(nchunks):
        _grad_sums_chunk(dy2, x2, mean, k * chunk, min(rows, (k + 1) * chunk), s1[k], s2[k])
    dgamma = np.empty(c, dtype=F32)
    dbeta = np.empty(c, dtype=F32)
    a = np.empty(c, dtype=F32)
    b = np.empty(c, dtype=F32)
    cst = np.empty(c, dtype=F32)
    t1, t2 = _reduce_partials(s1, s2)
    for j in range(c):
        istd = F64(inv_std[j])
        dg = t2[j] * istd  # sum(dy * xhat)
        # dx = gamma*istd/M * (M*dy - dbeta - xhat*dgamma) with xhat = (x - mean)*istd
        k0 = F64(gamma[j]) * istd
        dbeta[j] = F32(t1[j])
        dgamma[j] = F32(dg)
        a[j] = F32(k0)
        b[j] = F32(-k0 * istd * dg / rows)
        cst[j] = F32(-k0 * t1[j] / rows)
    dx2 = np.empty_like(x2)
    for k in prange(nchunks):
        _grad_input_chunk(dy2, x2, mean, a, b, cst, dx2, k * chunk, min(rows, (k + 1) * chunk))
    return dx2, dgamma, dbeta


def batch_norm_backward(dy, x, mean, inv_std, gamma):
    """Gradients of :func:`batch_norm_train` -> ``(dx, dgamma, dbeta)`` (float32)."""
    x2, chunk = _rows(x)
    dx2, dgamma, dbeta = _batch_norm_backward(dy.reshape(x2.shape), x2, mean, inv_std, gamma, chunk)
    return dx2.reshape(x.shape), dgamma, dbeta


@pjit
def _batch_norm_infer(x2, gamma, beta, moving_mean, moving_var, eps, chunk):
    rows, c = x2.shape
    nchunks = (rows + chunk - 1) // chunk
    scale = np.empty(c, dtype=F32)
    for j in range(c):
        scale[j] = gamma[j] / np.sqrt(moving_var[j] + eps)
    y2 = np.empty_like(x2)
    for k in prange(nchunks):
        _normalize_chunk(x2, moving_mean, scale, beta, y2, k * chunk, min(rows, (k + 1) * chunk))
    return y2


def batch_norm_infer(x, gamma, beta, moving_mean, moving_var, eps):
    """Normalize float32 ``x`` with the moving statistics: ``(x - mean) / sqrt(var + eps) * gamma + beta``."""
    x2, chunk = _rows(x)
    return _batch_norm_infer(x2, gamma, beta, moving_mean, moving_var, F32(eps), chunk).reshape(x.shape)


def batch_norm_relu_train(x, gamma, beta, eps, cap=0.0):
    """:func:`batch_norm_train`, then ReLU capped at ``cap`` when ``cap > 0``, in place on its output (NumPy's
    clamps: the reference's bits) -> ``(y, mean, var, inv_std)``."""
    y, mean, var, inv_std = batch_norm_train(x, gamma, beta, eps)
    np.maximum(y, F32(0), out=y)
    if cap > 0:
        np.minimum(y, F32(cap), out=y)
    return y, mean, var, inv_std


def batch_norm_relu_backward(dy, y, x, mean, inv_std, gamma, cap=0.0):
    """Gradients of :func:`batch_norm_relu_train` from its output ``y`` -> ``(dx, dgamma, dbeta)``: the gradient
    passes where ``0 < y`` (and ``y < cap``), then :func:`batch_norm_backward`."""
    return batch_norm_backward(relu_cap_mask(dy, y, cap), x, mean, inv_std, gamma)
