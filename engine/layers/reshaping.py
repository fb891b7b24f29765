"""Layers that move values without computing on them: ``Reshape`` and ``ZeroPadding2D`` (Keras 3's; the padding
on the kernel contract's ``zero_pad2d`` op, a copy: the same bits as NumPy's)."""
import numbers

import numpy as np

from ..lowering import Kernel, view
from ..validation import check_choice, invalid
from .base import Layer
from .registry import register


def _shape(shape):
    return f"(None, {', '.join(map(str, shape))})"


@register
class Reshape(Layer):
    """Each sample to ``target_shape`` (batch omitted), in C order; one entry may be -1 (inferred, as Keras).
    In an inference program it is a view: no kernel runs, nothing is copied."""

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        expected = "a non-empty tuple of positive ints, one of which may be -1"
        if not isinstance(target_shape, (tuple, list)) or not target_shape or any(
                isinstance(d, bool) or not isinstance(d, numbers.Integral) or (d < 1 and d != -1)
                for d in target_shape):
            raise invalid("target_shape", expected, target_shape, "Reshape")
        if list(target_shape).count(-1) > 1:
            raise invalid("target_shape", expected + " (at most one -1)", target_shape, "Reshape")
        self.target_shape = tuple(int(d) for d in target_shape)

    def build(self, input_shape):
        self.output_shape_for(input_shape)
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        size, known = int(np.prod(input_shape)), int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 not in self.target_shape and known == size:
            return self.target_shape
        if -1 in self.target_shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        why = f"{size} is not a multiple of {known}" if -1 in self.target_shape else f"{known} values"
        raise ValueError(f"{self.label}: cannot reshape an input of shape {_shape(input_shape)} ({size} values a "
                         f"sample) to target_shape {self.target_shape} ({why})")

    def lower(self, lowering, step):
        target = self.output_shape_for(self.input_shape)
        return [view(lambda s: (s[0],) + target)]

    def forward(self, ops, x, ctx):
        shape = x.shape
        return x.reshape((shape[0],) + self.output_shape_for(shape[1:])), lambda dy: dy.reshape(shape)

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape)}


def _padding(padding):
    """Keras's forms -> ``((top, bottom), (left, right))`` of ints >= 0."""
    def count(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0

    if count(padding):
        return ((int(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(count(p) for p in padding):
            return tuple((int(p),) * 2 for p in padding)
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(count(v) for v in p) for p in padding):
            return tuple(tuple(int(v) for v in p) for p in padding)
    raise invalid("padding", "an int >= 0, a tuple of 2 such ints (height, width), or a tuple of 2 tuples of 2 "
                  "such ints ((top, bottom), (left, right))", padding, "ZeroPadding2D")


@register
class ZeroPadding2D(Layer):
    """Zero rows above and below, and zero columns left and right, of each ``(H, W, C)`` sample."""

    def __init__(self, padding=(1, 1), data_format=None, name=None):
        super().__init__(name)
        self.padding = _padding(padding)
        # dropcore is channels-last only: say so rather than pad the wrong axes
        self.data_format = check_choice("channels_last" if data_format is None else data_format, "data_format",
                                        ("channels_last",), "ZeroPadding2D")

    @property
    def zero_pads(self):
        return self.padding

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        (top, bottom), (left, right) = self.padding
        h, w, c = input_shape
        return (h + top + bottom, w + left + right, c)

    def lower(self, lowering, step):
        # before a convolution the padding is fused into it (fusion.py, zero_pads) and this step is not run
        return [Kernel(self.step_name, lambda shape: lowering.kernels.zero_pad2d_kernel(shape, self.padding))]

    def forward(self, ops, x, ctx):
        return ops.zero_pad2d(x, self.padding), lambda dy: ops.zero_pad2d_backward(dy, self.padding)

    def get_config(self):
        return {"name": self.name, "padding": [list(p) for p in self.padding], "data_format": self.data_format}
