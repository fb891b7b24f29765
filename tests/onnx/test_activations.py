"""Every activation ONNX and PyTorch have that dropcore runs on its kernels: defined in PyTorch, exported to ONNX,
imported, checked against PyTorch and ONNX Runtime; after a convolution the activation goes into it (the kernel's
output pass); dropcore's models with each activation exported back and run by ONNX Runtime."""
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running ONNX models needs onnxruntime (dropcore[onnx])")
torch = pytest.importorskip("torch", reason="the PyTorch round trips need torch (dropcore[torch])")

import onnx  # noqa: E402

import dropcore  # noqa: E402
import dropcore.onnx as dx  # noqa: E402
from dropcore import activations  # noqa: E402
from dropcore.layers import ELU, Activation, Conv2D, Dense, Flatten, Input, LeakyReLU, ReLU  # noqa: E402

nn = torch.nn
SHAPE = (3, 8, 8)

#: id -> (the PyTorch module, the ONNX op it exports to, what dropcore makes of it after a Conv2d: the Conv2D's
#: activation, or a layer class name)
ACTIVATIONS = {
    "tanh": (nn.Tanh(), "Tanh", "tanh"),
    "sigmoid": (nn.Sigmoid(), "Sigmoid", "sigmoid"),
    "relu": (nn.ReLU(), "Relu", "relu"),
    "leaky_relu": (nn.LeakyReLU(0.1), "LeakyRelu", "LeakyReLU"),
    "elu": (nn.ELU(), "Elu", "elu"),
    "elu-0.5": (nn.ELU(0.5), "Elu", "ELU"),
    "selu": (nn.SELU(), "Selu", "selu"),
    "hardswish": (nn.Hardswish(), "HardSwish", "hard_swish"),
    "hardsigmoid": (nn.Hardsigmoid(), "HardSigmoid", "hard_sigmoid"),
    "gelu": (nn.GELU(), "Gelu", "gelu"),
    "relu6": (nn.ReLU6(), "Clip", "relu6"),
    "clip-0-2": (lambda x: torch.clamp(x, 0.0, 2.0), "Clip", "ReLU"),
    "softplus": (nn.Softplus(), "Softplus", "softplus"),
}


#: the opset a node is one op from (before, PyTorch writes GELU's erf formula)
OPSETS = {"Gelu": 20}


class Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act, self.fc = nn.Conv2d(3, 6, 3, padding=1), act, nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x) * 2), 1))  # * 2: inputs reaching every piece


class AfterConv(nn.Module):
    def __init__(self, act):
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.act = nn.Conv2d(3, 6, 3, padding=1), act

    def forward(self, x):
        return self.act(self.conv(x))


def _export(net, path, opset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.randn(2, *SHAPE),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}}, opset_version=opset)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_import_agrees_with_torch_and_onnxruntime(name, tmp_path):
    act, op, _ = ACTIVATIONS[name]
    act = act if isinstance(act, nn.Module) else _Lambda(act)
    opset = OPSETS.get(op, 17)
    for cls in (Net, AfterConv):
        net, path = cls(act), tmp_path / f"{cls.__name__}.onnx"
        _export(net, path, opset)
        assert op in {n.op_type for n in onnx.load(str(path)).graph.node}
        model = dx.load(path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in (1, 5):
            x = np.random.default_rng(n).normal(size=(n, *SHAPE)).astype(np.float32)
            got = model.predict(x.transpose(0, 2, 3, 1))
            if cls is AfterConv:
                got = got.transpose(0, 3, 1, 2)
            with torch.no_grad():
                np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=2e-5)
            np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_after_a_convolution_goes_into_it(name, tmp_path):
    act, op, becomes = ACTIVATIONS[name]
    act = act if isinstance(act, nn.Module) else _Lambda(act)
    _export(AfterConv(act), tmp_path / "m.onnx", OPSETS.get(op, 17))
    model = dx.load(tmp_path / "m.onnx")
    conv = next(la for la in model.layers if type(la).__name__ == "Conv2D")
    kinds = [type(la).__name__ for la in model.layers]
    if becomes[0].isupper():
        assert becomes in kinds and conv.activation == "linear"
    else:
        assert conv.activation == becomes, kinds
        assert becomes not in model._inference_program().steps  # in the convolution's output pass


def test_unsupported_forms_say_why(tmp_path):
    """HardSigmoid with other constants and GELU's tanh form are refused, naming the attribute."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    for node, opset, match in [
        (onnx.helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2), 17, r"alpha=0.2.*beta=0.5 not supported"),
        (onnx.helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"), 20, r"approximate='tanh' not supported"),
    ]:
        graph = onnx.helper.make_graph([node], "g", [x], [y])
        path = tmp_path / f"{node.op_type}.onnx"
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)]), str(path))
        with pytest.raises(Exception, match=match):
            dx.load(path)


class _Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def test_a_mish_node_goes_into_the_convolution_and_agrees_with_onnxruntime(tmp_path):
    """ONNX's Mish (opset 18; PyTorch 2.13 still writes x * tanh(softplus(x)), a product the importer does not
    take), in a graph written here: the convolution applies it in its output pass."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    w = numpy_helper.from_array(rng.normal(size=(6, 3, 3, 3)).astype(np.float32) / 3, "w")
    b = numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["z"], pads=[1, 1, 1, 1]), helper.make_node("Mish", ["z"], ["y"])],
        "mish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8, 8])], initializer=[w, b])
    path = tmp_path / "mish.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    model = dx.load(path)
    assert next(la for la in model.layers if type(la).__name__ == "Conv2D").activation == "mish"
    x = rng.normal(size=(5, *SHAPE)).astype(np.float32) * 3
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.predict(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), theirs, rtol=1e-5,
                               atol=2e-6)


# --- export: dropcore's activations as ONNX ops, run by ONNX Runtime ---------------------------------------------
#: every activation name but relu, softmax (tested with the models) and the aliases: an activation added to the
#: kernels without an export fails here
EXPORTS = [n for n in activations.NAMES if n not in ("linear", "relu", "softmax", *activations.ALIASES)]
LAYERS = {"LeakyReLU": lambda: LeakyReLU(0.05), "ELU": lambda: ELU(0.4), "ReLU-max": lambda: ReLU(max_value=1.5),
          "ReLU-all": lambda: ReLU(max_value=2.0, negative_slope=0.1, threshold=0.3),
          "Activation-gelu": lambda: Activation("gelu")}


def _roundtrip(model, tmp_path, opset=17):
    path = tmp_path / "out.onnx"
    dx.export(model, path, opset=opset)
    x = np.random.default_rng(3).normal(size=(4, 6, 6, 2)).astype(np.float32) * 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]  # the exported graph reads NHWC
    np.testing.assert_allclose(model.predict(x), theirs, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("act", EXPORTS)
def test_conv_and_dense_activations_export(act, opset, tmp_path):
    """At opset 17 GELU is its erf formula (as PyTorch writes it), at 20 the Gelu op."""
    dropcore.set_random_seed(0)
    inp = Input((6, 6, 2))
    h = Conv2D(3, 3, activation=act)(inp)
    model = dropcore.Model(inp, Dense(4, activation=act)(Flatten()(h)))
    _roundtrip(model, tmp_path, opset)


@pytest.mark.parametrize("layer", LAYERS)
def test_activation_layers_export(layer, tmp_path):
    dropcore.set_random_seed(0)
    inp = Input((6, 6, 2))
    h = LAYERS[layer]()(Conv2D(3, 3)(inp))
    _roundtrip(dropcore.Model(inp, Dense(4)(Flatten()(h))), tmp_path)
