"""Per-sample losses fused with their gradients (Numba): ``prange`` over samples, one serial row kernel each.

Same contract as :mod:`dropcore.kernels.reference.loss`: ``loss`` has shape ``(N,)`` and the gradient is that of
``loss.sum()`` (the engine divides by the batch size).
"""
import numpy as np
from numba import prange

from .config import FASTMATH, njit, pjit

F32 = np.float32
#: The softmax drivers compute ``log_s - (z[c] - max)``; with ``reassoc`` LLVM may turn it into
#: ``(log_s + max) - z[c]``, which loses everything below float32's ulp of ``max`` (3e-4 at logits of 1e4).
_NO_REASSOC = dict(fastmath=FASTMATH - {"reassoc"})


@njit
def _softmax_row(z, p):
    """Write ``softmax(z)`` into ``p``; return ``log(sum(exp(z - max)))`` and ``max`` (log-sum-exp = their sum)."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = F32(0.0)
    for k in range(z.shape[0]):
        e = np.exp(z[k] - m)
        p[k] = e
        s += e
    inv = F32(1.0) / s
    for k in range(z.shape[0]):
        p[k] *= inv
    return np.log(s), m


@pjit(**_NO_REASSOC)
def _softmax_xent(logits, labels):
    n = logits.shape[0]
    loss = np.empty(n, dtype=F32)
    grad = np.empty_like(logits)
    for i in prange(n):
        z, t, g = logits[i], labels[i], grad[i]
        log_s, m = _softmax_row(z, g)
        acc = F32(0.0)
        for k in range(z.shape[0]):
            # -t * log_softmax(z); written as t * (log_s - (z - m)) so t == 0 contributes exactly 0
            acc += t[k] * (log_s - (z[k] - m))
            g[k] -= t[k]
        loss[i] = acc
    return loss, grad


def softmax_cross_entropy(logits, labels):
    """Categorical cross-entropy on float32 ``(N, K)`` logits and float targets (rows sum to 1, e.g. one-hot).

    Returns ``(loss (N,), dlogits = softmax(logits) - labels)``.
    """
    return _softmax_xent(logits, labels)


@pjit(**_NO_REASSOC)
def _sparse_softmax_xent(logits, labels):
    n = logits.shape[0]
    loss = np.empty(n, dtype=F32)
    grad = np.empty_like(logits)
    for i in prange(n):
        z, g = logits[i], grad[i]
        log_s, m = _softmax_row(z, g)
        c = labels[i]
        loss[i] = log_s - (z[c] - m)
        g[c] -= F32(1.0)
    return loss, grad


def sparse_softmax_cross_entropy(logits, labels):
    """Cross-entropy on float32 ``(N, K)`` logits and integer class indices ``(N,)`` -> ``(loss, dlogits)``."""
    return _sparse_softmax_xent(logits, labels)


@pjit
def _sigmoid_bce(logits, targets):
    n, k = logits.shape
    loss = np.empty(n, dtype=F32)
    grad = np.empty_like(logits)
    inv_k = F32(1.0) / F32(k)
    for i in prange(n):
        z, t, g = logits[i], targets[i], grad[i]
        acc = F32(0.0)
        for j in range(k):
            zj = z[j]
            e = np.exp(-abs(zj))
            acc += max(zj, F32(0.0)) - zj * t[j] + np.log1p(e)
            # sigmoid without overflow: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) for z < 0
            sig = (F32(1.0) if zj >= F32(0.0) else e) / (F32(1.0) + e)
            g[j] = (sig - t[j]) * inv_k
        loss[i] = acc * inv_k
    return loss, grad


def sigmoid_binary_cross_entropy(logits, targets):
    """Binary cross-entropy on float32 ``(N, K)`` logits, mean over the last axis -> ``(loss, (sigmoid - t) / K)``."""
    return _sigmoid_bce(logits, targets)


@pjit
def _mse(y2, t2):
    n, k = y2.shape
    loss = np.empty(n, dtype=F32)
    grad = np.empty_like(y2)
    inv_k = F32(1.0) / F32(k)
    two_k = F32(2.0) / F32(k)
    for i in prange(n):
        y, t, g = y2[i], t2[i], grad[i]
        acc = F32(0.0)
        for j in range(k):
            d = y[j] - t[j]
            acc += d * d
            g[j] = d * two_k
        loss[i] = acc * inv_k
    return loss, grad


def mean_squared_error(y, targets):
    """Squared error averaged over every non-batch axis -> ``(loss (N,), dy = 2 (y - targets) / K)`` (float32)."""
    n = y.shape[0]
    loss, grad = _mse(y.reshape(n, -1), targets.reshape(n, -1))
    return loss, grad.reshape(y.shape)
