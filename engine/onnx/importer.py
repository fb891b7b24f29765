"""ONNX -> dropcore: :func:`load` builds a dropcore model (uncompiled) from an ONNX file.

Each ONNX tensor the graph computes is a dropcore tensor plus how its axes map: ``axes[i]`` is the dropcore axis of
ONNX axis ``i`` (batch first in both). A PyTorch image tensor is NCHW in the ONNX graph and NHWC in dropcore:
``axes == (0, 3, 1, 2)``. A Transpose only changes that mapping, so it costs no layer: tf2onnx's pairs around each
convolution cancel, and the input transpose of an NHWC graph is absorbed. Flattening an NCHW tensor gives its values
in (C, H, W) order where dropcore's are (H, W, C): that order is kept with the flat tensor (``order``), and the
Dense (Gemm) reading it gets its kernel rows reordered. Per-op converters live in :mod:`.import_ops`; every node
that cannot be converted is reported, all at once, in one :class:`OnnxImportError`.
"""

import numpy as np
from onnx import helper

from ..layers.base import Input
from ..model import Model
from .errors import OnnxImportError
from .reading import checked, read
from .values import (BROKEN, NCHW, Const, Tensor, Unsupported, _Broken, check_finite, initializer_array,
                     layer_name_of, type_name)

class Context:
    """What the converters share: the opset, the values so far, consumer counts and layer naming."""

    def __init__(self, graph, opset):
        self.opset = opset
        self.values = {}
        self.uses = {}
        for node in graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        for out in graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self._names = set()
        #: the node being converted, and for each layer made, the nodes that made it (a Relu that went into the
        #: convolution before it included): what ``dropcore import`` reports
        self.node = None
        self.sources = {}
        self.batch = None  # the graph input's batch dimension when it is a fixed number
        #: ONNX shapes from onnx.shape_inference, for checks on a node whose input could not be converted
        self.inferred = {}
        for info in list(graph.value_info) + list(graph.input) + list(graph.output):
            dims = info.type.tensor_type.shape.dim
            self.inferred[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)

    def layer_name(self, node, suffix=""):
        base = layer_name_of(node.name or f"{node.op_type.lower()}_{_first(node.output)}") + suffix
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def sole_use(self, name):
        """Whether the value ``name`` feeds exactly one node (so its producer may change)."""
        return self.uses.get(name, 0) == 1

    def tensor(self, node, i):
        """Input ``i`` of ``node`` as a computed :class:`Tensor`."""
        v = self.value(node, i)
        if v is BROKEN:
            raise _Broken()
        if not isinstance(v, Tensor):
            raise Unsupported(f"input {i} ('{node.input[i]}') is a constant; dropcore computes this op on the "
                              f"data flowing from the model input only")
        return v

    def const(self, node, i, what, default=None):
        """Input ``i`` of ``node`` as a constant array (``default`` when the input is absent)."""
        if i >= len(node.input) or not node.input[i]:
            if default is None:
                raise Unsupported(f"needs its {what} (input {i})")
            return np.asarray(default)
        v = self.value(node, i)
        if v is BROKEN:
            raise _Broken()
        if not isinstance(v, Const):
            raise Unsupported(f"{what} (input '{node.input[i]}') must be a constant (an initializer), not computed")
        return v.array

    def image_size(self, node, i=0):
        """``(H, W)`` of input ``i`` (an NCHW image), from the converted tensor or else from shape inference;
        ``None`` when neither knows it."""
        v = self.value(node, i)
        if isinstance(v, Tensor):
            return v.onnx_shape[2:] if v.axes == NCHW else None
        dims = self.inferred.get(node.input[i], ())
        return dims[2:] if len(dims) == 4 and None not in dims[2:] else None

    def value(self, node, i):
        return self.values.get(node.input[i], BROKEN)

    def call(self, layer, inputs, weights=None):
        """``layer`` called on the symbolic ``inputs`` (a list for merges), then given ``weights``."""
        try:
            out = layer(inputs)
            if weights is not None:
                arrays = [np.asarray(w, np.float32) for w in weights]
                for key, array in zip(layer.weights, arrays):  # a NaN weight makes every prediction NaN
                    check_finite(array, f"weight '{key}' of the {type(layer).__name__} '{layer.name}'")
                layer.set_weights(arrays)
        except (ValueError, TypeError) as exc:
            raise Unsupported(str(exc)) from None
        made_by = self.sources.setdefault(layer.name, [])
        if self.node is not None and self.node not in made_by:
            made_by.append(self.node)
        return out


def _first(names):
    return names[0] if names else ""


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _label(node, index, opset):
    name = f"'{node.name}'" if node.name else f"#{index} (output '{_first(node.output)}')"
    return f"node {name} ({node.op_type}, opset {opset})"


def _graph_input(cx, graph, initializers, problems):
    """The dropcore Input for the graph's one data input; a 4-D one is NCHW unless only NHWC->NCHW Transposes
    read it (tf2onnx's and Keras's layout). Inputs only Dropout nodes read as their training_mode are not data."""
    def switch(name):  # a Dropout's training_mode input (dropcore's predict decides that): not data
        readers = [n for n in graph.node if name in n.input]
        return readers and all(n.op_type == "Dropout" and list(n.input).index(name) == 2 for n in readers)

    inputs = [i for i in graph.input if i.name not in initializers and not switch(i.name)]
    if len(inputs) != 1:
        problems.append(f"the graph has {len(inputs)} data inputs ({[i.name for i in inputs]}); dropcore models "
                        f"take exactly one")
        return None
    inp = inputs[0]
    ttype = inp.type.tensor_type
    if ttype.elem_type != 1:  # FLOAT
        problems.append(f"input '{inp.name}' has element type {type_name(ttype.elem_type)}; dropcore takes float32 "
                        f"(FLOAT)")
        return None
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in ttype.shape.dim]
    bad = [f"dimension {k} is {d!r}" for k, d in enumerate(dims[1:], 1) if not isinstance(d, int) or d < 1]
    if len(dims) < 2 or bad:
        problems.append(f"input '{inp.name}' has shape {dims}: " + ("; ".join(bad) or "no batch dimension")
                        + "; dropcore needs every dimension but the batch known")
        return None
    if isinstance(dims[0], int) and dims[0] > 0:
        cx.batch = dims[0]
    def readers(name):  # the nodes reading ``name``, seen through Identity and float Cast nodes (Keras's)
        found = []
        for n in graph.node:
            if name in n.input:
                through = n.op_type == "Identity" or (n.op_type == "Cast" and _attrs(n).get("to") == 1)
                found += readers(n.output[0]) if through else [n]
        return found

    readers = readers(inp.name)
    nhwc = len(dims) == 4 and readers and all(
        n.op_type == "Transpose" and list(_attrs(n).get("perm", [])) == [0, 3, 1, 2] for n in readers)
    if len(dims) == 4 and not nhwc:
        shape, axes = (dims[2], dims[3], dims[1]), NCHW
    else:
        shape, axes = tuple(dims[1:]), tuple(range(len(dims)))
    st = Input(shape, name=layer_name_of(inp.name) or "input")
    cx.values[inp.name] = Tensor(st, axes)
    return st


def from_proto(proto, name=None, where="ONNX model", report=None):
    """A dropcore Model from an ``onnx.ModelProto`` (see :func:`load`); ``where`` names it in errors. ``report``: a
    list that gets ``(node name, op type, [layer names])`` for each node, in the graph's order (the layers that
    node made or went into; none for a node that only relabels axes or computes constants)."""
    from . import import_ops

    proto = checked(proto, where)
    graph = proto.graph
    opsets = {o.domain: o.version for o in proto.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    cx = Context(graph, opset)
    initializers = {t.name for t in graph.initializer}
    problems = []
    for t in graph.initializer:
        try:
            cx.values[t.name] = Const(initializer_array(t))
        except Unsupported as exc:  # its readers are skipped: the initializer is the fault
            problems.append(str(exc))
            cx.values[t.name] = BROKEN
    source = _graph_input(cx, graph, initializers, problems)
    if source is None:
        raise OnnxImportError(f"cannot import {where}: {problems[0]}")
    for index, node in enumerate(graph.node):
        label = _label(node, index, opset if node.domain in ("", "ai.onnx") else opsets.get(node.domain, "?"))
        cx.node = (node.name or f"#{index}", node.op_type)
        try:
            if node.domain not in ("", "ai.onnx"):
                raise Unsupported(f"operator domain '{node.domain}' not supported")
            convert = import_ops.CONVERTERS.get(node.op_type)
            if convert is None:
                raise Unsupported("op type not supported")
            outs = convert(cx, node, _attrs(node))
            outs = outs if isinstance(outs, list) else [outs]
            extra = [o for o in node.output[len(outs):] if o and cx.uses.get(o)]
            if extra:
                raise Unsupported(f"its output '{extra[0]}' is used; dropcore computes only the first")
            for out, value in zip(node.output, outs):
                cx.values[out] = value
        except Unsupported as exc:
            problems.append(f"{label}: {exc}")
            cx.values.update((o, BROKEN) for o in node.output)
        except _Broken:
            cx.values.update((o, BROKEN) for o in node.output)
        except Exception as exc:  # noqa: BLE001 - a damaged or unexpected node is reported, never a crash
            problems.append(f"{label}: cannot be converted ({type(exc).__name__}: {exc})")
            cx.values.update((o, BROKEN) for o in node.output)
    outputs = list(graph.output)
    if len(outputs) != 1:
        problems.append(f"the graph has {len(outputs)} outputs; dropcore models have exactly one")
    else:
        result = cx.values.get(outputs[0].name, BROKEN)
        if isinstance(result, Const):
            problems.append(f"output '{outputs[0].name}' is a constant")
        elif isinstance(result, Tensor):
            _check_output(result, outputs[0], problems)
    if problems:
        raise OnnxImportError(f"cannot import {where}: {len(problems)} unsupported "
                              f"{'node' if len(problems) == 1 else 'nodes'}:\n  " + "\n  ".join(problems))
    model = Model(source, cx.values[outputs[0].name].st, name=name or graph.name or "onnx_model")
    if report is not None:
        kept = {la.name for la in model.layers}  # a layer remade with an activation: only the last one is kept
        for index, node in enumerate(graph.node):
            key = (node.name or f"#{index}", node.op_type)
            report.append(key + ([n for n, made_by in cx.sources.items() if key in made_by and n in kept],))
    return model


def _check_output(result, out, problems):
    """The converted output must hold the values ONNX computes (up to layout): same size, no pending order."""
    if result.order is not None:
        problems.append(f"output '{out.name}' is a flattened NCHW tensor in (C, H, W) order, which no dropcore "
                        f"layer can restore; end the graph with a Gemm/MatMul, or flatten NHWC data")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    if dims and len(dims) == len(result.axes):
        got = result.onnx_shape
        if any(d is not None and g is not None and d != g for d, g in zip(dims[1:], got[1:])):
            problems.append(f"output '{out.name}': ONNX declares shape {dims}, the conversion computes {list(got)}")


def load(path, name=None, report=None):
    """A built, uncompiled dropcore Model computing the ONNX model in the file at ``path``.

    Image inputs become NHWC (a PyTorch NCHW input of shape ``(N, C, H, W)`` takes ``(N, H, W, C)`` arrays in
    dropcore: transpose your data with ``x.transpose(0, 2, 3, 1)``). The batch dimension may be symbolic; every
    other dimension must be known. Dropout nodes become dropcore ``Dropout`` layers with their ratio, so
    ``predict(x, mc_samples=N, seed=S)`` runs Monte-Carlo dropout. Raises :class:`OnnxImportError` listing every
    node it cannot convert (name, op type, opset, the attribute at fault), and for a file that is malformed,
    truncated or whose external data lies outside its folder. ``report``: see :func:`from_proto` (what ``dropcore
    import`` prints).
    """
    return from_proto(read(path), name, where=f"ONNX model '{path}'", report=report)
