"""The breadth models: five small CNNs of the shapes users bring (issue 24), each defined once in PyTorch.

Why PyTorch first: the users' path is PyTorch -> ONNX -> dropcore, and that is the path measured. Each model is an
``nn.Module`` built with a fixed seed; exported once to ONNX (cached in a temp folder, keyed by the module's source
and the torch version, so every benchmark process reads the same file); imported into dropcore with
``dropcore.onnx.load``. The files keep their BatchNormalization nodes, so each engine does its own folding. ONNX
Runtime runs that same file; PyTorch trains the module itself; dropcore trains the
imported model, which starts from the same weights. Defining them in dropcore and exporting would test the
exporter instead, and would not meet the layers PyTorch's exporter writes (Clip for ReLU6, explicit Pads, BN after
bias-free convolutions).

- ``lenet5_tanh``: LeNet-5 with tanh and average pooling (28x28x1);
- ``inception``: two inception-style blocks (1x1 / 1x1->3x3 / avg-pool->1x1 branches concatenated), LeakyReLU,
  average pooling, a global average pool (32x32x3);
- ``vgg_bn``: a VGG-style CIFAR net, Conv-BN-ReLU pairs and max pooling (32x32x3);
- ``resnet8``: a CIFAR ResNet-8, residual adds (1x1 projection shortcuts at stride 2), global average pool;
- ``mobilenet``: depthwise-separable blocks with BN and ReLU6 (32x32x3).

Every model ends in a softmax in its ONNX file (outputs are probabilities, as ``Model.predict``'s); PyTorch trains
on the logits with ``cross_entropy`` and dropcore fuses its softmax with the loss: the same step.
"""
import hashlib
import inspect
import os
import tempfile
import warnings

import numpy as np

from .models import LEARNING_RATE, MOMENTUM, NUM_CLASSES, compile_for_bench, random_batch
from .peers_torch import TorchStep, import_torch

OPSET = 17
SEED = 0

#: name -> (module factory name, input shape (H, W, C) as dropcore takes it)
MODELS = {
    "lenet5_tanh": ("LeNet5Tanh", (28, 28, 1)),
    "inception": ("InceptionNet", (32, 32, 3)),
    "vgg_bn": ("VggBn", (32, 32, 3)),
    "resnet8": ("ResNet8", (32, 32, 3)),
    "mobilenet": ("MobileNet", (32, 32, 3)),
}


def _modules():
    """The module classes (defined on first use: importing this file needs no torch)."""
    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)

    class LeNet5Tanh(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, NUM_CLASSES)

        def forward(self, x):
            x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
            x = F.avg_pool2d(torch.tanh(self.c2(x)), 2)
            x = torch.tanh(self.f2(torch.tanh(self.f1(torch.flatten(x, 1)))))
            return self.f3(x)

    class Inception(nn.Module):
        def __init__(self, cin, c1, c3r, c3, cp):
            super().__init__()
            self.b1, self.b2r, self.b2 = nn.Conv2d(cin, c1, 1), nn.Conv2d(cin, c3r, 1), nn.Conv2d(c3r, c3, 3, 1, 1)
            self.b3 = nn.Conv2d(cin, cp, 1)
            self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            self.act = nn.LeakyReLU(0.1)

        def forward(self, x):
            a = self.act
            return torch.cat([a(self.b1(x)), a(self.b2(a(self.b2r(x)))), a(self.b3(self.pool(x)))], 1)

    class InceptionNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.act = nn.Conv2d(3, 32, 3, padding=1), nn.LeakyReLU(0.1)
            self.i1, self.i2 = Inception(32, 16, 16, 24, 8), Inception(48, 32, 32, 48, 16)
            self.fc = nn.Linear(96, NUM_CLASSES)

        def forward(self, x):
            x = F.avg_pool2d(self.i1(self.act(self.stem(x))), 2)
            x = F.avg_pool2d(self.i2(x), 2)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class VggBn(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(conv_bn(3, 32), conv_bn(32, 32), nn.MaxPool2d(2), conv_bn(32, 64),
                                      conv_bn(64, 64), nn.MaxPool2d(2), conv_bn(64, 128), nn.MaxPool2d(2))
            self.fc1, self.bn, self.fc2 = nn.Linear(128 * 16, 128), nn.BatchNorm1d(128), nn.Linear(128, NUM_CLASSES)

        def forward(self, x):
            return self.fc2(torch.relu(self.bn(self.fc1(torch.flatten(self.body(x), 1)))))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.a, self.b = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None)
            self.short = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.b(self.a(x)) + self.short(x))

    class ResNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(3, 16)
            self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.fc = nn.Linear(64, NUM_CLASSES)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))

    class MobileNet(nn.Module):
        def __init__(self):
            super().__init__()
            def separable(cin, cout, stride):
                return [conv_bn(cin, cin, 3, stride, groups=cin, act=nn.ReLU6), conv_bn(cin, cout, 1, act=nn.ReLU6)]
            self.body = nn.Sequential(conv_bn(3, 32, act=nn.ReLU6), *separable(32, 64, 1), *separable(64, 128, 2),
                                      *separable(128, 128, 1), *separable(128, 256, 2))
            self.fc = nn.Linear(256, NUM_CLASSES)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1))

    return {"LeNet5Tanh": LeNet5Tanh, "InceptionNet": InceptionNet, "VggBn": VggBn, "ResNet8": ResNet8,
            "MobileNet": MobileNet}


def check_name(name):
    if name not in MODELS:
        raise ValueError(f"Invalid value for `model`: expected one of {tuple(MODELS)}. Received: model={name!r}")
    return name


def torch_module(name, seed=SEED):
    """The PyTorch module of ``name`` (NCHW in, logits out) with the weights of ``seed``; its batch norms get
    non-trivial statistics, so that an import that ignored them would not match."""
    torch = import_torch()
    torch.manual_seed(seed)
    net = _modules()[MODELS[check_name(name)][0]]()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


def _key(name, seed):
    torch = import_torch()
    cls = _modules()[MODELS[name][0]]
    text = inspect.getsource(_modules) + inspect.getsource(onnx_path) + torch.__version__ + f"{name}:{seed}:{OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()[:16] + cls.__name__


def onnx_path(name, seed=SEED, folder=None):
    """The ONNX file of ``name`` (softmax head, NCHW input named "x", dynamic batch), exported on first use into
    ``folder`` (default: a folder in the system's temp dir) and reused after."""
    torch = import_torch()
    folder = folder or os.path.join(tempfile.gettempdir(), "dropcore-breadth")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{_key(check_name(name), seed)}.onnx")
    if os.path.exists(path):
        return path

    class Probabilities(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    h, w, c = MODELS[name][1]
    net = Probabilities(torch_module(name, seed)).eval()
    tmp = f"{path}.{os.getpid()}.tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PRESERVE on a module in eval mode: inference, with the BatchNormalization nodes kept (the exporter
        # would fold them into the convolutions in EVAL mode; tf2onnx and the dynamo exporter keep them).
        torch.onnx.export(net, (torch.zeros(2, c, h, w),), tmp, dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=OPSET, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE)
    os.replace(tmp, path)  # atomic: a process reading it sees a whole file
    return path


def dropcore_model(name, seed=SEED, ops=None):
    """The imported dropcore model of ``name``, compiled as the reference models are (SGD with momentum, sparse
    categorical cross-entropy) on the kernel set ``ops`` (``None``: the default)."""
    from dropcore.onnx import load

    return compile_for_bench(load(onnx_path(name, seed), name=name), ops)


def batch(name, n, seed=0):
    """A deterministic float32 NHWC batch ``(x, y)`` of ``n`` images in [0, 1) and int labels."""
    return random_batch(MODELS[check_name(name)][1], n, seed)


class TorchBreadthPeer(TorchStep):
    """PyTorch's training step (SGD with momentum, ``cross_entropy`` on the logits) and inference (softmax) of the
    module, on NHWC input seen as PyTorch's channels-last layout (a permute, no copy): ``bench.peers_torch``'s
    step."""

    def __init__(self, name, seed=SEED):
        super().__init__(torch_module(name, seed), LEARNING_RATE, MOMENTUM, layout=lambda t: t.permute(0, 3, 1, 2))


class OnnxBreadthPeer:
    """An ONNX Runtime session on the model's ONNX file (``threads`` intra-op threads, every graph optimization),
    fed NCHW: the layout the file takes (the transpose happens outside the timed call, as a user's data would be
    laid out for it)."""

    def __init__(self, name, threads, seed=SEED):
        from .peers_onnx import import_onnx

        _, ort = import_onnx()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx_path(name, seed), opts, providers=["CPUExecutionProvider"])

    @staticmethod
    def layout(x):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def predict(self, x_nchw):
        return self.session.run(None, {"x": x_nchw})[0]
