"""PyTorch -> ONNX (both exporters) -> dropcore agrees with PyTorch and onnxruntime; MC dropout on the import."""
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running ONNX models needs onnxruntime (dropcore[onnx])")
torch = pytest.importorskip("torch", reason="the PyTorch round trips need torch (dropcore[torch])")

import dropcore.onnx as dx  # noqa: E402

nn = torch.nn
SHAPE = (3, 12, 12)  # C, H, W


class ConvBnNet(nn.Module):
    """(a) Conv-BN-ReLU-MaxPool-Dropout-Linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.pool, self.drop, self.fc = nn.MaxPool2d(2), nn.Dropout(0.3), nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.drop(self.pool(torch.relu(self.bn(self.conv(x))))), 1))


class ResidualNet(nn.Module):
    """(b) A residual block with Add."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6)
        self.c1, self.bn1 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.c2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.drop, self.fc = nn.Dropout(0.2), nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        h = torch.relu(self.bn0(self.stem(x)))
        r = self.bn2(self.c2(torch.relu(self.bn1(self.c1(h)))))
        h = torch.relu(h + r)
        return self.fc(self.drop(h.view(h.size(0), -1)))  # TorchScript: Shape, Gather, Unsqueeze, Concat


class GapNet(nn.Module):
    """(c) A global-average-pooled head."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, 3, groups=8, padding=1)  # depthwise, multiplier 2
        self.gap, self.drop, self.fc = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.4), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.dw(torch.relu(self.bn(self.c1(x)))))
        return torch.softmax(self.fc(self.drop(torch.flatten(self.gap(h), 1))), dim=1)


class GroupedNet(nn.Module):
    """(d) Grouped convolutions: ResNeXt-like groups, a dilated strided depthwise one, dilated groups."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.g1 = nn.Conv2d(8, 12, 3, groups=4, padding=1)
        self.dw = nn.Conv2d(12, 12, 3, groups=12, stride=2, dilation=2, padding=2, bias=False)
        self.g2 = nn.Conv2d(12, 6, 3, groups=2, dilation=2, padding=2)
        self.gap, self.drop, self.fc = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.3), nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu(self.g1(torch.relu(self.c1(x))))
        h = torch.relu(self.g2(torch.relu(self.dw(h))))
        return self.fc(self.drop(torch.flatten(self.gap(h), 1)))


NETS = {"conv_bn": ConvBnNet, "residual": ResidualNet, "gap_head": GapNet, "grouped": GroupedNet}


def prepared(cls):
    """In eval mode, with non-trivial batch-norm statistics; the Dropout modules in train mode so that both
    exporters keep them as ONNX Dropout nodes (eval-mode exports drop them)."""
    torch.manual_seed(0)
    net = cls()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    return net


def export(net, path, dynamo):
    x = torch.randn(2, *SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript", reason="torch's dynamo ONNX exporter needs onnxscript")
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=["x"],
                                        dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
            program.save(str(path))
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              training=torch.onnx.TrainingMode.PRESERVE, dynamic_axes={"x": {0: "N"}})


def reference(net, x):
    """PyTorch's answer with dropout off."""
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module", params=[False, True], ids=["torchscript", "dynamo"])
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynamo" if request.param else "torchscript")
    out = {}
    for name, cls in NETS.items():
        net = prepared(cls)
        export(net, folder / f"{name}.onnx", request.param)
        out[name] = (net, folder / f"{name}.onnx")
    return out


@pytest.mark.parametrize("name", NETS)
def test_import_agrees_with_torch_and_onnxruntime(exported, name):
    net, path = exported[name]
    model = dx.load(path)
    assert model.input_shape == (None, 12, 12, 3)  # NCHW sources become NHWC
    assert any(type(la).__name__ == "Dropout" for la in model.layers)
    # the files fix Dropout's training_mode to true; onnxruntime's default optimizer removes Dropout nodes anyway
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7, 256):
        xb = np.random.default_rng(n).normal(size=(n, *SHAPE)).astype(np.float32)
        got = model.predict(xb.transpose(0, 2, 3, 1))  # dropcore takes NHWC
        np.testing.assert_allclose(got, reference(net, xb), rtol=0, atol=1e-4)
        np.testing.assert_allclose(got, session.run(None, {"x": xb})[0], rtol=0, atol=1e-4)


def test_mc_dropout_on_imported_torch_model(exported):
    _, path = exported["conv_bn"]
    model = dx.load(path)
    x = np.random.default_rng(6).normal(size=(4, 12, 12, 3)).astype(np.float32)
    mean, std = model.predict(x, mc_samples=8, seed=1)
    again_mean, again_std = model.predict(x, mc_samples=8, seed=1)
    other_mean, _ = model.predict(x, mc_samples=8, seed=2)
    assert std.max() > 0
    np.testing.assert_array_equal(mean, again_mean)
    np.testing.assert_array_equal(std, again_std)
    assert not np.array_equal(mean, other_mean)


def test_imported_layers(exported):
    model = dx.load(exported["gap_head"][1])
    kinds = [type(la).__name__ for la in model.layers]
    assert "DepthwiseConv2D" in kinds and "GlobalAveragePooling2D" in kinds and "Flatten" not in kinds
    conv = next(la for la in model.layers if type(la).__name__ == "Conv2D")
    assert conv.activation == "relu" or "ReLU" in kinds
    rate = [la.rate for la in model.layers if type(la).__name__ == "Dropout"]
    assert np.allclose(rate, [0.4])


def test_imported_groups(exported):
    """ONNX Conv with group: one input channel per group a DepthwiseConv2D (dilated, strided), other groups a
    Conv2D(groups); the inference program runs the depthwise kernel and the per-group convolutions."""
    model = dx.load(exported["grouped"][1])
    convs = [la for la in model.layers if type(la).__name__ in ("Conv2D", "DepthwiseConv2D")]
    assert [(type(la).__name__, getattr(la, "groups", None), la.dilation_rate) for la in convs] == [
        ("Conv2D", 1, (1, 1)), ("Conv2D", 4, (1, 1)), ("DepthwiseConv2D", None, (2, 2)), ("Conv2D", 2, (2, 2))]
    steps = model._inference_program().steps
    assert "depthwise_conv2d" in steps and "grouped_conv2d" in steps
