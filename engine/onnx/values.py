"""The values an ONNX import passes between its converters (:mod:`.importer` walks the graph, :mod:`.import_ops`
converts each node): computed tensors, constants, and the two ways a node can fail; and the checks a damaged file
needs on them (initializers whose data does not fit their dims or type, non-finite weights, names not UTF-8)."""
import re

import numpy as np
from onnx import TensorProto, helper, numpy_helper

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


def layer_name_of(name):
    """ONNX name ``name`` with only the characters a layer name takes; a damaged file's name that is not UTF-8
    (protobuf then gives bytes) decoded with replacements."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)


class Unsupported(Exception):
    """This node cannot be converted: the message says why (attribute and value)."""


class _Broken(Exception):
    """An input comes from a node that could not be converted: skip this node without another report."""


BROKEN = object()


def type_name(code):
    """The name of ONNX element type ``code`` (``FLOAT``, ``UNDEFINED``...), or a phrase saying it is none."""
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return f"{code} (no ONNX type)"


def initializer_array(tensor):
    """The array of the initializer ``tensor``; :class:`Unsupported` naming it, and what its dims and data type
    need against what its data holds, when they do not fit (a damaged or hand-edited file)."""
    where = f"initializer '{tensor.name}'"
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise Unsupported(f"{where}: dims {dims}; expected non-negative sizes")
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, ValueError):
        raise Unsupported(f"{where}: data type {type_name(tensor.data_type)}; expected a tensor type such as "
                          f"FLOAT") from None
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # noqa: BLE001 - numpy's reshape and frombuffer errors, onnx's own checks
        count = int(np.prod(dims, dtype=np.float64))
        held = (f"{len(tensor.raw_data)} bytes of raw data" if tensor.HasField("raw_data") else
                f"{sum(len(getattr(tensor, f)) for f in _TYPED_FIELDS)} values")
        raise Unsupported(f"{where}: dims {dims} of {type_name(tensor.data_type)} need {count:.0f} "
                          f"values ({count * np.dtype(dtype).itemsize:.0f} bytes); its data holds {held} "
                          f"({type(exc).__name__}: {exc})") from None


_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def check_finite(array, what):
    """Raise :class:`Unsupported` if the float constant ``array`` (``what`` names it) holds NaN or infinity: weights
    and scales must be finite, or every prediction is NaN."""
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        raise Unsupported(f"{what} holds {len(bad)} non-finite value{'s' if len(bad) > 1 else ''} "
                          f"({array[tuple(bad[0])]} at index {tuple(int(i) for i in bad[0])}); expected finite "
                          f"numbers")


def text(value):
    """A string attribute as text (a damaged file's bytes need not be UTF-8: replaced, never an error)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def optional_const(cx, node, i, what):
    """Input ``i`` of ``node`` as a constant, or ``None`` where the node leaves that optional input out."""
    return cx.const(node, i, what) if i < len(node.input) and node.input[i] else None
