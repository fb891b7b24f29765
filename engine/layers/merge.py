"""Layers that merge several inputs."""
import numpy as np

from ..lowering import Kernel
from .base import Layer
from .registry import register


def _add_into(*args):
    *xs, y = args
    np.add(xs[0], xs[1], out=y)
    for x in xs[2:]:
        y += x


@register
class Add(Layer):
    """Element-wise sum of two or more inputs of the same shape (residual connections)."""

    n_inputs = None

    def build(self, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if len(shapes) < 2:
            raise ValueError(f"{self.label} needs at least 2 inputs, received {len(shapes)}")
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.label}: all inputs must have the same shape, received {shapes}")
        super().build(shapes)

    def ensure_built(self, input_shapes):
        if not self.built:
            self.build(input_shapes)
        elif [tuple(s) for s in input_shapes] != self.input_shape:
            raise ValueError(f"{self.label}: expected input shapes {self.input_shape}, received {input_shapes}")

    def output_shape_for(self, input_shapes):
        return tuple(input_shapes[0])

    def lower(self, lowering, step):
        return [Kernel("add", lambda shapes: (_add_into, tuple(shapes[0])))]

    def forward(self, ops, xs, ctx):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        n = len(xs)
        return y, lambda dy: [dy] * n
