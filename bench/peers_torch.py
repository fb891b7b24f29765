"""The PyTorch CPU peer: an ``nn.Module`` equivalent to a dropcore Sequential model, with the same weights.

Images stay channels-last at the interface (NHWC in, as dropcore takes them); the module permutes to PyTorch's
NCHW view (a permuted NHWC tensor *is* PyTorch's channels_last layout, so no copy) and back before flattening, so
the Dense weights keep Keras's channels-last flatten order. TensorFlow's asymmetric "same" padding is an explicit
``F.pad``. The module returns logits; the training step uses ``cross_entropy`` on them (what dropcore fuses with
its softmax head).
"""
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

from .models import window_pads


def import_torch():
    """The ``torch`` module, or an ImportError saying how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError("PyTorch is not installed: pip install 'dropcore[torch]' (torch==2.13.0)") from e
    return torch


def _activation(name, where):
    if name not in ("linear", "relu", "softmax"):
        raise ValueError(f"{where}: activation {name!r} has no PyTorch equivalent in the benchmarks")
    return name


def to_torch(model):
    """An ``nn.Module`` computing ``model``'s logits from NHWC float32 input, initialised with its weights."""
    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    class _Same(nn.Module):
        """Explicit padding (left, right, top, bottom) before a conv/pool: TensorFlow's "same" rule."""

        def __init__(self, pads):
            super().__init__()
            self.pads = pads

        def forward(self, x):
            return F.pad(x, self.pads)

    class _ToNHWCFlat(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)

    class Net(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):  # x: (N, H, W, C)
            return self.body(x.permute(0, 3, 1, 2))

    mods, shape = [], model.input_shape[1:]
    layers = model.layers
    for i, la in enumerate(layers):
        out_shape = la.output_shape_for(shape)
        if isinstance(la, (Conv2D, MaxPooling2D)):
            _, (pt, pb), (pl, pr) = window_pads(la, shape)
            if pt or pb or pl or pr:
                mods.append(_Same((pl, pr, pt, pb)))
        if isinstance(la, Conv2D):
            conv = nn.Conv2d(shape[2], la.filters, la.kernel_size, la.strides, bias=la.use_bias)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(la.weights["kernel"].transpose(3, 2, 0, 1).copy()))
                if la.use_bias:
                    conv.bias.copy_(torch.from_numpy(la.weights["bias"]))
            mods.append(conv)
        elif isinstance(la, MaxPooling2D):
            mods.append(nn.MaxPool2d(la.pool_size, la.strides))
        elif isinstance(la, Dropout):
            mods.append(nn.Dropout(la.rate))
        elif isinstance(la, Flatten):
            mods.append(_ToNHWCFlat())
        elif isinstance(la, Dense):
            lin = nn.Linear(shape[-1], la.units, bias=la.use_bias)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(la.weights["kernel"].T.copy()))
                if la.use_bias:
                    lin.bias.copy_(torch.from_numpy(la.weights["bias"]))
            mods.append(lin)
        else:
            raise ValueError(f"{la.label}: no PyTorch equivalent in the benchmarks")
        act = _activation(getattr(la, "activation", "linear"), la.label)
        if act == "relu":
            mods.append(nn.ReLU())
        elif act == "softmax" and i != len(layers) - 1:
            raise ValueError(f"{la.label}: softmax is only supported on the last layer (it becomes the loss)")
        shape = out_shape
    return Net(nn.Sequential(*mods))


class TorchStep:
    """The PyTorch step the benchmarks time against dropcore's: SGD with momentum on ``cross_entropy`` of the
    module ``net``'s logits, and its softmax in inference mode. ``layout`` turns the NumPy batch's tensor into what
    the module takes (default: as it is)."""

    def __init__(self, net, learning_rate, momentum, layout=None):
        self.torch = import_torch()
        self.net, self._layout = net, layout or (lambda t: t)
        self.opt = self.torch.optim.SGD(self.net.parameters(), lr=learning_rate, momentum=momentum)

    def train_step(self, x, y):
        """Forward + backward + SGD momentum update on one batch; returns the loss."""
        torch = self.torch
        self.net.train()
        xt, yt = self._layout(torch.from_numpy(x)), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.net(xt), yt)
        loss.backward()
        self.opt.step()
        return loss.detach().item()

    def predict(self, x):
        """Softmax probabilities in inference mode (dropout off, no autograd)."""
        torch = self.torch
        self.net.eval()
        with torch.inference_mode():
            return torch.softmax(self.net(self._layout(torch.from_numpy(x))), dim=1).numpy()


class TorchPeer(TorchStep):
    """Training step and inference of the PyTorch equivalent of a dropcore model (same weights, float32)."""

    def __init__(self, model, learning_rate, momentum):
        super().__init__(to_torch(model), learning_rate, momentum)


def set_threads(n):
    """Hold PyTorch's intra-op pool to ``n`` threads (inter-op to 1: one batch at a time)."""
    torch = import_torch()
    torch.set_num_threads(int(n))


def version():
    try:
        return import_torch().__version__
    except ImportError:
        return None
