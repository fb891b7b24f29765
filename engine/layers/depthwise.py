"""Depthwise and depthwise-separable 2-D convolutions, channels-last, as Keras's ``DepthwiseConv2D`` and
``SeparableConv2D`` (weight layouts included). The depthwise part runs in NumPy here, one pass per kernel tap (no
kernels of its own: programs run these layers' forward); the pointwise part is an ordinary 1x1 ``ops.conv2d``."""
import numpy as np

from .. import activations, constraints, initializers
from ..kernels.geometry import window_2d
from ..validation import check_int
from .base import Layer
from .conv import window_config, window_options
from .core import _constraint_config
from .registry import register


def depthwise_conv2d(x, w, strides, padding):
    """Each channel ``c`` of channels-last ``x`` convolved with its own filters ``w[:, :, c, m]`` (``w``:
    ``(kh, kw, C, mult)``), TensorFlow's padding rule: ``(y, backward)``, ``y`` ``(N, oh, ow, C * mult)`` with
    output channel ``c * mult + m`` (Keras's order), ``backward(dy) -> (dx, dw)``. In ``x``'s and ``w``'s dtype."""
    n, h, wd, c = x.shape
    kh, kw, _, mult = w.shape
    (sh, sw), dtype = strides, np.result_type(x, w)
    oh, ow, (pt, pb), (pl, pr) = window_2d(h, wd, (kh, kw), strides, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))) if pt + pb + pl + pr else x
    taps = [(i, j, (slice(None), slice(i, i + (oh - 1) * sh + 1, sh), slice(j, j + (ow - 1) * sw + 1, sw)))
            for i in range(kh) for j in range(kw)]
    y = np.zeros((n, oh, ow, c, mult), dtype)
    for i, j, at in taps:
        y += xp[at][..., None] * w[i, j]

    def backward(dy):
        dy = dy.reshape(n, oh, ow, c, mult)
        dxp, dw = np.zeros(xp.shape, dtype), np.empty(w.shape, dtype)
        for i, j, at in taps:
            dw[i, j] = np.einsum("nhwc,nhwcm->cm", xp[at], dy)
            dxp[at] += np.einsum("nhwcm,cm->nhwc", dy, w[i, j])
        return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + wd]), dw

    return y.reshape(n, oh, ow, c * mult), backward


class _Depthwise(Layer):
    """What both layers share: the depthwise kernel ``(kh, kw, C, mult)``, then ``_pointwise`` (nothing here),
    the bias and the activation."""

    depthwise_constraint = None

    def _setup(self, kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
               bias_initializer):
        where = type(self).__name__
        window_options(self, kernel_size, strides, padding, activation, use_bias, where)
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", 1, where)
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
        oh, ow = self.window_output(input_shape, self.kernel_size, self.strides, self.padding, f"a {kh}x{kw} kernel",
                                    "; use a smaller kernel, padding='same', or a larger input")
        return (oh, ow, self._channels(input_shape[2]))

    def final_activation(self, opts):
        return self.activation

    def workspace_bytes(self, output_shape):
        h, w, c = self.input_shape
        oh, ow, _ = output_shape
        _, _, (pt, pb), (pl, pr) = window_2d(h, w, self.kernel_size, self.strides, self.padding)
        padded = (h + pt + pb) * (w + pl + pr) * c if pt + pb + pl + pr else 0
        return 4 * (padded + oh * ow * c * self.depth_multiplier)  # the padded input, the depthwise output

    def _pointwise(self, ops, h):
        return h, lambda dh: dh

    def forward(self, ops, x, ctx):
        h, depthwise_backward = depthwise_conv2d(x, self.weights["depthwise_kernel"], self.strides, self.padding)
        z, pointwise_backprop = self._pointwise(ops, h)
        if self.use_bias:
            z += self.weights["bias"]
        y, act_backprop = activations.apply(ops, self.activation, z)

        def backprop(dy):
            dz = act_backprop(dy)
            if self.use_bias:
                self.grads["bias"] = dz.sum(axis=(0, 1, 2))
            dx, self.grads["depthwise_kernel"] = depthwise_backward(pointwise_backprop(dz))
            return dx

        return y, backprop

    def get_config(self):
        return {"name": self.name, **window_config(self), "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializers.name_of(self.depthwise_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}


@register
class DepthwiseConv2D(_Depthwise):
    """``activation(depthwise_conv2d(x, depthwise_kernel) + bias)``: each input channel convolved with its own
    ``depth_multiplier`` filters; output channel ``c * depth_multiplier + m``."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_constraint=None,
                 name=None):
        super().__init__(name)
        self._setup(kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
                    bias_initializer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)

    def get_config(self):
        return {**super().get_config(), "depthwise_constraint": _constraint_config(self.depthwise_constraint)}


@register
class SeparableConv2D(_Depthwise):
    """``activation(conv2d(depthwise_conv2d(x, depthwise_kernel), pointwise_kernel) + bias)``: the depthwise
    convolution, then a 1x1 one (``pointwise_kernel`` ``(1, 1, C * depth_multiplier, filters)``) mixing channels."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1, activation=None,
                 use_bias=True, depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None):
        super().__init__(name)
        self.filters = check_int(filters, "filters", 1, "SeparableConv2D")
        self._setup(kernel_size, strides, padding, depth_multiplier, activation, use_bias, depthwise_initializer,
                    bias_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer, "pointwise_initializer")

    def _channels(self, cin):
        return self.filters

    def _build_pointwise(self, channels):
        self.add_weight("pointwise_kernel", (1, 1, channels, self.filters), self.pointwise_initializer)

    def workspace_bytes(self, output_shape):
        oh, ow, _ = output_shape
        c = self.input_shape[2] * self.depth_multiplier
        return super().workspace_bytes(output_shape) + 4 * oh * ow * c  # the 1x1 convolution's im2col panel

    def _pointwise(self, ops, h):
        w = self.weights["pointwise_kernel"]
        z = ops.conv2d(h, w, None, (1, 1), "valid")

        def backprop(dz):
            dh, self.grads["pointwise_kernel"], _ = ops.conv2d_backward(dz, h, w, (1, 1), "valid", False)
            return dh

        return z, backprop

    def get_config(self):
        config = super().get_config()
        return {"name": self.name, "filters": self.filters, **config,
                "pointwise_initializer": initializers.name_of(self.pointwise_initializer)}
