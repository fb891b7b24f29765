"""Dense, Flatten, Activation, ReLU and Softmax layers."""
import numpy as np

from .. import activations, constraints, initializers
from ..lowering import Kernel, activation_kernels, forward_kernel, view
from ..validation import check_float, check_int, invalid
from .base import Layer
from .registry import register


def apply_activation(ops, act, z, relu_fused):
    """Finish a Conv2D/Dense output: ReLU was fused into the kernel when ``relu_fused``; others applied here."""
    if relu_fused:
        return z, lambda dy: ops.relu_backward(dy, z)
    return activations.apply(ops, act, z)


def lower_activation(lowering, act, kernel, epilogue=False, params=None):
    """``kernel`` (a bound kernel factory taking ``relu``) followed by activation ``act`` with its ``params``
    (``activations.PARAMS``: a LeakyReLU layer's slope fused into the kernel): a ReLU goes into it. With
    ``epilogue`` (the factory also takes the bound kernels' ``activation`` and ``alpha``), so does every
    element-wise activation: the kernel applies it to each block of outputs right after writing it, while in
    cache, instead of a second pass over the whole output."""
    params = params or {}
    if epilogue and act != "relu" and activations.elementwise(act):
        name, alpha = activations.kernel_form(act, **params)
        return [kernel(False, activation=name, alpha=alpha)]
    return [kernel(act == "relu")] + activation_kernels(lowering, "linear" if act == "relu" else act, **params)


@register
class Dense(Layer):
    """A fully connected layer: ``activation(x @ kernel + bias)``, kernel shaped ``(in, units)`` as in Keras.

    Inputs of rank > 2 are applied on the last axis.
    """

    OPTIONS = ("activation", "activation_params")
    fuses_relu = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_constraint=None, name=None):
        super().__init__(name)
        self.units = check_int(units, "units", 1, "Dense")
        self.activation = activations.normalize(activation, "Dense")
        if not isinstance(use_bias, bool):
            raise invalid("use_bias", "a bool", use_bias, "Dense")
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
        self.kernel_constraint = constraints.get(kernel_constraint)

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"Input to {self.label} must have at least 2 dimensions (batch, features)")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                        constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def final_activation(self, opts):
        return opts.get("activation", self.activation)

    def lower(self, lowering, step):
        w, b = self.weights["kernel"], self.weights.get("bias")
        kernels = lower_activation(lowering, self.final_activation(step.opts), lambda relu, **epilogue: Kernel(
            "dense", lambda shape: lowering.kernels.dense_kernel(shape, w, b, relu, **epilogue)), epilogue=True,
            params=step.opts.get("activation_params"))
        lead = tuple(self.input_shape[:-1])
        if not lead:
            return kernels
        rows = int(np.prod(lead))  # Dense acts on rows of features
        return [view(lambda s: (s[0] * rows, s[-1]))] + kernels[:1] + \
            [view(lambda s: (s[0] // rows,) + lead + (s[-1],))] + kernels[1:]

    def forward(self, ops, x, ctx, activation=None):
        act = self.activation if activation is None else activation
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        w, b = self.weights["kernel"], self.weights.get("bias")
        relu = act == "relu"
        z = ops.dense(x2, w, b, relu=relu)
        y, act_backprop = apply_activation(ops, act, z, relu)

        def backprop(dy):
            dz = act_backprop(dy.reshape(z.shape))
            dx, dw, db = ops.dense_backward(dz, x2, w, self.use_bias)
            self.grads["kernel"] = dw
            if self.use_bias:
                self.grads["bias"] = db
            return dx.reshape(x.shape)

        return y.reshape(lead + (self.units,)), backprop

    def get_config(self):
        return {
            "name": self.name, "units": self.units, "activation": self.activation, "use_bias": self.use_bias,
            "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_constraint": _constraint_config(self.kernel_constraint),
        }


def _constraint_config(c):
    return None if c is None else {"class_name": type(c).__name__, "config": c.get_config()}


@register
class Flatten(Layer):
    """Flatten every axis but the batch, in C order (Keras's channels-last order)."""

    def lower(self, lowering, step):
        return [view(lambda s: (s[0], int(np.prod(s[1:]))))]

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"Input to {self.label} must have at least 2 dimensions")
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, ops, x, ctx):
        shape = x.shape
        return x.reshape(shape[0], -1), lambda dy: dy.reshape(shape)


@register
class Activation(Layer):
    """Apply a named activation (any of ``activations.NAMES``: "relu", "tanh", "gelu", "leaky_relu", ...), on the
    kernel contract's op of that name, with Keras's default parameters."""

    pure_activation = True
    #: the activation's parameter (``activations.PARAMS``), for the layers that take one (LeakyReLU, ELU)
    params = {}

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = activations.normalize(activation, "Activation")

    def final_activation(self, opts):
        return self.activation

    def lower(self, lowering, step):
        return activation_kernels(lowering, self.activation, **self.params)

    def forward(self, ops, x, ctx):
        return activations.apply(ops, self.activation, x, **self.params)

    def get_config(self):
        return {"name": self.name, "activation": self.activation}


def _relu_activation(max_value, negative_slope, threshold):
    """The op Keras's ``ReLU(max_value, negative_slope, threshold)`` is, with its parameters: the plain ReLU,
    ``relu6``, ``leaky_relu`` where one of those, else ``clipped_relu``."""
    if threshold == 0 and negative_slope == 0 and max_value is None:
        return "relu", {}
    if threshold == 0 and negative_slope == 0 and max_value == 6:
        return "relu6", {}
    if threshold == 0 and max_value is None:
        return "leaky_relu", {"negative_slope": negative_slope}
    return "clipped_relu", {"max_value": max_value, "negative_slope": negative_slope, "threshold": threshold}


@register
class ReLU(Activation):
    """Keras's ``ReLU``: ``min(x, max_value)`` where ``x > threshold``, ``negative_slope * (x - threshold)``
    elsewhere; by default ``max(x, 0)``, which the executor fuses with a Dropout after it into one kernel, and the
    kernel before it (Conv2D, Dense) into its own. ``max_value=6`` alone is ``relu6``, ``negative_slope`` alone
    ``leaky_relu``: each runs its op."""

    ADDED_CONFIG = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}  # files before they were taken

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None):
        Layer.__init__(self, name)
        self.max_value = None if max_value is None else check_float(max_value, "max_value", 0.0, None, where="ReLU")
        self.negative_slope = check_float(negative_slope, "negative_slope", 0.0, None, where="ReLU")
        self.threshold = check_float(threshold, "threshold", 0.0, None, where="ReLU")
        self.activation, self.params = _relu_activation(self.max_value, self.negative_slope, self.threshold)

    def lower(self, lowering, step):
        if self.activation == "clipped_relu":  # three parameters: no bound kernel, the op itself
            return [forward_kernel(self, lowering, {})]
        return super().lower(lowering, step)

    def get_config(self):
        return {"name": self.name, "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


@register
class Softmax(Activation):
    """Softmax over the last axis (``axis=-1``, the only axis taken). Last in a model trained with cross-entropy,
    it is fused with the loss."""

    ADDED_CONFIG = {"axis": -1}

    def __init__(self, axis=-1, name=None):
        if axis != -1:
            raise invalid("axis", "-1 (the last axis)", axis, "Softmax")
        super().__init__("softmax", name)
        self.axis = -1

    def get_config(self):
        return {"name": self.name, "axis": self.axis}
