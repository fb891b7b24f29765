"""The 2-D convolution layer (channels-last, Keras kernel layout ``(kh, kw, in, out)``), dilated or not."""

from .. import activations, constraints, initializers
from ..lowering import Kernel
from ..validation import check_choice, check_int, invalid, normalize_tuple
from . import dilation, grouped
from .base import Layer
from .core import _constraint_config, apply_activation, lower_activation
from .registry import register


def window_options(layer, kernel_size, strides, padding, activation, use_bias, where):
    """The arguments every convolution layer checks alike (Conv2D, DepthwiseConv2D, SeparableConv2D): set on
    ``layer``; errors name the layer class ``where`` and the argument."""
    layer.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", where)
    layer.strides = normalize_tuple(strides, 2, "strides", where)
    layer.padding = check_choice(padding, "padding", ("valid", "same"), where)
    layer.activation = activations.normalize(activation, where)
    if not isinstance(use_bias, bool):
        raise invalid("use_bias", "a bool", use_bias, where)
    layer.use_bias = use_bias


def window_config(layer):
    """The config entries of the arguments :func:`window_options` checks."""
    return {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides), "padding": layer.padding,
            "activation": layer.activation, "use_bias": layer.use_bias}


def _unpadded(shape, padding):
    """The input shape of a convolution whose explicit pads (a folded ZeroPadding2D) are not in its input."""
    if not isinstance(padding, tuple):
        return tuple(shape)
    (t, b), (l, r) = padding
    return (shape[0] - t - b, shape[1] - l - r) + tuple(shape[2:])


@register
class Conv2D(Layer):
    """``activation(conv2d(x, kernel) + bias)`` with strides and "valid"/"same" padding (TensorFlow's rule).

    ``dilation_rate`` (not with strides > 1, as Keras) spreads the kernel's taps that far apart, "same" padding on
    the dilated size: the layer runs the ordinary convolution kernels with its own kernel on the input's phases
    (``layers/dilation.py``: no zero-filled kernel, no wasted multiply-adds).

    ``groups`` (as Keras): that many convolutions side by side, each on ``C / groups`` input channels giving
    ``filters / groups`` outputs, the kernel ``(kh, kw, C / groups, filters)``; one input channel per group runs on the
    depthwise kernels (``layers/grouped.py``).
    """

    #: ``need_dx``: false for the first layer (nothing upstream needs its input gradient); ``pool``: the pool size
    #: of the max pooling fused after it; ``padding``: a ZeroPadding2D's pads, folded in (``dropcore.fusion``)
    OPTIONS = ("activation", "activation_params", "need_dx", "pool", "padding")
    fuses_relu = True
    #: model files written before ``dilation_rate`` existed hold no such key: it was 1
    ADDED_CONFIG = {"dilation_rate": [1, 1], "groups": 1}

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_constraint=None, name=None,
                 dilation_rate=1, groups=1):
        super().__init__(name)
        self.filters = check_int(filters, "filters", 1, "Conv2D")
        self.groups = check_int(groups, "groups", 1, "Conv2D")
        if self.filters % self.groups:
            raise invalid("groups", f"a divisor of filters={self.filters} (each group gives filters / groups "
                          "outputs)", groups, "Conv2D")
        window_options(self, kernel_size, strides, padding, activation, use_bias, "Conv2D")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", "Conv2D")
        if self.dilation_rate != (1, 1) and self.strides != (1, 1):
            raise invalid("dilation_rate", f"1 with strides {self.strides} (strides > 1 together with "
                          "dilation_rate > 1 is not supported, as in Keras)", dilation_rate, "Conv2D")
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
        self.kernel_constraint = constraints.get(kernel_constraint)

    @property
    def effective_size(self):
        """The size of the effective kernel: ``(k - 1) * d + 1`` on each axis (the kernel size without dilation)."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        self.output_shape_for(input_shape)  # raises on empty output
        if input_shape[2] % self.groups:
            raise ValueError(f"{self.label}: groups={self.groups} does not divide the input's {input_shape[2]} "
                             f"channels; expected input channels divisible by groups")
        kh, kw = self.kernel_size
        self.add_weight("kernel", (kh, kw, input_shape[2] // self.groups, self.filters), self.kernel_initializer,
                        constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        kh, kw = self.kernel_size
        what = f"a {kh}x{kw} kernel" + (f" dilated {self.dilation_rate}" if self.dilation_rate != (1, 1) else "")
        oh, ow = self.window_output(input_shape, self.effective_size, self.strides, self.padding, what,
                                    "; use a smaller kernel, padding='same', or a larger input")
        return (oh, ow, self.filters)

    def final_activation(self, opts):
        return opts.get("activation", self.activation)

    def workspace_bytes(self, output_shape):
        oh, ow, _ = self.output_shape_for(self.input_shape)  # its own output, also when a pooling is fused in
        kh, kw = self.kernel_size
        panel = oh * ow * kh * kw * self.input_shape[-1] * 4  # the largest im2col panel
        if self.dilation_rate == (1, 1) or self.groups > 1:
            return panel
        geo = dilation.Phases(self.input_shape[:2], self.kernel_size, self.dilation_rate, self.padding)
        dh, dw = self.dilation_rate
        return panel + 4 * dh * dw * (2 * geo.rows * geo.cols * self.input_shape[2] + geo.q * geo.p * self.filters)

    def _bind(self, make):
        """``make(w)``, a bound kernel on the layer's kernel ``w`` (read by reference: a program follows the
        weights' in-place updates while the model trains). Dilated and grouped layers bind their own."""
        return make(self.weights["kernel"])

    @property
    def takes_pads(self):
        """An unpadded, undilated, ungrouped convolution: its kernels take a ZeroPadding2D's pads as ``padding``."""
        return self.padding == "valid" and self.dilation_rate == (1, 1) and self.groups == 1

    def lower(self, lowering, step):
        cy, act, params = lowering.kernels, self.final_activation(step.opts), step.opts.get("activation_params")
        b, strides, padding = self.weights.get("bias"), self.strides, step.opts.get("padding", self.padding)
        pool = step.opts.get("pool")
        pooling = [Kernel("max_pool2d", lambda shape: cy.pool2d_kernel(shape, pool, pool, "valid", False))]
        if self.groups > 1:
            return grouped.lower(self, lowering, act, params) + (pooling if pool is not None else [])
        if self.dilation_rate != (1, 1):  # on the input's phases: the max pooling apart
            return lower_activation(lowering, act, lambda relu, **epilogue: Kernel("conv2d", lambda shape: (
                dilation.bind(cy, shape, self.weights["kernel"], b, self.dilation_rate, padding, relu, **epilogue))),
                epilogue=True, params=params) + (pooling if pool is not None else [])
        if pool is not None:  # one pass with the max pooling after it, where the fused kernel covers the layer
            relu = act == "relu"
            sample = (1,) + _unpadded(self.input_shape, padding)  # what a kernel runs depends on the sample only
            if self._bind(lambda w: cy.conv2d_max_pool_kernel(sample, w, b, strides, padding, relu, pool)) \
                    is not None:
                return [Kernel("conv2d+max_pool2d", lambda shape: self._bind(
                    lambda w: cy.conv2d_max_pool_kernel(shape, w, b, strides, padding, relu, pool)))]
        kernels = lower_activation(lowering, act, lambda relu, **epilogue: Kernel("conv2d", lambda shape: self._bind(
            lambda w: cy.conv2d_kernel(shape, w, b, strides, padding, relu, **epilogue))), epilogue=True,
            params=params)
        if pool is not None:
            kernels.append(Kernel("max_pool2d", lambda shape: cy.pool2d_kernel(shape, pool, pool, "valid", False)))
        return kernels

    def forward(self, ops, x, ctx, activation=None, need_dx=True, pool=None, padding=None):
        act = self.activation if activation is None else activation
        relu = act == "relu"
        pads = self.padding if padding is None else padding  # a ZeroPadding2D's pads, folded in (takes_pads)
        if self.groups > 1:
            return self._finish(ops, *grouped.forward(self, ops, x, relu, need_dx), act, pool)
        if self.dilation_rate != (1, 1):
            return self._finish(ops, *dilation.forward(ops, x, self.weights["kernel"], self.weights.get("bias"),
                                                        self.dilation_rate, self.padding, relu, need_dx,
                                                        self.use_bias), act, pool)
        w, b = self.weights["kernel"], self.weights.get("bias")
        if pool is not None:  # the max pooling after it, in the same pass (fusion: activation linear or relu)
            return self._forward_pooled(ops, x, w, b, relu, need_dx, pool, pads)
        z = ops.conv2d(x, w, b, self.strides, pads, relu=relu)
        y, act_backprop = apply_activation(ops, act, z, relu)

        def backprop(dy):
            if relu:  # the kernel masks each gradient tile by the output while it is in cache
                dx, dw, db = ops.conv2d_backward(dy, x, w, self.strides, pads, self.use_bias, need_dx, z)
            else:
                dx, dw, db = ops.conv2d_backward(act_backprop(dy), x, w, self.strides, pads, self.use_bias, need_dx)
            self._store_grads(dw, db)
            return dx

        return y, backprop

    def _forward_pooled(self, ops, x, w, b, relu, need_dx, pool, pads):
        """``max_pool2d(relu?(conv2d(x)), pool)`` on ``ops.conv2d_max_pool``: the convolution's output is never
        materialized, and the backward rebuilds its gradient from where each window's maximum was."""
        y, arg = ops.conv2d_max_pool(x, w, b, self.strides, pads, pool, relu=relu)

        def backprop(dy):
            dx, dw, db = ops.conv2d_max_pool_backward(dy, arg, y, x, w, self.strides, pads, pool, self.use_bias,
                                                      need_dx, relu)
            self._store_grads(dw, db)
            return dx

        return y, backprop

    def _finish(self, ops, z, conv_backprop, act, pool):
        """A grouped or dilated convolution's output ``z`` (``conv_backprop(dz) -> (dx, dw, db)``, ReLU fused when
        ``act`` is "relu"), then the activation or the fused max pooling."""
        relu = act == "relu"
        if pool is not None:  # fused by the rules only after a linear or ReLU activation, which z holds
            y = ops.max_pool2d(z, pool, pool, "valid")
            act_backprop = lambda dy: ops.max_pool2d_backward(dy, z, y, pool, pool, "valid")  # noqa: E731
        else:
            y, act_backprop = apply_activation(ops, act, z, relu)
            if relu:  # the kernels mask the gradient by their output themselves
                act_backprop = lambda dy: dy  # noqa: E731

        def backprop(dy):
            dx, self.grads["kernel"], db = conv_backprop(act_backprop(dy))
            if self.use_bias:
                self.grads["bias"] = db
            return dx

        return y, backprop

    def _store_grads(self, dw, db):
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db

    def get_config(self):
        return {
            "name": self.name, "filters": self.filters, **window_config(self),
            "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_constraint": _constraint_config(self.kernel_constraint),
            "dilation_rate": list(self.dilation_rate), "groups": self.groups,
        }
