"""Depthwise and depthwise-separable 2-D convolutions, channels-last, as Keras's ``DepthwiseConv2D`` and
``SeparableConv2D`` (weight layouts included). The depthwise part runs on the kernel set's ``depthwise_conv2d``
(bias and ReLU fused where the layer has them; dilated in the kernels' window, no zero-filled kernel); the pointwise
part of ``SeparableConv2D`` is an ordinary 1x1 ``conv2d`` with the bias and ReLU fused. In inference programs both
lower to their bound Cython kernels."""
from .. import constraints, initializers
from ..kernels.reference.depthwise import dilated_size
from ..lowering import Kernel
from ..validation import check_int, normalize_tuple
from .base import Layer
from .conv import window_config, window_options
from .core import _constraint_config, apply_activation, lower_activation
from .registry import register


class _Depthwise(Layer):
    """What both layers share: the depthwise kernel ``(kh, kw, C, mult)`` (dilated by ``dilation_rate``), the
    arguments, shapes and config; each subclass's ``_forward`` runs its convolutions with the bias (and a ReLU)
    fused, and ``lower`` binds them. The activation comes last."""

    #: ``activation``: a ReLU after it fused into its last kernel (inference: any element-wise activation, with its
    #: ``activation_params``); ``need_dx``: false for the first layer; ``padding``: a ZeroPadding2D's pads, folded
    #: in (``fusion.PADS_INTO_CONV``)
    OPTIONS = ("activation", "activation_params", "need_dx", "padding")
    fuses_relu = True

    @property
    def takes_pads(self):
        """Unpadded and undilated: the depthwise kernel takes a ZeroPadding2D's pads as ``padding``."""
        return self.padding == "valid" and self.dilation_rate == (1, 1)
    #: model files written before ``dilation_rate`` existed hold no such key: it was 1
    ADDED_CONFIG = {"dilation_rate": [1, 1]}
    depthwise_constraint = None

    def _setup(self, kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
               bias_initializer, dilation_rate):
        where = type(self).__name__
        window_options(self, kernel_size, strides, padding, activation, use_bias, where)
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", 1, where)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", where)
        self.depthwise_initializer = initializers.get(depthwise_initializer, "depthwise_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")

    def _channels(self, cin):
        """The number of output channels for ``cin`` input channels."""
        return cin * self.depth_multiplier

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        self.output_shape_for(input_shape)  # raises on empty output
        kh, kw = self.kernel_size
        self.add_weight("depthwise_kernel", (kh, kw, input_shape[2], self.depth_multiplier),
                        self.depthwise_initializer, constraint=self.depthwise_constraint)
        self._build_pointwise(input_shape[2] * self.depth_multiplier)
        if self.use_bias:
            self.add_weight("bias", (self._channels(input_shape[2]),), self.bias_initializer)
        super().build(input_shape)

    def _build_pointwise(self, channels):
        pass

    def output_shape_for(self, input_shape):
        kh, kw = self.kernel_size
        what = f"a {kh}x{kw} kernel" + (f" dilated {self.dilation_rate}" if self.dilation_rate != (1, 1) else "")
        oh, ow = self.window_output(input_shape, dilated_size(self.kernel_size, self.dilation_rate), self.strides,
                                    self.padding, what, "; use a smaller kernel, padding='same', or a larger input")
        return (oh, ow, self._channels(input_shape[2]))

    def final_activation(self, opts):
        return opts.get("activation", self.activation)

    def workspace_bytes(self, output_shape):
        h, w, c = self.input_shape
        mult = self.depth_multiplier
        return 4 * h * w * c * mult if mult > 1 else 0  # the input's channels repeated for the kernels

    def forward(self, ops, x, ctx, activation=None, need_dx=True, padding=None):
        act = self.activation if activation is None else activation
        relu = act == "relu"
        z, backprop_z = self._forward(ops, x, relu, need_dx, self.padding if padding is None else padding)
        y, act_backprop = apply_activation(ops, act, z, relu)

        def backprop(dy):  # with ReLU fused, the kernels mask the gradient by the output themselves
            return backprop_z(dy if relu else act_backprop(dy))

        return y, backprop

    def get_config(self):
        return {"name": self.name, **window_config(self), "depth_multiplier": self.depth_multiplier,
                "dilation_rate": list(self.dilation_rate),
                "depthwise_initializer": initializers.name_of(self.depthwise_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}


@register
class DepthwiseConv2D(_Depthwise):
    """``activation(depthwise_conv2d(x, depthwise_kernel) + bias)``: each input channel convolved with its own
    ``depth_multiplier`` filters; output channel ``c * depth_multiplier + m``. ``dilation_rate`` spreads the taps
    apart (with any strides, as in Keras)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_constraint=None,
                 name=None, dilation_rate=1):
        super().__init__(name)
        self._setup(kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
                    bias_initializer, dilation_rate)
        self.depthwise_constraint = constraints.get(depthwise_constraint)

    def _forward(self, ops, x, relu, need_dx, pads):
        """``(z, backprop)``: the convolution (padded by ``pads``) with the bias (and ReLU, when ``relu``) fused."""
        w, b, dil = self.weights["depthwise_kernel"], self.weights.get("bias"), self.dilation_rate
        z = ops.depthwise_conv2d(x, w, b, self.strides, pads, relu, dil)

        def backprop(dz):
            dx, self.grads["depthwise_kernel"], db = ops.depthwise_conv2d_backward(
                dz, x, w, self.strides, pads, self.use_bias, need_dx, z if relu else None, dil)
            if self.use_bias:
                self.grads["bias"] = db
            return dx

        return z, backprop

    def lower(self, lowering, step):
        cy, dil, padding = lowering.kernels, self.dilation_rate, step.opts.get("padding", self.padding)
        return lower_activation(lowering, self.final_activation(step.opts), lambda relu, **epilogue: Kernel(
            "depthwise_conv2d", lambda shape: cy.depthwise_conv2d_kernel(
                shape, self.weights["depthwise_kernel"], self.weights.get("bias"), self.strides, padding, relu,
                dil, **epilogue)), epilogue=True, params=step.opts.get("activation_params"))

    def get_config(self):
        return {**super().get_config(), "depthwise_constraint": _constraint_config(self.depthwise_constraint)}


@register
class SeparableConv2D(_Depthwise):
    """``activation(conv2d(depthwise_conv2d(x, depthwise_kernel), pointwise_kernel) + bias)``: the depthwise
    convolution, then a 1x1 one (``pointwise_kernel`` ``(1, 1, C * depth_multiplier, filters)``) mixing channels,
    with the bias and a ReLU fused into it."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1, activation=None,
                 use_bias=True, depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, dilation_rate=1):
        super().__init__(name)
        self.filters = check_int(filters, "filters", 1, "SeparableConv2D")
        self._setup(kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
                    bias_initializer, dilation_rate)
        self.pointwise_initializer = initializers.get(pointwise_initializer, "pointwise_initializer")

    def _channels(self, cin):
        return self.filters

    def _build_pointwise(self, channels):
        self.add_weight("pointwise_kernel", (1, 1, channels, self.filters), self.pointwise_initializer)

    def workspace_bytes(self, output_shape):
        oh, ow, _ = self.output_shape_for(self.input_shape)
        c = self.input_shape[2] * self.depth_multiplier
        return super().workspace_bytes(output_shape) + 4 * oh * ow * c  # the depthwise output

    def _forward(self, ops, x, relu, need_dx, pads):
        dk, pk, b = self.weights["depthwise_kernel"], self.weights["pointwise_kernel"], self.weights.get("bias")
        dil = self.dilation_rate
        h = ops.depthwise_conv2d(x, dk, None, self.strides, pads, False, dil)
        z = ops.conv2d(h, pk, b, (1, 1), "valid", relu=relu)

        def backprop(dz):
            dh, self.grads["pointwise_kernel"], db = ops.conv2d_backward(dz, h, pk, (1, 1), "valid", self.use_bias,
                                                                        True, z if relu else None)
            if self.use_bias:
                self.grads["bias"] = db
            dx, self.grads["depthwise_kernel"], _ = ops.depthwise_conv2d_backward(
                dh, x, dk, self.strides, pads, False, need_dx, None, dil)
            return dx

        return z, backprop

    def lower(self, lowering, step):
        cy, dil, padding = lowering.kernels, self.dilation_rate, step.opts.get("padding", self.padding)
        depthwise = Kernel("depthwise_conv2d", lambda shape: cy.depthwise_conv2d_kernel(
            shape, self.weights["depthwise_kernel"], None, self.strides, padding, False, dil))
        return [depthwise] + lower_activation(lowering, self.final_activation(step.opts), lambda relu, **epilogue:
                                              Kernel("conv2d", lambda shape: cy.conv2d_kernel(
                                                  shape, self.weights["pointwise_kernel"], self.weights.get("bias"),
                                                  (1, 1), "valid", relu, **epilogue)), epilogue=True,
                                              params=step.opts.get("activation_params"))

    def get_config(self):
        config = super().get_config()
        return {"name": self.name, "filters": self.filters, **config,
                "pointwise_initializer": initializers.name_of(self.pointwise_initializer)}
