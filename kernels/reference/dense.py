"""Dense (fully connected) layer: ``y = x @ w + b`` with an optional fused ReLU. Kernel layout ``(in, out)``."""
import numpy as np


def dense(x, w, b, relu=False):
    """Forward pass of a dense layer.

    ``x`` is ``(N, in)``, ``w`` is ``(in, out)``, ``b`` is ``(out,)`` or ``None``; ``relu=True`` applies ReLU to
    the output. Returns ``y`` of shape ``(N, out)`` in the input dtype.
    """
    y = x @ w
    if b is not None:
        y += b
    if relu:
        np.maximum(y, 0, out=y)
    return y


def dense_backward(dy, x, w, has_bias):
    """Gradients of a dense layer (without ReLU: for a fused ReLU the caller masks ``dy`` first).

    Returns ``(dx, dw, db)`` with ``dx = dy @ w.T``, ``dw = x.T @ dy`` and ``db = dy.sum(0)`` (``None`` when
    ``has_bias`` is false).
    """
    dx = dy @ w.T
    dw = x.T @ dy
    db = dy.sum(axis=0) if has_bias else None
    return dx, dw, db
