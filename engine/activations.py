"""Activation functions by name, each a forward returning ``(y, backprop)``.

ReLU is usually fused into the producing Conv2D/Dense kernel or into the following dropout by the executor; these
are the stand-alone versions.
"""
import numpy as np

NAMES = ("linear", "relu", "softmax", "sigmoid", "tanh")


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
    raise ValueError(f"unknown activation {name!r}")
