"""The importer on graphs built with onnx.helper: tf2onnx's transposes, folded constants, and every refusal."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running ONNX models needs onnxruntime (dropcore[onnx])")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import dropcore  # noqa: E402
import dropcore.zoo  # noqa: E402
import dropcore.onnx as dx  # noqa: E402

RNG = np.random.default_rng(0)


def weights(*shape):
    return RNG.normal(0, 0.3, shape).astype(np.float32)


def model(nodes, inits, in_shape, out_shape=("N", 4, 7, 7), opset=17, in_name="x"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    return proto


def run_onnx(proto, x):
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_tf2onnx_transpose_pairs_cancel():
    """An NHWC graph as tf2onnx writes it: each NCHW op wrapped in Transposes; the input's one is absorbed."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t0", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("MaxPool", ["t2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["t3"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t3", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w2"], ["m"]),
        helper.make_node("Add", ["m", "b2"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=-1),
    ]
    inits = {"w": weights(4, 3, 3, 3), "b": weights(4), "shape": np.array([-1, 64], np.int64),
             "w2": weights(64, 5), "b2": weights(5)}
    proto = model(nodes, inits, ["N", 8, 8, 3], ["N", 5])
    m = dx.from_proto(proto)
    assert m.input_shape == (None, 8, 8, 3)  # already NHWC: taken as it is
    assert [type(la).__name__ for la in m.layers] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    dense = m.layers[-1]
    assert dense.activation == "softmax" and dense.use_bias  # MatMul + Add + Softmax: one layer
    x = RNG.normal(size=(7, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), run_onnx(proto, x), rtol=0, atol=1e-4)


def test_nchw_flatten_reorders_dense_rows_and_constants_fold():
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["s"]),
        helper.make_node("Sub", ["s", "mean"], ["n"]),
        helper.make_node("Conv", ["n", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("LeakyRelu", ["c"], ["l"], alpha=0.1),
        helper.make_node("Flatten", ["l"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], transB=1, alpha=0.5),
        helper.make_node("Tanh", ["g"], ["y"]),
    ]
    inits = {"scale": np.float32(1 / 255), "mean": np.array([0.1, 0.2, 0.3], np.float32).reshape(1, 3, 1, 1),
             "w": weights(5, 3, 3, 3), "w2": weights(4, 5 * 4 * 5), "b2": weights(4)}
    proto = model(nodes, inits, ["N", 3, 7, 9], ["N", 4])
    m = dx.from_proto(proto)
    assert m.input_shape == (None, 7, 9, 3)
    x = RNG.uniform(0, 255, size=(7, 3, 7, 9)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x.transpose(0, 2, 3, 1)), run_onnx(proto, x), rtol=0, atol=1e-4)


BAD = {
    "groups that do not fit": (helper.make_node("Conv", ["x", "wg"], ["o"], name="Conv_12", group=3),
                               "node 'Conv_12' (Conv, opset 17): group=3 with weights [4, 2, 3, 3] does not fit 4 "
                               "input channels"),
    "ceil_mode": (helper.make_node("MaxPool", ["x"], ["o"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                                   ceil_mode=1),
                  "node 'pool' (MaxPool, opset 17): ceil_mode=1 not supported"),
    "SAME_LOWER": (helper.make_node("Conv", ["x", "w"], ["o"], name="lower", auto_pad="SAME_LOWER", strides=[2, 2]),
                   "node 'lower' (Conv, opset 17): auto_pad=SAME_LOWER not supported"),
    "unknown op": (helper.make_node("Hardmax", ["x"], ["o"], name="hm"),
                   "node 'hm' (Hardmax, opset 17): op type not supported"),
}
BAD_INITS = {"wg": weights(4, 2, 3, 3), "w": weights(4, 4, 3, 3)}


@pytest.mark.parametrize("case", BAD)
def test_unsupported_node_is_named(case):
    node, message = BAD[case]
    proto = model([node, helper.make_node("Identity", ["o"], ["y"])], BAD_INITS, ["N", 4, 7, 7])
    with pytest.raises(dx.OnnxImportError, match="1 unsupported node") as info:
        dx.from_proto(proto)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_unsupported_node_is_listed():
    nodes = []
    for i, (node, _) in enumerate(BAD.values()):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.output[0] = f"o{i}"
        nodes.append(copy)
    nodes.append(helper.make_node("Concat", [f"o{i}" for i in range(len(BAD))], ["y"], axis=1))
    proto = model(nodes, BAD_INITS, ["N", 4, 7, 7])
    with pytest.raises(dx.OnnxImportError, match=f"{len(BAD)} unsupported nodes") as info:
        dx.from_proto(proto)
    for _, message in BAD.values():
        assert message in str(info.value)


def test_unsupported_nodes_after_an_unsupported_node_are_listed_too():
    """A chain: each node's input comes from one that could not be converted; shape inference still tells
    what ceil_mode would do."""
    nodes = []
    for i, (node, _) in enumerate(BAD.values()):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[0] = "x" if i == 0 else f"o{i - 1}"
        copy.output[0] = "y" if i == len(BAD) - 1 else f"o{i}"
        nodes.append(copy)
    inits = {"wg": weights(4, 2, 3, 3), "w": weights(4, 4, 3, 3)}
    proto = model(nodes, inits, ["N", 4, 9, 9], ["N", 4, 2, 2])
    with pytest.raises(dx.OnnxImportError, match=f"{len(BAD)} unsupported nodes") as info:
        dx.from_proto(proto)
    for _, message in BAD.values():
        assert message in str(info.value)


def test_unknown_dimensions_other_than_batch_are_refused():
    proto = model([helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 3, "height", 8], ["N", 3, "height", 8])
    with pytest.raises(dx.OnnxImportError, match="dimension 2 is 'height'"):
        dx.from_proto(proto)


def exported_file(tmp_path):
    m = dropcore.zoo.build("lenet5", (16, 16, 1), 3)
    path = tmp_path / "m.onnx"
    dx.export(m, path)
    return path


@pytest.mark.parametrize("cut", [0, 10, 0.5, -3])
def test_truncated_file_is_an_error(tmp_path, cut):
    path = exported_file(tmp_path)
    data = path.read_bytes()
    end = int(len(data) * cut) if isinstance(cut, float) else (cut % len(data) if cut else 0)
    path.write_bytes(data[:end])
    with pytest.raises(dx.OnnxImportError, match="m.onnx"):
        dx.load(path)


def test_garbage_file_is_an_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x01PK\x03\x04 this is not a model" * 50)
    with pytest.raises(dx.OnnxImportError):
        dx.load(path)


def external_model(folder, location):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    proto = model(nodes, {"w": weights(4, 2)}, ["N", 4], ["N", 2])
    tensor = proto.graph.initializer[0]
    del tensor.external_data[:]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "32")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return proto


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.zeros(8, np.float32).tobytes())
    proto = external_model(folder, location)
    path = folder / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(dx.OnnxImportError, match="outside the model's folder"):
        dx.load(path)


def test_external_data_beside_the_model_loads(tmp_path):
    w = weights(4, 2)
    proto = model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": w}, ["N", 4], ["N", 2])
    path = tmp_path / "m.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").exists()
    m = dx.load(path)
    np.testing.assert_array_equal(m.layers[0].weights["kernel"], w)


def test_more_ops_agree_with_onnxruntime():
    """Explicit asymmetric conv pads (a ZeroPadding2D), "same" average pooling, ReduceMean, division by a
    constant, Selu, the shape arithmetic of ``x.view(x.size(0), -1)`` with Squeeze, and a fixed batch size."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[2, 0, 1, 1]),
        helper.make_node("Selu", ["c"], ["s"]),
        helper.make_node("AveragePool", ["s"], ["a"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Div", ["a", "two"], ["d"]),
        helper.make_node("ReduceMean", ["d", "hw"], ["r"], keepdims=1),
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "first"], ["n1"]),
        helper.make_node("Squeeze", ["n1", "first"], ["n0"]),
        helper.make_node("Unsqueeze", ["n0", "first"], ["n2"]),
        helper.make_node("Concat", ["n2", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["f"]),
        helper.make_node("Sigmoid", ["f"], ["y"]),
    ]
    inits = {"w": weights(5, 2, 3, 3), "two": np.float32(2.0), "hw": np.array([2, 3], np.int64),
             "zero": np.array(0, np.int64), "first": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    proto = model(nodes, inits, [3, 2, 8, 9], [3, 5], opset=18)
    m = dx.from_proto(proto)
    kinds = [type(la).__name__ for la in m.layers]
    assert kinds[:2] == ["ZeroPadding2D", "Conv2D"] and "GlobalAveragePooling2D" in kinds
    x = RNG.normal(size=(3, 2, 8, 9)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x.transpose(0, 2, 3, 1)), run_onnx(proto, x), rtol=0, atol=1e-4)
    x1 = x[:1]  # the file fixes the batch at 3; dropcore runs any batch
    np.testing.assert_allclose(m.predict(x1.transpose(0, 2, 3, 1)), run_onnx(proto, x)[:1], rtol=0, atol=1e-4)


def test_old_opset_attributes():
    """Opset 10: Dropout's ratio as an attribute; Softmax by the 2-D rule of opsets before 13."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["g"]),
        helper.make_node("Dropout", ["g"], ["d"], ratio=0.25),
        helper.make_node("Softmax", ["d"], ["y"], axis=1),
    ]
    proto = model(nodes, {"w": weights(12, 3), "b": weights(3)}, ["N", 3, 2, 2], ["N", 3], opset=10)
    m = dx.from_proto(proto)
    assert [la.rate for la in m.layers if type(la).__name__ == "Dropout"] == [0.25]
    x = RNG.normal(size=(4, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x.transpose(0, 2, 3, 1)), run_onnx(proto, x), rtol=0, atol=1e-5)
