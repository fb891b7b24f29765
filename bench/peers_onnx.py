"""The ONNX Runtime peer: an ONNX graph built with ``onnx.helper`` from a dropcore model's weights.

The graph takes NHWC float32 input like dropcore, transposes to NCHW for Conv/MaxPool, and transposes back before
Flatten so the Dense (Gemm) weights keep Keras's channels-last flatten order. Dropout is the identity at inference
and is left out; the softmax head is kept, so outputs are probabilities like ``model.predict``.
"""
import numpy as np

from dropcore.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

from .models import window_pads

OPSET = 17
IR_VERSION = 8  # what onnxruntime >= 1.16 reads


def import_onnx():
    """``(onnx, onnxruntime)``, or an ImportError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError("ONNX Runtime is not installed: pip install 'dropcore[onnx]' (onnx, onnxruntime)") from e
    return onnx, onnxruntime


def to_onnx(model):
    """An ``onnx.ModelProto`` computing ``model.predict`` (inference mode) with the same weights."""
    onnx, _ = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    names = iter(range(1 << 30))

    def node(op, inputs, **attrs):
        out = f"t{next(names)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(arr, name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    shape = model.input_shape[1:]
    cur = node("Transpose", ["x"], perm=[0, 3, 1, 2])
    nchw = True
    layers = model.layers
    for i, la in enumerate(layers):
        out_shape = la.output_shape_for(shape)
        if isinstance(la, (Conv2D, MaxPooling2D)):
            k, (pt, pb), (pl, pr) = window_pads(la, shape)
            geo = dict(kernel_shape=list(k), strides=list(la.strides), pads=[pt, pl, pb, pr])
        if isinstance(la, Conv2D):
            inputs = [cur, const(la.weights["kernel"].transpose(3, 2, 0, 1), f"{la.name}_w")]
            if la.use_bias:
                inputs.append(const(la.weights["bias"], f"{la.name}_b"))
            cur = node("Conv", inputs, **geo)
        elif isinstance(la, MaxPooling2D):
            cur = node("MaxPool", [cur], **geo)
        elif isinstance(la, Dropout):
            pass  # the identity at inference
        elif isinstance(la, Flatten):
            cur = node("Flatten", [node("Transpose", [cur], perm=[0, 2, 3, 1])], axis=1)
            nchw = False
        elif isinstance(la, Dense):
            if nchw or len(shape) != 1:
                raise ValueError(f"{la.label}: the ONNX export supports Dense on flat (batch, features) input only")
            inputs = [cur, const(la.weights["kernel"], f"{la.name}_w")]
            if la.use_bias:
                inputs.append(const(la.weights["bias"], f"{la.name}_b"))
            cur = node("Gemm", inputs)
        else:
            raise ValueError(f"{la.label}: no ONNX equivalent in the benchmarks")
        act = getattr(la, "activation", "linear")
        if act == "relu":
            cur = node("Relu", [cur])
        elif act == "softmax":
            cur = node("Softmax", [cur], axis=-1)
        elif act != "linear":
            raise ValueError(f"{la.label}: activation {act!r} has no ONNX equivalent in the benchmarks")
        shape = out_shape
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *model.input_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *model.output_shape[1:]])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dropcore-bench")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


class OnnxPeer:
    """An ONNX Runtime CPU session on the exported model, with ``threads`` intra-op threads."""

    def __init__(self, model, threads):
        _, ort = import_onnx()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(to_onnx(model).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])

    def predict(self, x):
        return self.session.run(["y"], {"x": x})[0]


def version():
    try:
        onnx, ort = import_onnx()
    except ImportError:
        return None
    return f"{ort.__version__} (onnx {onnx.__version__})"
