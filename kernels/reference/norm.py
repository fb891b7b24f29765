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
