"""``dropcore import`` tells, on stderr, which ONNX nodes became which layers, what inference folds or fuses, and
which steps run without a compiled kernel."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dropcore import cli  # noqa: E402
from dropcore.onnx import load  # noqa: E402


def _graph(path):
    """x (N, 2, 6, 6) -> Conv (no bias) -> BatchNormalization -> Relu -> Transpose pair -> LeakyRelu ->
    GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w", rng.normal(size=(4, 2, 3, 3))), ("scale", rng.uniform(0.5, 1.5, 4)), ("bias", rng.normal(size=4)),
        ("mean", rng.normal(size=4)), ("var", rng.uniform(0.5, 2, 4)), ("fc", rng.normal(size=(3, 4))),
        ("fcb", rng.normal(size=3)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t"], ["u"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("LeakyRelu", ["u"], ["l"], name="leaky", alpha=0.1),
             helper.make_node("GlobalAveragePool", ["l"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_load_reports_the_layers_each_node_became(tmp_path):
    _graph(tmp_path / "m.onnx")
    report = []
    model = load(tmp_path / "m.onnx", report=report)
    assert report == [("conv", "Conv", ["conv"]), ("bn", "BatchNormalization", ["bn"]), ("relu", "Relu", ["relu"]),
                      ("to_nhwc", "Transpose", []), ("to_nchw", "Transpose", []), ("leaky", "LeakyRelu", ["leaky"]),
                      ("gap", "GlobalAveragePool", ["gap"]), ("flat", "Flatten", ["gap"]), ("fc", "Gemm", ["fc"])]
    assert {la.name for la in model.layers} >= {"conv", "bn", "relu", "leaky", "gap", "fc"}


def test_import_command_prints_the_table_the_folds_and_the_uncompiled_steps(tmp_path, capsys):
    _graph(tmp_path / "m.onnx")
    assert cli.main(["import", str(tmp_path / "m.onnx"), str(tmp_path / "m.dropcore")]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("ONNX node")):]
    assert lines[0].split() == ["ONNX", "node", "op", "dropcore", "layer"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:10]}
    assert rows["conv"] == ["Conv", "conv", "(Conv2D)"] and rows["bn"] == ["BatchNormalization", "bn",
                                                                          "(BatchNormalization)"]
    assert rows["to_nhwc"] == ["Transpose", "-"] and rows["flat"] == ["Flatten", "gap", "(GlobalAveragePooling2D)"]
    assert "bn folded into conv" in err and "relu applied in the kernel of conv" in err
    model = load(tmp_path / "m.onnx")
    slow = model._inference_program().uncompiled_layers
    (line,) = [x for x in lines if x.startswith("without a compiled kernel: ")]
    assert line == "without a compiled kernel: " + (", ".join(f"{la} ({s})" for s, la in slow) or "none")
