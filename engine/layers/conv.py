"""The 2-D convolution layer (channels-last, Keras kernel layout ``(kh, kw, in, out)``)."""
from .. import activations, constraints, initializers
from ..lowering import Kernel
from ..validation import check_choice, check_int, invalid, normalize_tuple
from .base import Layer
from .core import _constraint_config, apply_activation, lower_activation
from .registry import register


@register
class Conv2D(Layer):
    """``activation(conv2d(x, kernel) + bias)`` with strides and "valid"/"same" padding (TensorFlow's rule)."""

    #: ``need_dx``: false for the first layer (nothing upstream needs its input gradient); ``pool``: inference
    #: only, the pool size of the max pooling fused after it (``dropcore.fusion``)
    OPTIONS = ("activation", "need_dx", "pool")
    fuses_relu = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_constraint=None, name=None):
        super().__init__(name)
        self.filters = check_int(filters, "filters", 1, "Conv2D")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", "Conv2D")
        self.strides = normalize_tuple(strides, 2, "strides", "Conv2D")
        self.padding = check_choice(padding, "padding", ("valid", "same"), "Conv2D")
        self.activation = activations.normalize(activation, "Conv2D")
        if not isinstance(use_bias, bool):
            raise invalid("use_bias", "a bool", use_bias, "Conv2D")
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
        self.kernel_constraint = constraints.get(kernel_constraint)

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        self.output_shape_for(input_shape)  # raises on empty output
        kh, kw = self.kernel_size
        self.add_weight("kernel", (kh, kw, input_shape[2], self.filters), self.kernel_initializer,
                        constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        super().build(input_shape)

    def output_shape_for(self, input_shape):
        kh, kw = self.kernel_size
        oh, ow = self.window_output(input_shape, self.kernel_size, self.strides, self.padding, f"a {kh}x{kw} kernel",
                                    "; use a smaller kernel, padding='same', or a larger input")
        return (oh, ow, self.filters)

    def final_activation(self, opts):
        return opts.get("activation", self.activation)

    def workspace_bytes(self, output_shape):
        oh, ow, _ = output_shape
        kh, kw = self.kernel_size
        return oh * ow * kh * kw * self.input_shape[-1] * 4  # the largest im2col panel

    def lower(self, lowering, step):
        cy, act = lowering.kernels, self.final_activation(step.opts)
        w, b, strides, padding = self.weights["kernel"], self.weights.get("bias"), self.strides, self.padding
        pool = step.opts.get("pool")
        if pool is not None:  # one pass with the max pooling after it, where the fused kernel covers the layer
            relu = act == "relu"
            sample = (1,) + tuple(self.input_shape)  # what a kernel can run depends on the sample, not the batch
            if cy.conv2d_max_pool_kernel(sample, w, b, strides, padding, relu, pool) is not None:
                return [Kernel("conv2d+max_pool2d", lambda shape: cy.conv2d_max_pool_kernel(
                    shape, w, b, strides, padding, relu, pool))]
        kernels = lower_activation(lowering, act, lambda relu: Kernel(
            "conv2d", lambda shape: cy.conv2d_kernel(shape, w, b, strides, padding, relu)))
        if pool is not None:
            kernels.append(Kernel("max_pool2d", lambda shape: cy.pool2d_kernel(shape, pool, pool, "valid", False)))
        return kernels

    def forward(self, ops, x, ctx, activation=None, need_dx=True):
        act = self.activation if activation is None else activation
        w, b = self.weights["kernel"], self.weights.get("bias")
        relu = act == "relu"
        z = ops.conv2d(x, w, b, self.strides, self.padding, relu=relu)
        y, act_backprop = apply_activation(ops, act, z, relu)

        def backprop(dy):
            if relu:  # the kernel masks each gradient tile by the output while it is in cache
                dx, dw, db = ops.conv2d_backward(dy, x, w, self.strides, self.padding, self.use_bias, need_dx, z)
            else:
                dx, dw, db = ops.conv2d_backward(act_backprop(dy), x, w, self.strides, self.padding, self.use_bias,
                                                 need_dx)
            self.grads["kernel"] = dw
            if self.use_bias:
                self.grads["bias"] = db
            return dx

        return y, backprop

    def get_config(self):
        return {
            "name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
            "strides": list(self.strides), "padding": self.padding, "activation": self.activation,
            "use_bias": self.use_bias, "kernel_initializer": initializers.name_of(self.kernel_initializer),
            "bias_initializer": initializers.name_of(self.bias_initializer),
            "kernel_constraint": _constraint_config(self.kernel_constraint),
        }
