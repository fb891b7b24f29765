"""Layers that merge several inputs: ``Add`` and ``Concatenate``, on the kernel contract's ``add`` and
``concatenate`` ops (a copy and a sum in NumPy's order: the same bits as NumPy's)."""
import numbers

from ..lowering import Kernel
from ..validation import invalid
from .base import Layer
from .registry import register


def _shapes(shapes):
    return ", ".join(f"(None, {', '.join(map(str, s))})" for s in shapes)


class _Merge(Layer):
    """Two or more inputs, whose shapes are fixed when the layer is built."""

    n_inputs = None

    def build(self, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if len(shapes) < 2:
            raise ValueError(f"{self.label} needs at least 2 inputs, received {len(shapes)}")
        self.check_shapes(shapes)
        super().build(shapes)

    def ensure_built(self, input_shapes):
        if not self.built:
            self.build(input_shapes)
        elif [tuple(s) for s in input_shapes] != self.input_shape:
            raise ValueError(f"{self.label}: expected input shapes {self.input_shape}, received {input_shapes}")


@register
class Add(_Merge):
    """Element-wise sum of two or more inputs of the same shape (residual connections)."""

    #: a sum of two inputs is a residual connection an inference program adds in the producing convolution's step
    residual_sum = True

    def check_shapes(self, shapes):
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.label}: all inputs must have the same shape, received {shapes}")

    def output_shape_for(self, input_shapes):
        return tuple(input_shapes[0])

    def lower(self, lowering, step):
        return [Kernel("add", lambda shapes: lowering.kernels.add_kernel(shapes))]

    def forward(self, ops, xs, ctx):
        n = len(xs)
        # d(x0 + x1 + ...)/dxi is the identity: every input receives dy itself, no copy
        return ops.add(list(xs)), lambda dy: [dy] * n


@register
class Concatenate(_Merge):
    """Two or more inputs joined along ``axis`` (Keras's: -1, the channels, by default; counted with the batch
    axis first, which cannot be concatenated); their shapes agree on every other axis."""

    def __init__(self, axis=-1, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or axis == 0:
            raise invalid("axis", "a non-zero int (axis 0 is the batch axis, which cannot be concatenated)", axis,
                          "Concatenate")
        self.axis = int(axis)

    def _axis(self, shapes):
        """The concatenation axis counted with the batch axis first, for samples of ``shapes``: in [1, rank]."""
        rank = len(shapes[0])
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            what = "is the batch axis, which cannot be concatenated," if axis == 0 else "is out of range"
            raise ValueError(f"{self.label}: axis {self.axis} {what} for inputs of shape {_shapes(shapes)}; "
                             f"expected an axis in [1, {rank}] or [-{rank}, -1]")
        return axis

    def check_shapes(self, shapes):
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"{self.label}: all inputs must have the same number of dimensions, received "
                             f"{_shapes(shapes)}")
        k = self._axis(shapes) - 1
        if len({s[:k] + s[k + 1:] for s in shapes}) != 1:
            raise ValueError(f"{self.label}: the inputs must have the same shape except on the concatenation axis "
                             f"({self.axis}), received {_shapes(shapes)}")

    def output_shape_for(self, input_shapes):
        k = self._axis(input_shapes) - 1
        out = list(input_shapes[0])
        out[k] = sum(s[k] for s in input_shapes)
        return tuple(out)

    @property
    def joins_channels(self):
        """Whether it joins image batches (N, H, W, C) along the channels: a layer that works on each channel on its
        own (``lower_parts``) can then read the parts instead (``fusion.POOL_OF_CONCAT``)."""
        shapes = self.input_shape if self.built else None
        return bool(shapes) and len(shapes[0]) == 3 and self._axis(shapes) == 3

    def lower(self, lowering, step):
        axis = self._axis(self.input_shape)

        return [Kernel("concatenate", lambda shapes: lowering.kernels.concatenate_kernel(shapes, axis))]

    def forward(self, ops, xs, ctx):
        axis = self._axis([x.shape[1:] for x in xs])
        shapes = [x.shape for x in xs]
        return ops.concatenate(list(xs), axis), lambda dy: list(ops.concatenate_backward(dy, shapes, axis))

    def get_config(self):
        return {"name": self.name, "axis": self.axis}
