"""Activation functions by name: the names Keras 3 takes, their normalisation, and :func:`apply`, which runs one on
a kernel set's ops and returns ``(y, backprop)``. No arithmetic here: every activation is an op of the kernel
contract (``kernels/contract.py``, family "activation"), in every kernel set.

ReLU is usually fused into the producing Conv2D/Dense kernel or into the following dropout by the executor, and in
inference programs every element-wise activation of a Conv2D/Dense runs in that kernel's output pass
(:func:`kernel_form`); these are the stand-alone versions.

Parameters: ``leaky_relu`` takes ``negative_slope`` (Keras's default 0.2), ``elu`` ``alpha`` (1.0), ``gelu``
``approximate`` (False: the erf form). A name given as a string (``Dense(activation="elu")``) takes the defaults;
the layers ``LeakyReLU``, ``ELU`` and ``ReLU`` pass theirs.
"""
from .kernels.contract import by_name
from .kernels.reference.activation import SELU_ALPHA, SELU_SCALE  # noqa: F401  (the ONNX importer and exporter read them)
from .kernels.reference.activation import loop_ops

#: Keras's aliases: ``hard_silu`` is ``hard_swish``, ``swish`` is ``silu`` (one op each).
ALIASES = {"hard_silu": "hard_swish", "swish": "silu"}

#: The loop op that is not an ``activation=`` name: the ReLU layer's three-parameter form (Keras has no such name).
_LAYER_ONLY = ("clipped_relu",)

#: Every activation name dropcore takes (as Keras 3 spells them), aliases included: the ops with kernels of their
#: own, then every element-wise op of the contract's loops (``reference.activation.loop_ops``: one added there is
#: a name here, with nothing written in this file).
NAMES = ("linear", "relu", "softmax", "sigmoid") + tuple(n for n in loop_ops() if n not in _LAYER_ONLY) + \
    tuple(ALIASES)

#: Activations whose backward reads the forward's output (the others read its input): the contract says which.
_FROM_OUTPUT = tuple(n for n in NAMES if n not in ("linear", *ALIASES) and by_name(f"{n}_backward").params[1][0] == "y")

#: Each activation with one parameter: the name the op takes (the contract's), the bound kernels' ``alpha``.
PARAMS = {n: by_name(n).params[1][0] for n in NAMES if n not in ("linear", *ALIASES) and len(by_name(n).params) == 2}


def normalize(name, where=None):
    """``None`` -> "linear"; names are case-insensitive, aliases map to one op's name (``swish`` -> ``silu``);
    unknown names raise a clear ValueError."""
    if name is None:
        return "linear"
    if isinstance(name, str) and name.lower() in NAMES:
        return ALIASES.get(name.lower(), name.lower())
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}Invalid value for `activation`: expected one of {NAMES} or None. Received: "
                     f"activation={name!r}")


def elementwise(name):
    """Whether activation ``name`` acts on each element alone (all but softmax; linear is no activation)."""
    return name not in ("linear", "softmax")


def one_parameter(name, params):
    """Whether activation ``name`` with ``params`` is what the bound kernels apply: at most the one parameter of
    ``PARAMS`` (not Keras's ``clipped_relu``, which takes three)."""
    return set(params or ()) <= {PARAMS.get(name)}


def apply(ops, name, z, **params):
    """Apply activation ``name`` (normalized) to ``z`` with its parameter (``PARAMS``); return ``(y, backprop)``
    with ``backprop(dy) -> dz``."""
    if name == "linear":
        return z, lambda dy: dy
    forward, backward = getattr(ops, name, None), getattr(ops, f"{name}_backward", None)
    if forward is None:
        raise ValueError(f"unknown activation {name!r}")
    y = forward(z, **params)
    v = y if name in _FROM_OUTPUT else z
    return y, lambda dy: backward(dy, v, **params)


def kernel_form(name, **params):
    """``(name, alpha)`` as the Cython kernels take activation ``name`` (``cython_ops.activation_kernel``, the
    ``activation`` of ``conv2d_kernel`` and ``dense_kernel``): the parameter as ``alpha``, the tanh form of GELU
    as "gelu_tanh"."""
    if name == "gelu":
        return ("gelu_tanh" if params.get("approximate") else "gelu"), None
    if name in PARAMS and PARAMS[name] in params:
        return name, float(params[PARAMS[name]])
    return name, None
