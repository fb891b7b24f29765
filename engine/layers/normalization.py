"""Batch normalization over every axis but the last (channels-last)."""
import numpy as np

from .. import initializers
from ..lowering import Kernel
from ..validation import check_float
from .base import Layer
from .registry import register


@register
class BatchNormalization(Layer):
    """Normalize with batch statistics in training (updating the moving averages), moving statistics in inference.

    Weights in Keras order: gamma, beta, moving_mean, moving_variance. The moving variance is updated with the
    batch's biased variance, as Keras 3 does.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, name=None):
        super().__init__(name)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, where="BatchNormalization")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, None, low_open=True, where="BatchNormalization")

    def build(self, input_shape):
        c = input_shape[-1]
        self.add_weight("gamma", (c,), initializers.Ones())
        self.add_weight("beta", (c,), initializers.Zeros())
        self.add_weight("moving_mean", (c,), initializers.Zeros(), trainable=False)
        self.add_weight("moving_variance", (c,), initializers.Ones(), trainable=False)
        super().build(input_shape)

    def lower(self, lowering, step):
        wt, eps = self.weights, np.float32(self.epsilon)  # by reference: the moving statistics may still train
        return [Kernel("batch_norm", lambda shape: lowering.kernels.batch_norm_kernel(
            shape, wt["gamma"], wt["beta"], wt["moving_mean"], wt["moving_variance"], eps))]

    def forward(self, ops, x, ctx):
        gamma, beta = self.weights["gamma"], self.weights["beta"]
        eps = np.float32(self.epsilon)
        if not ctx.training:
            y = ops.batch_norm_infer(x, gamma, beta, self.weights["moving_mean"], self.weights["moving_variance"], eps)
            scale = gamma / np.sqrt(self.weights["moving_variance"] + eps)

            def backprop_infer(dy):
                return dy * scale

            return y, backprop_infer
        y, mean, var, inv_std = ops.batch_norm_train(x, gamma, beta, eps)
        m = np.float32(self.momentum)
        self.weights["moving_mean"][...] = m * self.weights["moving_mean"] + (1 - m) * mean
        self.weights["moving_variance"][...] = m * self.weights["moving_variance"] + (1 - m) * var

        def backprop(dy):
            dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, mean, inv_std, gamma)
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
            return dx

        return y, backprop

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon}
