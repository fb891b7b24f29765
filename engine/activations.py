"""Activation functions by name, each a forward returning ``(y, backprop)``.

ReLU is usually fused into the producing Conv2D/Dense kernel or into the following dropout by the executor; these
are the stand-alone versions. ``selu`` and ``tanh`` have no compiled kernel: NumPy computes them (into the
program's buffer in inference).
"""
import numpy as np

NAMES = ("linear", "relu", "softmax", "sigmoid", "tanh", "selu")

#: SELU's constants, as Keras's (Klambauer et al., 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(z, out=None):
    """``scale * z`` for ``z > 0``, ``scale * alpha * (exp(z) - 1)`` otherwise (Keras's ``selu``), in ``z``'s
    dtype; into ``out`` when given."""
    t = z.dtype.type
    neg = np.expm1(np.minimum(z, t(0)))
    neg *= t(SELU_SCALE * SELU_ALPHA)
    y = np.where(z > 0, z * t(SELU_SCALE), neg)
    if out is None:
        return y
    out[...] = y
    return out


def normalize(name, where=None):
    """``None`` -> "linear"; names are case-insensitive; unknown names raise a clear ValueError."""
    if name is None:
        return "linear"
    if isinstance(name, str) and name.lower() in NAMES:
        return name.lower()
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}Invalid value for `activation`: expected one of {NAMES} or None. Received: "
                     f"activation={name!r}")


def apply(ops, name, z):
    """Apply activation ``name`` to ``z``; return ``(y, backprop)`` with ``backprop(dy) -> dz``."""
    if name == "linear":
        return z, lambda dy: dy
    if name == "relu":
        y = ops.relu(z)
        return y, lambda dy: ops.relu_backward(dy, y)
    if name == "softmax":
        y = ops.softmax(z)
        return y, lambda dy: ops.softmax_backward(dy, y)
    if name == "sigmoid":
        y = ops.sigmoid(z)
        return y, lambda dy: ops.sigmoid_backward(dy, y)
    if name == "tanh":
        y = np.tanh(z)
        return y, lambda dy: dy * (1 - y * y)
    if name == "selu":  # d/dz: scale for z > 0, scale * alpha * exp(z) = y + scale * alpha otherwise
        y = selu(z)
        t = z.dtype.type
        return y, lambda dy: dy * np.where(z > 0, t(SELU_SCALE), y + t(SELU_SCALE * SELU_ALPHA))
    raise ValueError(f"unknown activation {name!r}")
