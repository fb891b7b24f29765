"""dropcore -> ONNX: :func:`export` writes a built model as an ONNX file that onnxruntime runs.

Layout: the graph takes NHWC input as dropcore does and transposes it once to NCHW; every rank-3 (H, W, C) tensor
is NCHW inside the graph, and leaves it NHWC again. A Flatten of an NCHW tensor yields its values in (C, H, W) order
where dropcore's are in (H, W, C) order: rather than transposing back at run time, the exporter remembers that
order and permutes the rows of the next Dense (Gemm) kernel, the parameters of a BatchNormalization or Rescaling on
it; only where nothing can absorb it (an Add with a differently ordered tensor, a Reshape, the output) does a
Gather put the values back in dropcore's order. "same" padding becomes explicit pads (TensorFlow's rule).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..activations import SELU_ALPHA, SELU_SCALE
from ..graph import _toposort
from ..kernels.geometry import window_2d
from ..layers import block_dropout, conv, core, depthwise, dropout, elementwise, global_pooling, merge, noise
from ..layers import normalization, pooling, reshaping
from ..utils import atomic_write
from .errors import OnnxExportError

DEFAULT_OPSET = 17
#: Softmax on one axis (older opsets coerce to 2-D), Pad's pads and Dropout's ratio as inputs
MIN_OPSET = 13
#: the oldest IR version written: what onnxruntime 1.16 reads
MIN_IR_VERSION = 8
INPUT, OUTPUT, TRAINING = "input", "output", "training_mode"


class _Value:
    """A tensor of the graph being built: its ONNX name and dropcore sample shape (batch omitted). Rank-3 values
    are NCHW in the graph; ``order`` (rank 1 only) is where each ONNX element comes from in dropcore's flat order
    (``onnx[i] == dropcore[order[i]]``), ``None`` when they agree."""

    def __init__(self, name, shape, order=None):
        self.name, self.shape, self.order = name, tuple(shape), order


class _Builder:
    def __init__(self, opset, mc_dropout):
        self.opset, self.mc_dropout = opset, mc_dropout
        self.nodes, self.inits, self.inputs = [], [], []
        self._used = set()

    def fresh(self, base):
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def node(self, op, inputs, name, outputs=1, **attrs):
        """Add a node; its first output's name (the others, e.g. TopK's indices, are unused)."""
        out = self.fresh(name)
        extra = [self.fresh(f"{out}/{i}") for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op, inputs, [out, *extra], name=out, **attrs))
        return out

    def const(self, array, name, dtype=np.float32):
        name = self.fresh(name)
        self.inits.append(numpy_helper.from_array(np.array(array, dtype=dtype), name))  # 0-d stays 0-d
        return name

    def training_input(self):
        if not self.inputs:
            self.inputs.append(helper.make_tensor_value_info(TRAINING, TensorProto.BOOL, []))
        return TRAINING


# --- layout helpers ---------------------------------------------------------------------------------------------
def flat_order(shape):
    """The dropcore flat index of each element of an NCHW flatten of an (H, W, C) sample."""
    h, w, c = shape
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()


def _dropcore_order(g, v, name):
    """``v``'s ONNX name with its values laid out as dropcore's (NHWC; flat values in dropcore's order)."""
    if len(v.shape) == 3:
        return g.node("Transpose", [v.name], f"{name}/to_nhwc", perm=[0, 2, 3, 1])
    if v.order is not None:
        inverse = np.argsort(v.order)  # dropcore[j] == onnx[inverse[j]]
        return g.node("Gather", [v.name, g.const(inverse, f"{name}/order", np.int64)], f"{name}/reorder", axis=1)
    return v.name


def _in_graph_order(g, name, shape, label):
    """A value from a tensor in dropcore's layout: rank-3 ones go to NCHW."""
    if len(shape) == 3:
        return _Value(g.node("Transpose", [name], f"{label}/to_nchw", perm=[0, 3, 1, 2]), shape)
    return _Value(name, shape)


def _per_channel(v, values):
    """Per-channel parameters (dropcore's last axis) shaped to broadcast on ``v`` as the graph holds it."""
    values = np.asarray(values, dtype=np.float32)
    if values.size == 1:
        return values.reshape(())
    if len(v.shape) == 3:
        return values.reshape(-1, 1, 1)
    if v.order is not None:
        return values[v.order]
    return values


#: activations that are one ONNX op without attributes
_ONNX_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish", "softplus": "Softplus"}


def _activation(g, v, act, label, **params):
    """Activation ``act`` (with its parameters, ``activations.PARAMS``) on ``v``, as ONNX ops."""
    if act == "linear":
        return v
    node = lambda op, inputs, **attrs: _Value(g.node(op, inputs, f"{label}/{act}", **attrs), v.shape, v.order)  # noqa
    if act == "softmax":
        return node("Softmax", [v.name], axis=1 if len(v.shape) == 3 else -1)
    if act == "selu":
        return node("Selu", [v.name], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if act in _ONNX_OPS:
        return node(_ONNX_OPS[act], [v.name])
    if act == "leaky_relu":
        return node("LeakyRelu", [v.name], alpha=params.get("negative_slope", 0.2))
    if act == "elu":
        return node("Elu", [v.name], alpha=params.get("alpha", 1.0))
    if act == "hard_sigmoid":
        return node("HardSigmoid", [v.name], alpha=1 / 6, beta=0.5)
    if act == "relu6":
        return node("Clip", [v.name, g.const(0.0, f"{label}/min"), g.const(6.0, f"{label}/max")])
    if act == "silu":  # x * sigmoid(x), as PyTorch exports SiLU
        return node("Mul", [v.name, g.node("Sigmoid", [v.name], f"{label}/sigmoid")])
    if act == "mish":  # one op from opset 18; before, x * tanh(softplus(x)), as PyTorch writes it
        if g.opset >= 18:
            return node("Mish", [v.name])
        soft = g.node("Softplus", [v.name], f"{label}/softplus")
        return node("Mul", [v.name, g.node("Tanh", [soft], f"{label}/tanh")])
    if act == "gelu":
        if params.get("approximate"):
            raise OnnxExportError(f"{label}: gelu(approximate=True) has no ONNX export")
        if g.opset >= 20:
            return node("Gelu", [v.name])
        # x / 2 * (1 + erf(x / sqrt(2))), as PyTorch exports GELU before opset 20
        erf = g.node("Erf", [g.node("Mul", [v.name, g.const(1 / np.sqrt(2), f"{label}/c")], f"{label}/scaled")],
                     f"{label}/erf")
        half = g.node("Mul", [v.name, g.const(0.5, f"{label}/half")], f"{label}/half_x")
        return node("Mul", [half, g.node("Add", [erf, g.const(1.0, f"{label}/one")], f"{label}/cdf2")])
    if act == "clipped_relu":  # Keras's ReLU(max_value, negative_slope, threshold)
        hi, slope, t = params.get("max_value"), params.get("negative_slope", 0.0), params.get("threshold", 0.0)
        top = v.name if hi is None else g.node("Min", [v.name, g.const(hi, f"{label}/max")], f"{label}/min")
        below = g.node("Mul", [g.node("Sub", [v.name, g.const(t, f"{label}/threshold")], f"{label}/sub"),
                               g.const(slope, f"{label}/slope")], f"{label}/below")
        above = g.node("Greater", [v.name, g.const(t, f"{label}/t")], f"{label}/above")
        return node("Where", [above, top, below])
    raise OnnxExportError(f"{label}: activation {act!r} has no ONNX export")


def _pads(layer, window, shape):
    _, _, (top, bottom), (left, right) = window_2d(shape[0], shape[1], window, layer.strides, layer.padding)
    return [top, left, bottom, right]


# --- one function per layer class -------------------------------------------------------------------------------
def _conv2d(g, la, ins, shape):
    (x,) = ins
    inputs = [x.name, g.const(la.weights["kernel"].transpose(3, 2, 0, 1), f"{la.name}/kernel")]
    if la.use_bias:
        inputs.append(g.const(la.weights["bias"], f"{la.name}/bias"))
    grouped = {"group": la.groups} if la.groups > 1 else {}  # ONNX's layout is Keras's, transposed
    y = g.node("Conv", inputs, la.name, kernel_shape=list(la.kernel_size), strides=list(la.strides),
               dilations=list(la.dilation_rate), pads=_pads(la, la.effective_size, x.shape), **grouped)
    return _activation(g, _Value(y, shape), la.activation, la.name)


def _depthwise_node(g, la, x, bias):
    kh, kw, c, mult = la.weights["depthwise_kernel"].shape
    # ONNX's grouped convolution: output channel c * mult + m is filter (c, m), as in Keras
    w = la.weights["depthwise_kernel"].transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)
    inputs = [x.name, g.const(w, f"{la.name}/depthwise_kernel")] + bias
    size = ((kh - 1) * la.dilation_rate[0] + 1, (kw - 1) * la.dilation_rate[1] + 1)
    return g.node("Conv", inputs, f"{la.name}/depthwise" if not bias else la.name, group=c,
                  kernel_shape=[kh, kw], strides=list(la.strides), dilations=list(la.dilation_rate),
                  pads=_pads(la, size, x.shape))


def _depthwise_conv2d(g, la, ins, shape):
    bias = [g.const(la.weights["bias"], f"{la.name}/bias")] if la.use_bias else []
    y = _depthwise_node(g, la, ins[0], bias)
    return _activation(g, _Value(y, shape), la.activation, la.name)


def _separable_conv2d(g, la, ins, shape):
    h = _depthwise_node(g, la, ins[0], [])
    inputs = [h, g.const(la.weights["pointwise_kernel"].transpose(3, 2, 0, 1), f"{la.name}/pointwise_kernel")]
    if la.use_bias:
        inputs.append(g.const(la.weights["bias"], f"{la.name}/bias"))
    y = g.node("Conv", inputs, f"{la.name}/pointwise", kernel_shape=[1, 1])
    return _activation(g, _Value(y, shape), la.activation, la.name)


def _pool(op, **extra):
    def convert(g, la, ins, shape):
        (x,) = ins
        y = g.node(op, [x.name], la.name, kernel_shape=list(la.pool_size), strides=list(la.strides),
                   pads=_pads(la, la.pool_size, x.shape), **extra)
        return _Value(y, shape)
    return convert


def _global_pool(op):
    def convert(g, la, ins, shape):
        y = g.node(op, [ins[0].name], la.name)  # (N, C, 1, 1): keepdims's (1, 1, C) held NCHW
        return _Value(y if la.keepdims else g.node("Flatten", [y], f"{la.name}/flatten", axis=1), shape)
    return convert


def _batch_norm(g, la, ins, shape):
    """ONNX's BatchNormalization normalizes axis 1: NCHW images and flat values have their channels there; other
    ranks (channels last, as dropcore) are transposed around it."""
    (x,) = ins
    wt, rank = la.weights, len(shape) + 1
    params = [g.const(_per_channel(x, wt[k]).reshape(-1), f"{la.name}/{k}")
              for k in ("gamma", "beta", "moving_mean", "moving_variance")]
    src, channels_at_1 = x.name, len(shape) in (1, 3)
    if not channels_at_1:
        src = g.node("Transpose", [src], f"{la.name}/channels_first", perm=[0, rank - 1, *range(1, rank - 1)])
    y = g.node("BatchNormalization", [src] + params, la.name, epsilon=la.epsilon, momentum=la.momentum)
    if not channels_at_1:
        y = g.node("Transpose", [y], f"{la.name}/channels_last", perm=[0, *range(2, rank), 1])
    return _Value(y, shape, x.order)


def _dense(g, la, ins, shape):
    (x,) = ins
    w, b = la.weights["kernel"], la.weights.get("bias")
    if len(x.shape) == 1:
        kernel = w if x.order is None else w[x.order]  # row i of the Gemm meets ONNX element i
        inputs = [x.name, g.const(kernel, f"{la.name}/kernel")]
        if b is not None:
            inputs.append(g.const(b, f"{la.name}/bias"))
        y = _Value(g.node("Gemm", inputs, la.name), shape)
    else:  # on the last axis of a higher-rank input: in dropcore's layout
        y = g.node("MatMul", [_dropcore_order(g, x, la.name), g.const(w, f"{la.name}/kernel")], f"{la.name}/matmul")
        if b is not None:
            y = g.node("Add", [y, g.const(b, f"{la.name}/bias")], la.name)
        y = _in_graph_order(g, y, shape, la.name)
    return _activation(g, y, la.activation, la.name)


def _flatten(g, la, ins, shape):
    (x,) = ins
    if len(x.shape) == 1:
        return x
    y = g.node("Flatten", [x.name], la.name, axis=1)
    return _Value(y, shape, flat_order(x.shape) if len(x.shape) == 3 else None)


def _activation_layer(g, la, ins, shape):
    return _activation(g, ins[0], la.activation, la.name, **la.params)


def _same_order(g, la, ins):
    """``ins`` with flat values brought to dropcore's order unless they all share one."""
    if len({None if v.order is None else v.order.tobytes() for v in ins}) == 1:
        return ins
    return [_Value(_dropcore_order(g, v, f"{la.name}/{i}"), v.shape) for i, v in enumerate(ins)]


def _add(g, la, ins, shape):
    ins = _same_order(g, la, ins)
    y = g.node("Add" if len(ins) == 2 else "Sum", [v.name for v in ins], la.name)
    return _Value(y, shape, ins[0].order)


def _concatenate(g, la, ins, shape):
    ins = [_Value(_dropcore_order(g, v, f"{la.name}/{i}"), v.shape) if v.order is not None else v
           for i, v in enumerate(ins)]
    axis = la._axis([v.shape for v in ins])
    if len(shape) == 3:
        axis = {1: 2, 2: 3, 3: 1}[axis]  # NHWC axis -> NCHW axis
    return _Value(g.node("Concat", [v.name for v in ins], la.name, axis=axis), shape)


def _reshape(g, la, ins, shape):
    x = _dropcore_order(g, ins[0], la.name)
    y = g.node("Reshape", [x, g.const([-1, *shape], f"{la.name}/shape", np.int64)], f"{la.name}/reshape")
    return _in_graph_order(g, y, shape, la.name)


def _zero_padding(g, la, ins, shape):
    (top, bottom), (left, right) = la.padding
    pads = g.const([0, 0, top, left, 0, 0, bottom, right], f"{la.name}/pads", np.int64)
    return _Value(g.node("Pad", [ins[0].name, pads], la.name, mode="constant"), shape)


def _rescaling(g, la, ins, shape):
    x = ins[0]
    y = g.node("Mul", [x.name, g.const(_per_channel(x, la.scale), f"{la.name}/scale")], f"{la.name}/scale")
    if np.any(np.asarray(la.offset) != 0):
        y = g.node("Add", [y, g.const(_per_channel(x, la.offset), f"{la.name}/offset")], la.name)
    return _Value(y, shape, x.order)


def _dropout(g, la, ins, shape):
    """The identity at inference; with ``mc_dropout``, ONNX Dropout with the graph's ``training_mode`` input."""
    x = ins[0]
    if not g.mc_dropout:
        return x
    if type(la) is not dropout.Dropout or la.noise_shape is not None:
        what = f"noise_shape {la.noise_shape}" if type(la) is dropout.Dropout else "its noise"
        raise OnnxExportError(f"{la.label}: ONNX Dropout draws one mask bit per element, so {what} has no ONNX "
                              f"equivalent with mc_dropout=True; export with mc_dropout=False (the identity "
                              f"at inference)")
    ratio = g.const(np.float32(la.rate), f"{la.name}/ratio")
    return _Value(g.node("Dropout", [x.name, ratio, g.training_input()], la.name), shape, x.order)


def _max_pooling_dropout(g, la, ins, shape):
    """Inference: each window's values sorted (TopK, descending; padding is -inf, last) weighted by ``q * rate**j``
    for the j-th largest of its ``n`` real values, 0 for padding: the layer's probabilistic weighted pooling."""
    if g.mc_dropout:
        raise OnnxExportError(f"{la.label}: its training rule (max pooling over randomly dropped inputs) has no "
                              f"ONNX equivalent with mc_dropout=True; export with mc_dropout=False")
    (x,) = ins
    (ph, pw), (sh, sw), k = la.pool_size, la.strides, la.pool_size[0] * la.pool_size[1]
    oh, ow, (top, bottom), (left, right) = window_2d(x.shape[0], x.shape[1], la.pool_size, la.strides, la.padding)
    src = x.name
    if top + bottom + left + right:
        pads = g.const([0, 0, top, left, 0, 0, bottom, right], f"{la.name}/pads", np.int64)
        src = g.node("Pad", [src, pads, g.const(np.float32(-np.inf), f"{la.name}/pad_value")], f"{la.name}/pad")
    taps = []  # (N, C, 1, OH, OW) each: window position i * pw + j of every window
    for i in range(ph):
        for j in range(pw):
            part = g.node("Slice", [src, g.const([i, j], f"{la.name}/starts", np.int64),
                                    g.const([i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1], f"{la.name}/ends",
                                            np.int64),
                                    g.const([2, 3], f"{la.name}/axes", np.int64),
                                    g.const([sh, sw], f"{la.name}/steps", np.int64)], f"{la.name}/tap")
            taps.append(g.node("Unsqueeze", [part, g.const([2], f"{la.name}/axis", np.int64)], f"{la.name}/tap"))
    windows = g.node("Concat", taps, f"{la.name}/windows", axis=2)
    ranked = g.node("TopK", [windows, g.const([k], f"{la.name}/k", np.int64)], f"{la.name}/sorted", outputs=2,
                    axis=2)
    # the real (unpadded) count of each window, as the kernels' weights count them (reference.dropout.pool_weights)
    real = la._windows(np.ones((1, *x.shape[:2], 1), dtype=bool), False)[0, ..., 0, :]  # (OH, OW, K)
    n = real.sum(axis=-1)[None]  # (1, OH, OW)
    position = np.arange(k)[:, None, None]
    weights = np.where(position < n, (1.0 - la.rate) * np.power(la.rate, position), 0.0)  # (K, OH, OW)
    kept = g.node("Where", [g.const(weights != 0, f"{la.name}/real", np.bool_), ranked,
                            g.const(np.float32(0), f"{la.name}/zero")], f"{la.name}/real")  # no -inf * 0
    weighted = g.node("Mul", [kept, g.const(weights, f"{la.name}/weights")], f"{la.name}/weighted")
    y = g.node("ReduceSum", [weighted, g.const([2], f"{la.name}/sum_axis", np.int64)], la.name, keepdims=0)
    return _Value(y, shape)


CONVERTERS = {
    conv.Conv2D: _conv2d, depthwise.DepthwiseConv2D: _depthwise_conv2d, depthwise.SeparableConv2D: _separable_conv2d,
    pooling.MaxPooling2D: _pool("MaxPool"), pooling.AveragePooling2D: _pool("AveragePool", count_include_pad=0),
    global_pooling.GlobalAveragePooling2D: _global_pool("GlobalAveragePool"),
    global_pooling.GlobalMaxPooling2D: _global_pool("GlobalMaxPool"),
    normalization.BatchNormalization: _batch_norm, core.Dense: _dense, core.Flatten: _flatten,
    core.Activation: _activation_layer, core.ReLU: _activation_layer, core.Softmax: _activation_layer,
    elementwise.LeakyReLU: _activation_layer, elementwise.ELU: _activation_layer, elementwise.Rescaling: _rescaling,
    merge.Add: _add,
    merge.Concatenate: _concatenate, reshaping.Reshape: _reshape, reshaping.ZeroPadding2D: _zero_padding,
    dropout.Dropout: _dropout, dropout.SpatialDropout2D: _dropout, noise.GaussianDropout: _dropout,
    noise.GaussianNoise: _dropout, noise.AlphaDropout: _dropout, block_dropout.DropBlock2D: _dropout,
    block_dropout.MaxPoolingDropout2D: _max_pooling_dropout,
}


def _check_opset(opset):
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"export: Invalid value for `opset`: expected an int in [{MIN_OPSET}, {newest}]. "
                              f"Received: opset={opset!r}")
    return opset


def to_proto(model, opset=DEFAULT_OPSET, mc_dropout=False):
    """The ``onnx.ModelProto`` of built ``model`` (see :func:`export`), checked by ``onnx.checker`` (full check)."""
    opset = _check_opset(opset)
    if not isinstance(mc_dropout, bool):
        raise OnnxExportError(f"export: Invalid value for `mc_dropout`: expected a bool. Received: "
                              f"mc_dropout={mc_dropout!r}")
    if getattr(model, "_outputs", None) is None:
        raise OnnxExportError(f"export: model '{getattr(model, 'name', model)}' is not built: give it an Input")
    g = _Builder(opset, mc_dropout)
    g._used.update((INPUT, OUTPUT, TRAINING))
    source = model.input
    values = {source.id: _in_graph_order(g, INPUT, source.shape, "input")}
    for t in _toposort(model.output):
        if t.layer is None:
            continue
        convert = CONVERTERS.get(type(t.layer))
        if convert is None:
            raise OnnxExportError(f"{t.layer.label}: no ONNX equivalent (the exporter converts "
                                  f"{', '.join(sorted(c.__name__ for c in CONVERTERS))})")
        values[t.id] = convert(g, t.layer, [values[p.id] for p in t.inputs], t.shape)
    last = values[model.output.id]
    g.nodes.append(helper.make_node("Identity", [_dropcore_order(g, last, "output")], [OUTPUT], name=OUTPUT))
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *source.shape])] + g.inputs,
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", *model.output.shape])],
        initializer=g.inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="dropcore")
    proto.ir_version = max(MIN_IR_VERSION, helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=DEFAULT_OPSET, mc_dropout=False):
    """Write built dropcore ``model`` to ``path`` as an ONNX model (opset ``opset``, at least 13).

    The ONNX graph takes the same NHWC float32 input (named "input", any batch size) and gives the same output
    ("output") as ``model.predict``. Dropout-family layers are the identity, as at inference. With
    ``mc_dropout=True`` each plain ``Dropout`` becomes an ONNX ``Dropout`` with its rate, driven by a boolean graph
    input "training_mode" (true: drop, for Monte-Carlo dropout with onnxruntime's own random masks; onnxruntime's
    graph optimizer removes Dropout nodes unless the session is made with
    ``disabled_optimizers=["EliminateDropout"]``); dropout layers whose noise ONNX cannot draw (SpatialDropout2D,
    noise_shape, DropBlock2D, GaussianDropout, GaussianNoise, AlphaDropout, MaxPoolingDropout2D's training rule)
    are then refused with an :class:`OnnxExportError` naming the layer, as is a layer class the exporter does not
    know. Without ``mc_dropout``, MaxPoolingDropout2D exports its inference rule (probabilistic weighted pooling).
    Returns the ``onnx.ModelProto`` written.
    """
    proto = to_proto(model, opset, mc_dropout)
    with atomic_write(path) as f:  # a failed write never leaves half a file under the name asked for
        onnx.save_model(proto, f, format="protobuf")
    return proto
