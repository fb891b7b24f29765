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

    batch_statistics = True
    OPTIONS = ("activation",)
    #: training normalizes and clamps in one pass, and masks the gradient as its backward reads it
    #: (``batch_norm_relu_train``): no pass of the activation's own over the batch, forward or backward
    trains_with_activation = ("relu", "relu6")

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

    def channel_affine(self):
        """``(scale, shift)``: inference computes ``x * scale + shift`` per channel, from the current moving
        statistics (float32, the reference's expression for the scale). Inference programs fold it into a
        convolution or dense layer right before it (``dropcore.fusion``)."""
        wt, eps = self.weights, np.float32(self.epsilon)
        scale = wt["gamma"] / np.sqrt(wt["moving_variance"] + eps)
        return scale, wt["beta"] - wt["moving_mean"] * scale

    def lower(self, lowering, step):
        wt, eps = self.weights, np.float32(self.epsilon)  # by reference: the moving statistics may still train
        return [Kernel("batch_norm", lambda shape: lowering.kernels.batch_norm_kernel(
            shape, wt["gamma"], wt["beta"], wt["moving_mean"], wt["moving_variance"], eps))]

    def final_activation(self, opts):
        activation = opts.get("activation", "linear")
        return None if activation == "linear" else activation

    def forward(self, ops, x, ctx, activation="linear"):
        gamma, beta = self.weights["gamma"], self.weights["beta"]
        eps = np.float32(self.epsilon)
        if activation != "linear":
            if activation not in self.trains_with_activation:
                raise ValueError(f"{self.label} applies no activation {activation!r}; it applies "
                                 f"{', '.join(map(repr, self.trains_with_activation))}")
            if ctx.training and getattr(self, "sync_comm", None) is None:
                return self._forward_relu(ops, x, gamma, beta, eps, _RELU_CAPS[activation])
            return _then_relu(ops, activation, *self.forward(ops, x, ctx))
        if not ctx.training:
            y = ops.batch_norm_infer(x, gamma, beta, self.weights["moving_mean"], self.weights["moving_variance"], eps)
            scale = gamma / np.sqrt(self.weights["moving_variance"] + eps)

            def backprop_infer(dy):
                return dy * scale

            return y, backprop_infer
        comm = getattr(self, "sync_comm", None)
        if comm is not None:  # data-parallel training: the statistics of the global batch, over every rank
            return self._forward_synced(comm, x, gamma, beta, eps)
        y, mean, var, inv_std = ops.batch_norm_train(x, gamma, beta, eps)
        self._update_moving(mean, var)

        def backprop(dy):
            dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, mean, inv_std, gamma)
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
            return dx

        return y, backprop

    def _forward_relu(self, ops, x, gamma, beta, eps, cap):
        """Training's normalization with its ReLU (capped at ``cap`` when ``cap > 0``) in one kernel."""
        y, mean, var, inv_std = ops.batch_norm_relu_train(x, gamma, beta, eps, cap)
        self._update_moving(mean, var)

        def backprop(dy):
            dx, dgamma, dbeta = ops.batch_norm_relu_backward(dy, y, x, mean, inv_std, gamma, cap)
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
            return dx

        return y, backprop

    def _update_moving(self, mean, var):
        m = np.float32(self.momentum)
        self.weights["moving_mean"][...] = m * self.weights["moving_mean"] + (1 - m) * mean
        self.weights["moving_variance"][...] = m * self.weights["moving_variance"] + (1 - m) * var

    def _forward_synced(self, comm, x, gamma, beta, eps):
        """Training forward with the batch statistics summed over ``comm``'s ranks (float64, two passes: the mean,
        then the squared deviations from it); its backward sums the two per-channel reductions it needs over the
        ranks too. ``gamma``'s and ``beta``'s gradients stay this rank's share: the training step sums them."""
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        s = np.empty(c + 1)
        np.sum(x2, axis=0, dtype=np.float64, out=s[:c])
        s[c] = len(x2)
        comm.allreduce_sum(s)
        rows = s[c]
        mean64 = s[:c] / rows
        d = x2 - mean64.astype(np.float32)
        q = np.einsum("ij,ij->j", d, d, dtype=np.float64)
        comm.allreduce_sum(q)
        var64 = q / rows
        mean, var = mean64.astype(np.float32), var64.astype(np.float32)
        inv_std = (1.0 / np.sqrt(var64 + float(eps))).astype(np.float32)
        y = (d * (gamma * inv_std) + beta).reshape(x.shape)
        self._update_moving(mean, var)

        def backprop(dy):
            dy2 = dy.reshape(-1, c)
            t = np.empty(2 * c)
            np.sum(dy2, axis=0, dtype=np.float64, out=t[:c])
            t[c:] = np.einsum("ij,ij->j", dy2, d, dtype=np.float64)
            local = t.copy()
            comm.allreduce_sum(t)
            istd = inv_std.astype(np.float64)
            k0 = gamma.astype(np.float64) * istd
            self.grads["beta"] = local[:c].astype(np.float32)
            self.grads["gamma"] = (local[c:] * istd).astype(np.float32)
            # dx = gamma*istd/M * (M*dy - dbeta - xhat*dgamma), with dbeta and dgamma the global batch's sums
            a = k0.astype(np.float32)
            b = (-k0 * istd * (t[c:] * istd) / rows).astype(np.float32)
            cst = (-k0 * t[:c] / rows).astype(np.float32)
            return (dy2 * a + d * b + cst).reshape(dy.shape)

        return y, backprop

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon}


#: the ReLU each activation is, as ``batch_norm_relu_train``'s cap (0: none)
_RELU_CAPS = {"relu": 0.0, "relu6": 6.0}


def _then_relu(ops, activation, y, backprop):
    """``(activation(y), its backprop)`` on the separate activation ops: inference, and the synchronized
    statistics of data-parallel training."""
    z = getattr(ops, activation)(y)
    if activation == "relu":
        return z, lambda dz: backprop(ops.relu_backward(dz, z))
    return z, lambda dz: backprop(ops.relu6_backward(dz, y))
