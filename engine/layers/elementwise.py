"""Element-wise layers with fixed constants and no weights (Keras 3's): the parameterized activations ``LeakyReLU``
and ``ELU``, and ``Rescaling``, all on the kernel contract's ops."""
import numbers
import warnings

import numpy as np

from ..lowering import Kernel
from ..validation import check_float, invalid
from .base import Layer
from .core import Activation
from .registry import register


@register
class LeakyReLU(Activation):
    """``x`` where ``x >= 0``, else ``negative_slope * x``; the gradient is 1 or ``negative_slope`` (at 0 the slope,
    as PyTorch and TensorFlow): the contract's ``leaky_relu`` op.

    ``alpha`` is Keras 2's name for ``negative_slope``: as Keras 3, it is taken, with a deprecation warning, and
    wins over ``negative_slope``; a model file holds ``negative_slope`` only.
    """

    def __init__(self, negative_slope=0.3, name=None, **kwargs):
        unknown = sorted(set(kwargs) - {"alpha"})
        if unknown:
            raise TypeError(f"LeakyReLU got an unexpected keyword argument {unknown[0]!r}")
        if "alpha" in kwargs:
            warnings.warn("LeakyReLU: argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
            negative_slope = kwargs["alpha"]
        super().__init__("leaky_relu", name)
        self.negative_slope = check_float(negative_slope, "negative_slope", 0.0, None, where="LeakyReLU")
        self.params = {"negative_slope": self.negative_slope}

    def get_config(self):
        return {"name": self.name, "negative_slope": self.negative_slope}


@register
class ELU(Activation):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (Keras's ``ELU``): the contract's ``elu`` op."""

    def __init__(self, alpha=1.0, name=None):
        super().__init__("elu", name)
        self.alpha = check_float(alpha, "alpha", None, None, where="ELU")
        self.params = {"alpha": self.alpha}

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


def _constant(value, arg):
    """A finite float, or a list of finite floats (one per channel, broadcast over the last axis)."""
    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))

    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if real(value):
        return float(value)
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else []
    if not items or not all(real(v) for v in items):
        raise invalid(arg, "a finite float or a non-empty list of finite floats (one per channel, the last axis)",
                      value, "Rescaling")
    return [float(v) for v in items]


@register
class Rescaling(Layer):
    """``x * scale + offset`` (Keras 3's ``Rescaling``: e.g. ``scale=1/255`` maps [0, 255] to [0, 1]).

    ``scale`` and ``offset`` are floats or lists of floats, one per channel (the last axis; a list of one value
    broadcasts). The arithmetic is in the input's precision, as Keras casts both to the layer's dtype: the
    contract's ``rescale`` op, rounded as NumPy's ``x * scale + offset`` (the same bits).
    """

    def __init__(self, scale, offset=0.0, name=None):
        super().__init__(name)
        self.scale = _constant(scale, "scale")
        self.offset = _constant(offset, "offset")

    def build(self, input_shape):
        channels = input_shape[-1]
        for arg in ("scale", "offset"):
            value = getattr(self, arg)
            if isinstance(value, list) and len(value) not in (1, channels):
                raise ValueError(f"{self.label}: `{arg}` has {len(value)} values; an input of shape (None, "
                                 f"{', '.join(map(str, input_shape))}) takes 1 or {channels} (one per channel)")
        super().build(input_shape)

    def lower(self, lowering, step):
        return [Kernel(self.step_name, lambda shape: lowering.kernels.rescale_kernel(shape, self.scale, self.offset))]

    def forward(self, ops, x, ctx):
        return ops.rescale(x, self.scale, self.offset), lambda dy: ops.rescale_backward(dy, self.scale)

    def get_config(self):
        return {"name": self.name, "scale": self.scale, "offset": self.offset}
