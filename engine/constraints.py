"""Weight constraints, applied to a weight right after each optimizer update (as Keras does)."""
import numpy as np

from .validation import check_float, invalid


class Constraint:
    """Base class: ``constraint(w)`` returns the projected weight (may work in place)."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}


class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to a norm of at most ``max_value``.

    The norm is taken over ``axis`` (Keras's default 0: for a Dense kernel ``(in, out)`` that is one vector per
    output unit; for a Conv2D kernel ``(kh, kw, in, out)`` use ``axis=[0, 1, 2]``). This is the constraint the
    dropout paper pairs with large learning rates: weights cannot grow without bound.
    """

    def __init__(self, max_value=2.0, axis=0):
        self.max_value = check_float(max_value, "max_value", 0.0, None, low_open=True, where="MaxNorm")
        if isinstance(axis, (list, tuple)):
            self.axis = tuple(int(a) for a in axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = int(axis)
        else:
            raise invalid("axis", "an int or a list of ints", axis, "MaxNorm")

    def __call__(self, w):
        norms = np.sqrt(np.sum(np.square(w, dtype=np.float32), axis=self.axis, keepdims=True))
        desired = np.clip(norms, 0.0, self.max_value)
        w *= (desired / (np.float32(1e-7) + norms)).astype(w.dtype)
        return w

    def get_config(self):
        return {"max_value": self.max_value, "axis": list(self.axis) if isinstance(self.axis, tuple) else self.axis}


max_norm = MaxNorm

_BY_NAME = {"max_norm": MaxNorm, "maxnorm": MaxNorm}


def get(identifier, arg="kernel_constraint"):
    """A Constraint from ``None``, a name, or an instance."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise invalid(arg, "None, 'max_norm' or a Constraint instance", identifier)
