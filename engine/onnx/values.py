"""The values an ONNX import passes between its converters (:mod:`.importer` walks the graph, :mod:`.import_ops`
converts each node): computed tensors, constants, and the two ways a node can fail."""
import numpy as np

NCHW = (0, 3, 1, 2)  # ONNX NCHW axes as dropcore NHWC axes


class Tensor:
    """A computed value: its dropcore symbolic tensor, axis mapping, flat ``order`` (``onnx[i] ==
    dropcore[order[i]]``, rank-2 ONNX values only; ``None``: the same order) and ``remake``: rebuilders of the layer
    that produced it with changed arguments (``{"activation": f, "bias": f, ...}``), usable while this value has
    no other consumer, so a Relu or a bias Add after it goes into the same layer."""

    def __init__(self, st, axes, order=None, remake=None):
        self.st, self.axes, self.order, self.remake = st, tuple(axes), order, remake or {}

    @property
    def onnx_shape(self):
        full = (None,) + tuple(self.st.shape)
        return tuple(full[a] for a in self.axes)


class Const:
    """A constant (initializer or Constant node): its array."""

    def __init__(self, array):
        self.array = np.asarray(array)


class Unsupported(Exception):
    """This node cannot be converted: the message says why (attribute and value)."""


class _Broken(Exception):
    """An input comes from a node that could not be converted: skip this node without another report."""


BROKEN = object()
