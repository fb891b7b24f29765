"""Batch normalization over every axis but the last (``(N, C)`` or ``(N, H, W, C)``), as in Keras.

The batch statistics are computed on data shifted by the first row: this keeps the two-pass variance accurate
when the mean is large compared to the spread, and makes a constant channel come out exactly (mean equal to the
constant, variance 0, ``y == beta``), whatever the rounding of a plain mean would be.
"""
import numpy as np


def batch_norm_train(x, gamma, beta, eps):
    """Normalize ``x`` with its batch statistics.

    Returns ``(y, mean, var, inv_std)``: ``var`` is the biased batch variance and ``inv_std = 1/sqrt(var + eps)``
    (all per channel, shape ``(C,)``); ``y = (x - mean) * inv_std * gamma + beta``.
    """
    axes = tuple(range(x.ndim - 1))
    shift = x.reshape(-1, x.shape[-1])[0]
    d = x - shift
    dmean = d.mean(axis=axes)
    dc = d - dmean
    var = np.mean(dc * dc, axis=axes)
    mean = shift + dmean
    inv_std = 1 / np.sqrt(var + eps)
    y = (x - mean) * (gamma * inv_std) + beta
    return y, mean, var, inv_std


def batch_norm_backward(dy, x, mean, inv_std, gamma):
    """Gradients of :func:`batch_norm_train` through the batch statistics.

    With ``M`` values per channel and ``xhat = (x - mean) * inv_std``: ``dbeta = sum(dy)``,
    ``dgamma = sum(dy * xhat)`` and ``dx = gamma * inv_std / M * (M * dy - dbeta - xhat * dgamma)``.
    Returns ``(dx, dgamma, dbeta)``.
    """
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = (gamma * inv_std / m) * (m * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def batch_norm_infer(x, gamma, beta, moving_mean, moving_var, eps):
    """Normalize ``x`` with the moving statistics: ``(x - moving_mean) / sqrt(moving_var + eps) * gamma + beta``."""
    scale = gamma / np.sqrt(moving_var + eps)
    return (x - moving_mean) * scale + beta


def _relu_cap(y, cap):
    """``max(y, 0)``, and ``min(.., cap)`` when ``cap > 0`` (a NaN passes)."""
    y = np.maximum(y, y.dtype.type(0))
    return np.minimum(y, y.dtype.type(cap)) if cap > 0 else y


def relu_cap_mask(dy, y, cap):
    """``dy`` where the ReLU (capped at ``cap`` when ``cap > 0``) that gave ``y`` passes its gradient (``0 < y``, and
    ``y < cap``), else 0: the derivative read from the output, which for these two is the input's."""
    keep = (y > 0) & (y < cap) if cap > 0 else y > 0
    return np.where(keep, dy, dy.dtype.type(0))


def batch_norm_relu_train(x, gamma, beta, eps, cap=0.0):
    """:func:`batch_norm_train` followed by ReLU, capped at ``cap`` when ``cap > 0`` (ReLU6: ``cap=6``):
    ``(relu(y), mean, var, inv_std)``. Training's BatchNormalization -> ReLU in one op, so that the fast sets clamp
    each value as it is normalized (no pass of its own over the batch)."""
    y, mean, var, inv_std = batch_norm_train(x, gamma, beta, eps)
    return _relu_cap(y, cap), mean, var, inv_std


def batch_norm_relu_backward(dy, y, x, mean, inv_std, gamma, cap=0.0):
    """Gradients of :func:`batch_norm_relu_train` from its output ``y``: :func:`batch_norm_backward` of
    :func:`relu_cap_mask` of ``dy`` -> ``(dx, dgamma, dbeta)``."""
    return batch_norm_backward(relu_cap_mask(dy, y, cap), x, mean, inv_std, gamma)
