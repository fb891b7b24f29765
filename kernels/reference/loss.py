"""Per-sample losses fused with their gradient w.r.t. the logits (or predictions); the engine averages.

Every function returns ``(loss, grad)`` with ``loss`` of shape ``(N,)`` and ``grad`` the gradient of
``loss.sum()``: the division by the batch size is left to the caller.
"""
import numpy as np


def _log_softmax(logits):
    """``(logits - lse, exp(logits - max))`` with the log-sum-exp taken after subtracting the row maximum."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    return z - np.log(s), e / s


def softmax_cross_entropy(logits, labels):
    """Categorical cross-entropy on ``(N, K)`` logits and float targets ``labels`` (rows sum to 1, e.g. one-hot).

    Returns ``(loss, dlogits)``: ``loss[n] = -sum_k labels[n, k] * log_softmax(logits)[n, k]`` and
    ``dlogits = softmax(logits) - labels``. Stable for any finite logits.
    """
    logp, p = _log_softmax(logits)
    loss = -(labels * logp).sum(axis=-1)
    return loss, p - labels


def sparse_softmax_cross_entropy(logits, labels):
    """Cross-entropy on ``(N, K)`` logits and integer class indices ``labels`` of shape ``(N,)``.

    Same as :func:`softmax_cross_entropy` with one-hot targets, without building them.
    """
    logp, p = _log_softmax(logits)
    rows = np.arange(logits.shape[0])
    loss = -logp[rows, labels]
    p[rows, labels] -= 1
    return loss, p


def sigmoid_binary_cross_entropy(logits, targets):
    """Binary cross-entropy on logits, averaged over the last axis (Keras) -> ``(loss (N,), dlogits)``.

    Uses ``max(z, 0) - z * t + log1p(exp(-|z|))`` so that large ``|z|`` neither overflows nor takes the log of 0;
    ``dlogits = (sigmoid(z) - t) / K``.
    """
    k = logits.shape[-1]
    e = np.exp(-np.abs(logits))
    elem = np.maximum(logits, 0) - logits * targets + np.log1p(e)
    # sigmoid without overflow: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) for z < 0; both are r/(1+e) with e = e^-|z|.
    sig = np.where(logits >= 0, 1, e) / (1 + e)
    return elem.mean(axis=-1), (sig - targets) / k


def mean_squared_error(y, targets):
    """Squared error averaged over every non-batch axis -> ``(loss (N,), dy = 2 (y - targets) / K)``."""
    k = y.size // y.shape[0]
    diff = y - targets
    loss = (diff * diff).reshape(y.shape[0], -1).mean(axis=1)
    return loss, diff * (2 / k)
