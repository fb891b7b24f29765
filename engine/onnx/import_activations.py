"""The importer's converters of activation nodes (Relu, Sigmoid, Tanh, Softmax, Selu, LeakyRelu, Elu,
HardSigmoid, HardSwish, Gelu, Softplus, Mish, Clip): each goes into the Conv2D or Dense that produced its input when that
layer can apply it in its kernel's output pass, else becomes a layer. ``import_ops.CONVERTERS`` lists them."""
import numpy as np

from ..activations import SELU_ALPHA, SELU_SCALE
from ..layers import ELU, Activation, LeakyReLU, ReLU, Softmax
from .values import Tensor, Unsupported, optional_const, text


def _activate(cx, node, act, make_layer):
    """Activation ``act`` on input 0: inside the layer that produced it when it can take it (a Conv2D or Dense
    applies it in its kernel's output pass), else a layer (``act`` None: always a layer)."""
    x = cx.tensor(node, 0)
    if act is not None and "activation" in x.remake and cx.sole_use(node.input[0]):
        return x.remake["activation"](act)
    return Tensor(cx.call(make_layer(cx.layer_name(node)), x.st), x.axes, x.order)


def simple(act, cls=None):
    """A converter of a node that is activation ``act`` alone (a ``cls`` layer where it stays one)."""
    return lambda cx, node, attrs: _activate(cx, node, act, lambda n: cls(name=n) if cls else Activation(act, name=n))


def softmax(cx, node, attrs):
    x = cx.tensor(node, 0)
    rank = len(x.axes)
    axis = int(attrs.get("axis", -1 if cx.opset >= 13 else 1))
    a = axis % rank
    if cx.opset < 13 and a != rank - 1:
        raise Unsupported(f"axis={axis} not supported at opset {cx.opset} (a softmax over the flattened axes "
                          f"{a}..{rank - 1})")
    if x.axes[a] != rank - 1:
        raise Unsupported(f"axis={axis} not supported (dropcore's softmax is over the channels, its last axis)")
    return _activate(cx, node, "softmax", lambda n: Softmax(name=n))


def selu(cx, node, attrs):
    alpha, gamma = attrs.get("alpha", 1.67326319217681884765625), attrs.get("gamma", 1.05070102214813232421875)
    if not (np.isclose(alpha, SELU_ALPHA, rtol=1e-6) and np.isclose(gamma, SELU_SCALE, rtol=1e-6)):
        raise Unsupported(f"alpha={alpha}, gamma={gamma} not supported (dropcore's selu has alpha={SELU_ALPHA}, "
                          f"gamma={SELU_SCALE})")
    return _activate(cx, node, "selu", lambda n: Activation("selu", name=n))


def leaky_relu(cx, node, attrs):
    return _activate(cx, node, None, lambda n: LeakyReLU(float(attrs.get("alpha", 0.01)), name=n))


def elu(cx, node, attrs):
    alpha = float(attrs.get("alpha", 1.0))  # Keras's "elu" string is alpha 1: only that one goes into the producer
    return _activate(cx, node, "elu" if alpha == 1.0 else None, lambda n: ELU(alpha, name=n))


def hard_sigmoid(cx, node, attrs):
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if not (np.isclose(alpha, 1 / 6, rtol=1e-6) and beta == 0.5):
        raise Unsupported(f"alpha={alpha}, beta={beta} not supported (dropcore's hard_sigmoid is Keras 3's and "
                          f"PyTorch's: alpha=1/6, beta=0.5)")
    return _activate(cx, node, "hard_sigmoid", lambda n: Activation("hard_sigmoid", name=n))


def gelu(cx, node, attrs):
    approximate = text(attrs.get("approximate", "none"))
    if approximate != "none":
        raise Unsupported(f"approximate={approximate!r} not supported (Keras's 'gelu' activation, the one a layer "
                          f"takes by name, is the exact erf form: approximate='none')")
    return _activate(cx, node, "gelu", lambda n: Activation("gelu", name=n))


def clip(cx, node, attrs):
    """``Clip(x, 0, max)``: relu6 for a maximum of 6 (PyTorch's ``ReLU6``), ReLU without one, else Keras's
    ``ReLU(max_value=max)``."""
    if cx.opset >= 11:
        lo, hi = optional_const(cx, node, 1, "min"), optional_const(cx, node, 2, "max")
        lo, hi = (None if v is None else float(np.asarray(v).reshape(())) for v in (lo, hi))
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    if lo != 0.0 or (hi is not None and not hi >= 0.0):
        raise Unsupported(f"min={lo}, max={hi} not supported (a clip from 0 to a maximum >= 0 or none: a ReLU)")
    if hi is None or hi == np.inf:
        return _activate(cx, node, "relu", lambda n: ReLU(name=n))
    if hi == 6.0:
        return _activate(cx, node, "relu6", lambda n: Activation("relu6", name=n))
    return _activate(cx, node, None, lambda n: ReLU(max_value=hi, name=n))
