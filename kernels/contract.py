"""The kernel contract: every op a kernel set offers, with its family and its signature.

A kernel set (``dropcore.ops.get_ops``) is built from this list and nothing else: for each op it takes the
function of that name from the set's module for the family, or, where the module has none, the NumPy reference's,
and records the op in the set's ``fallbacks``. Helpers a kernel module defines for itself (``njit``, ``im2col``,
``direct_conv_pays``) never enter a set, and two families cannot collide. ``tests/kernels/test_contract.py`` checks
every set against this list: names, parameters and defaults, and which ops fall back.

``inference``: the op runs in inference programs (``dropcore.program``), on the Cython kernels' forwards. Every set
implements every op: the Numba set and the Cython set (``cython_ops``, training included) never fall back.
"""
import inspect
from collections import namedtuple

Op = namedtuple("Op", "name family params inference")

_REQUIRED = object()


def _op(name, family, params, inference=False):
    """``params``: parameter names, or ``(name, default)`` pairs."""
    return Op(name, family, tuple(p if isinstance(p, tuple) else (p, _REQUIRED) for p in params), inference)


FAMILIES = ("conv", "pool", "activation", "dense", "norm", "loss")

OPS = (
    _op("conv2d", "conv", ("x", "w", "b", "strides", "padding", ("relu", False)), inference=True),
    _op("conv2d_backward", "conv", ("dy", "x", "w", "strides", "padding", "has_bias", ("need_dx", True),
                                    ("relu_output", None))),
    _op("conv2d_max_pool", "conv", ("x", "w", "b", "strides", "padding", "pool", ("relu", False))),
    _op("conv2d_max_pool_backward", "conv", ("dy", "arg", "y", "x", "w", "strides", "padding", "pool", "has_bias",
                                             ("need_dx", True), ("relu", False))),
    _op("max_pool2d", "pool", ("x", "pool", "strides", "padding"), inference=True),
    _op("max_pool2d_backward", "pool", ("dy", "x", "y", "pool", "strides", "padding")),
    _op("avg_pool2d", "pool", ("x", "pool", "strides", "padding"), inference=True),
    _op("avg_pool2d_backward", "pool", ("dy", "x_shape", "pool", "strides", "padding")),
    _op("global_avg_pool2d", "pool", ("x",), inference=True),
    _op("global_avg_pool2d_backward", "pool", ("dy", "x_shape")),
    _op("global_max_pool2d", "pool", ("x",), inference=True),
    _op("global_max_pool2d_backward", "pool", ("dy", "x", "y")),
    _op("relu", "activation", ("x",), inference=True),
    _op("relu_backward", "activation", ("dy", "y")),
    _op("dropout", "activation", ("x", "rate", "key", ("per_channel", False), ("offset", 0)), inference=True),
    _op("dropout_backward", "activation", ("dy", "rate", "key", ("per_channel", False), ("offset", 0))),
    _op("dropout_mask", "activation", ("noise_shape", "rate", "key", ("offset", 0)), inference=True),
    _op("gaussian_noise", "activation", ("shape", "key", ("offset", 0))),
    _op("relu_dropout", "activation", ("x", "rate", "key", ("per_channel", False), ("offset", 0)), inference=True),
    _op("relu_dropout_backward", "activation", ("dy", "y", "rate")),
    _op("softmax", "activation", ("x",), inference=True),
    _op("softmax_backward", "activation", ("dy", "y")),
    _op("sigmoid", "activation", ("x",), inference=True),
    _op("sigmoid_backward", "activation", ("dy", "y")),
    _op("dense", "dense", ("x", "w", "b", ("relu", False)), inference=True),
    _op("dense_backward", "dense", ("dy", "x", "w", "has_bias")),
    _op("batch_norm_train", "norm", ("x", "gamma", "beta", "eps")),
    _op("batch_norm_backward", "norm", ("dy", "x", "mean", "inv_std", "gamma")),
    _op("batch_norm_infer", "norm", ("x", "gamma", "beta", "moving_mean", "moving_var", "eps"), inference=True),
    _op("softmax_cross_entropy", "loss", ("logits", "labels")),
    _op("sparse_softmax_cross_entropy", "loss", ("logits", "labels")),
    _op("sigmoid_binary_cross_entropy", "loss", ("logits", "targets")),
    _op("mean_squared_error", "loss", ("y", "targets")),
)


def signature(op):
    """The :class:`inspect.Signature` an implementation of ``op`` must have."""
    return inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=inspect.Parameter.empty if default is _REQUIRED else default)
        for name, default in op.params])
