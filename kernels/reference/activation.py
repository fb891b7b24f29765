"""Activations (NumPy reference). Dropout and noise are their own family: :mod:`.dropout`."""
import numpy as np
from scipy.special import erfc


def relu(x):
    """``max(x, 0)`` (NaN propagates)."""
    return np.maximum(x, x.dtype.type(0))


def relu_backward(dy, y):
    """Pass ``dy`` where the ReLU output ``y`` is positive."""
    return np.where(y > 0, dy, dy.dtype.type(0))


def softmax(x):
    """Softmax over the last axis, max-subtracted so that large logits cannot overflow."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, y):
    """Gradient of :func:`softmax` from its output: ``y * (dy - sum(dy * y))`` per row."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def sigmoid(x):
    """Logistic function, evaluated through ``exp(-|x|)`` so that it never overflows."""
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


def sigmoid_backward(dy, y):
    """Gradient of :func:`sigmoid` from its output: ``dy * y * (1 - y)``."""
    return dy * y * (1 - y)


# --- the element-wise activations of Keras 3 (``keras.activations``), each with its backward --------------------
# Backwards read the forward's output where it determines the derivative (tanh, selu), its input otherwise. Every
# formula is Keras's, in the dtype received (float64 for the finite differences of the tests).

#: SELU's constants, as Keras's (Klambauer et al., 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_C = 0.044715


def _const(x, value):
    return x.dtype.type(value)


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """Gradient of :func:`tanh` from its output: ``dy * (1 - y**2)``."""
    return dy * (1 - y * y)


def selu(x):
    """``scale * x`` for ``x > 0``, ``scale * alpha * (exp(x) - 1)`` otherwise (Keras's constants)."""
    neg = np.expm1(np.minimum(x, _const(x, 0))) * _const(x, SELU_SCALE * SELU_ALPHA)
    return np.where(x > 0, x * _const(x, SELU_SCALE), neg)


def selu_backward(dy, y):
    """Gradient of :func:`selu` from its output: ``scale`` where ``y > 0``, else ``y + scale * alpha``."""
    return dy * np.where(y > 0, _const(y, SELU_SCALE), y + _const(y, SELU_SCALE * SELU_ALPHA))


def elu(x, alpha=1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, _const(x, 0))) * _const(x, alpha))


def elu_backward(dy, x, alpha=1.0):
    """Gradient of :func:`elu`: 1 where ``x > 0``, ``alpha * exp(x)`` elsewhere."""
    return dy * np.where(x > 0, _const(x, 1), np.exp(np.minimum(x, _const(x, 0))) * _const(x, alpha))


def leaky_relu(x, negative_slope=0.2):
    """``x`` where ``x >= 0``, ``negative_slope * x`` elsewhere (NaN passes)."""
    return np.where(x < 0, x * _const(x, negative_slope), x)


def leaky_relu_backward(dy, x, negative_slope=0.2):
    """Gradient of :func:`leaky_relu`: 1 where ``x > 0``, ``negative_slope`` elsewhere (at 0 the slope, as PyTorch
    and TensorFlow)."""
    return dy * np.where(x > 0, _const(x, 1), _const(x, negative_slope))


def relu6(x):
    """``min(max(x, 0), 6)`` (NaN passes)."""
    return np.minimum(np.maximum(x, _const(x, 0)), _const(x, 6))


def relu6_backward(dy, x):
    """Gradient of :func:`relu6`: 1 where ``0 < x < 6``, else 0."""
    return dy * ((x > 0) & (x < 6)).astype(dy.dtype)


def hard_sigmoid(x):
    """``relu6(x + 3) / 6`` (Keras 3's; ONNX's ``HardSigmoid`` with ``alpha = 1/6``, ``beta = 0.5``)."""
    return relu6(x + _const(x, 3)) / _const(x, 6)


def hard_sigmoid_backward(dy, x):
    """Gradient of :func:`hard_sigmoid`: 1/6 where ``-3 < x < 3``, else 0."""
    return dy * np.where((x > -3) & (x < 3), _const(x, 1) / _const(x, 6), _const(x, 0))


def hard_swish(x):
    """``x * relu6(x + 3) / 6`` (Keras 3's ``hard_silu``, alias ``hard_swish``; ONNX's ``HardSwish``)."""
    return x * relu6(x + _const(x, 3)) / _const(x, 6)


def hard_swish_backward(dy, x):
    """Gradient of :func:`hard_swish`: 0 below -3, 1 above 3, ``(2 x + 3) / 6`` between."""
    mid = (2 * x + _const(x, 3)) / _const(x, 6)
    return dy * np.where(x < -3, _const(x, 0), np.where(x > 3, _const(x, 1), mid))


def gelu(x, approximate=False):
    """Keras's ``gelu``: ``x / 2 * (1 + erf(x / sqrt(2)))``, or with ``approximate`` the tanh form ``x / 2 * (1 +
    tanh(sqrt(2 / pi) * (x + 0.044715 x**3)))``. The erf form is evaluated as ``x / 2 * erfc(-x / sqrt(2))``, the
    same function without the cancellation of ``1 + erf`` for negative ``x``."""
    if approximate:
        return _const(x, 0.5) * x * (1 + np.tanh(_const(x, _SQRT_2_OVER_PI) * (x + _const(x, _GELU_C) * x ** 3)))
    return _const(x, 0.5) * x * erfc(x * _const(x, -1 / np.sqrt(2)))


def gelu_backward(dy, x, approximate=False):
    """Gradient of :func:`gelu` (of the form ``approximate`` chooses)."""
    if approximate:
        t = np.tanh(_const(x, _SQRT_2_OVER_PI) * (x + _const(x, _GELU_C) * x ** 3))
        d = _const(x, 0.5) * (1 + t) + _const(x, 0.5 * _SQRT_2_OVER_PI) * x * (1 - t * t) * (
            1 + _const(x, 3 * _GELU_C) * x * x)
        return dy * d
    cdf = _const(x, 0.5) * erfc(x * _const(x, -1 / np.sqrt(2)))
    return dy * (cdf + x * np.exp(_const(x, -0.5) * x * x) * _const(x, 1 / np.sqrt(2 * np.pi)))


def softplus(x):
    """``log(1 + exp(x))``, as ``max(x, 0) + log1p(exp(-|x|))``: never overflows."""
    return np.maximum(x, _const(x, 0)) + np.log1p(np.exp(-np.abs(x)))


def softplus_backward(dy, x):
    """Gradient of :func:`softplus`: ``dy * sigmoid(x)``."""
    return dy * sigmoid(x)


def silu(x):
    """``x * sigmoid(x)`` (Keras's ``silu``, alias ``swish``)."""
    return x * sigmoid(x)


def silu_backward(dy, x):
    """Gradient of :func:`silu`: ``s (1 + x (1 - s))`` with ``s = sigmoid(x)``."""
    s = sigmoid(x)
    return dy * (s * (1 + x * (1 - s)))


def mish(x):
    """``x * tanh(softplus(x))`` (Misra 2019; Keras's ``mish``, ONNX's ``Mish``)."""
    return x * np.tanh(softplus(x))


def mish_backward(dy, x):
    """Gradient of :func:`mish`: ``tanh(sp) + x * sigmoid(x) * (1 - tanh(sp)**2)`` with ``sp = softplus(x)``."""
    t = np.tanh(softplus(x))
    return dy * (t + x * sigmoid(x) * (1 - t * t))


#: The compiled kernels' code for each element-wise activation (``kernels/_act.h``'s ``DC_ACT_*``; the Numba set's
#: too): "gelu_tanh" is ``gelu(approximate=True)``.
CODES = {"linear": 0, "relu": 1, "relu6": 2, "leaky_relu": 3, "elu": 4, "selu": 5, "tanh": 6, "sigmoid": 7,
         "hard_sigmoid": 8, "hard_swish": 9, "gelu": 10, "gelu_tanh": 11, "softplus": 12, "silu": 13,
         "clipped_relu": 14, "mish": 15}


def clipped_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Keras's ``relu(x, negative_slope, max_value, threshold)`` (the ``ReLU`` layer's): ``min(x, max_value)`` where
    ``x > threshold``, ``negative_slope * (x - threshold)`` elsewhere (NaN passes)."""
    hi = _const(x, np.inf if max_value is None else max_value)
    return np.where(x > threshold, np.minimum(x, hi), (x - _const(x, threshold)) * _const(x, negative_slope))


def clipped_relu_backward(dy, x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Gradient of :func:`clipped_relu`: 1 where ``threshold < x < max_value``, ``negative_slope`` where ``x <=
    threshold``, 0 above ``max_value``."""
    hi = np.inf if max_value is None else max_value
    inside = np.where(x < hi, _const(x, 1), _const(x, 0))
    return dy * np.where(x > threshold, inside, _const(x, negative_slope))


#: The parameter an activation of ``_act.h`` takes, and its default (Keras's): ``alpha`` of the bound kernels.
ACTIVATION_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}

#: The codes of :data:`CODES` that are not an op of the loops: "linear" (no activation), "relu" and "sigmoid" (ops
#: with kernels of their own; the codes serve the convolution and dense epilogues) and "gelu_tanh" (``gelu``'s
#: ``approximate`` form).
_NOT_LOOP_OPS = ("linear", "relu", "sigmoid", "gelu_tanh")


def loop_ops():
    """The element-wise activations whose fast kernels are the code-switched loops (``_act.h``'s ``dc_act1`` in the
    Cython set, ``_act1`` in the Numba set): every name of :data:`CODES` but :data:`_NOT_LOOP_OPS`, in code order.
    Their ``name`` and ``name_backward`` functions are made from the contract (``kernels/activation_wrappers.py``):
    an activation added here, in ``_act.h`` and in the Numba loop needs no wrapper of its own."""
    return tuple(name for name in CODES if name not in _NOT_LOOP_OPS)


def kernel_args(name, params):
    """``(code, alpha, hi, th)`` with which the loops run activation ``name`` given its parameters ``params`` (as
    the contract names them): the one parameter of an op that has one is ``alpha`` (``gelu``'s ``approximate``
    picks the code instead); ``clipped_relu`` takes three (``alpha`` its negative slope, ``hi`` its max value,
    ``th`` its threshold)."""
    if name == "gelu":
        return CODES["gelu_tanh" if params.get("approximate") else "gelu"], 0.0, 0.0, 0.0
    if name == "clipped_relu":
        hi = params["max_value"]
        return CODES[name], float(params["negative_slope"]), np.inf if hi is None else float(hi), \
            float(params["threshold"])
    if len(params) > 1:
        raise ValueError(f"{name}: the loops take one parameter (alpha), received {sorted(params)}; give the op a "
                         f"case in kernel_args")
    return CODES[name], float(next(iter(params.values()), 0.0)), 0.0, 0.0


def epilogue(activation, alpha):
    """``(relu, code, alpha)`` for a kernel's output pass: ReLU as its own flag (the kernels' fastest form), any
    other activation of ``_act.h`` by its code, applied to each block of outputs right after it is written."""
    if activation in (None, "linear", "relu"):
        return activation == "relu", 0, 0.0
    return False, CODES[activation], float(ACTIVATION_ALPHA.get(activation, 0.0) if alpha is None else alpha)
