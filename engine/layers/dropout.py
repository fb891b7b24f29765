"""Inverted dropout: per-element (``Dropout``) and per-channel (``SpatialDropout2D``).

In training each unit is kept with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``, so inference is the
identity. The mask is a pure function of (seed, training step, layer, element index) from a counter-based hash:
the backward recomputes it instead of storing it, and the same seed gives the same masks on any thread count.
"""
import numbers

import numpy as np

from ..kernels.contract import dropout_key
from ..lowering import Kernel, activation_kernels
from ..validation import check_float, check_int, invalid
from .base import Layer
from .registry import register


def _check_rate(rate, where):
    return check_float(rate, "rate", 0.0, 1.0, high_open=True, where=where)


def _check_seed(seed, where):
    return None if seed is None else check_int(seed, "seed", 0, where)


@register
class Dropout(Layer):
    """Randomly zero a fraction ``rate`` of the inputs in training, scaling the rest by ``1 / (1 - rate)``.

    ``noise_shape`` (Keras): the shape of the mask, broadcast over the input; ``None`` entries take the input's
    size. ``seed``: fixes this layer's masks regardless of the seed given to ``fit``.
    Followed directly after a ReLU (or a Conv2D/Dense with ``activation="relu"``), the executor runs both as one
    fused ReLU-dropout kernel.
    """

    per_channel = False
    #: ``relu``: a ReLU moved into this layer's kernel (one fused relu_dropout pass, maskless backward)
    OPTIONS = ("relu",)
    absorbs_relu = True
    identity_in_inference = True
    stochastic = property(lambda self: self.rate > 0.0)
    rate_is_dropout = True

    def __init__(self, rate, noise_shape=None, seed=None, name=None):
        super().__init__(name)
        where = type(self).__name__
        self.rate = _check_rate(rate, where)
        self.seed = _check_seed(seed, where)
        if noise_shape is not None:
            try:
                noise_shape = tuple(noise_shape)
            except TypeError:
                raise invalid("noise_shape", "None or a tuple of ints/None", noise_shape, where) from None
            for d in noise_shape:
                if d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1):
                    raise invalid("noise_shape", "None or a tuple of positive ints/None", noise_shape, where)
        self.noise_shape = noise_shape

    def build(self, input_shape):
        if self.noise_shape is not None and len(self.noise_shape) != len(input_shape) + 1:
            raise ValueError(
                f"{self.label}: noise_shape {self.noise_shape} must have one entry per input dimension "
                f"(batch included: {len(input_shape) + 1}); input shape is (None, {', '.join(map(str, input_shape))})"
            )
        super().build(input_shape)

    def _mode(self, shape):
        """"element", "channel" or a resolved general noise shape, for an input of ``shape``."""
        if self.per_channel:
            return "channel"
        if self.noise_shape is None:
            return "element"
        ns = tuple(s if d is None else d for d, s in zip(self.noise_shape, shape))
        for d, s in zip(ns, shape):
            if d not in (1, s):
                raise ValueError(f"{self.label}: noise_shape {self.noise_shape} does not broadcast to input {shape}")
        if ns == tuple(shape):
            return "element"
        if len(shape) >= 2 and ns == (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],):
            return "channel"
        return ns

    def _key(self, ctx):
        return dropout_key(ctx.seed if self.seed is None else self.seed, ctx.step, self.stream)

    def _offset(self, ctx, shape, mode):
        """Where this batch's masks start in the stream: its first row times a sample's mask elements (none for a
        ``noise_shape`` whose batch entry is 1: one mask for every sample), so that a sample's mask follows its
        row in the whole input."""
        if not ctx.row or (self.noise_shape is not None and self.noise_shape[0] == 1):
            return 0
        if mode == "element":
            per_row = int(np.prod(shape[1:]))
        elif mode == "channel":
            per_row = shape[-1]
        else:
            per_row = int(np.prod(mode[1:]))
        return ctx.row * per_row

    def lower(self, lowering, step):
        relu = bool(step.opts.get("relu"))
        if not lowering.mc or self.rate == 0.0:  # the identity
            return activation_kernels(lowering, "relu" if relu else "linear")
        rate = self.rate

        def bind(shape):
            mode = self._mode(shape)
            if isinstance(mode, str):
                run, _ = lowering.kernels.dropout_kernel(shape, rate, mode == "channel", relu)
                return (lambda x, y, ctx: run(x, y, self._key(ctx), self._offset(ctx, shape, mode))), tuple(shape)

            def run_mask(x, y, ctx):  # a general noise shape: its mask, broadcast
                mask = lowering.ops.dropout_mask(mode, rate, self._key(ctx), self._offset(ctx, shape, mode))
                np.multiply(np.maximum(x, np.float32(0)) if relu else x, mask, out=y)
            return run_mask, tuple(shape)

        return [Kernel("dropout", bind, uses_ctx=True)]

    def forward(self, ops, x, ctx, relu=False):
        if not ctx.dropout or self.rate == 0.0:
            if relu:
                y = ops.relu(x)
                return y, lambda dy: ops.relu_backward(dy, y)
            return x, lambda dy: dy
        key = self._key(ctx)
        mode = self._mode(x.shape)
        rate, offset = self.rate, self._offset(ctx, x.shape, mode)
        if isinstance(mode, str):
            per_channel = mode == "channel"
            if relu:
                y = ops.relu_dropout(x, rate, key, per_channel, offset)
                return y, lambda dy: ops.relu_dropout_backward(dy, y, rate)
            y = ops.dropout(x, rate, key, per_channel, offset)
            return y, lambda dy: ops.dropout_backward(dy, rate, key, per_channel, offset)
        mask = ops.dropout_mask(mode, rate, key, offset)
        y = np.multiply(np.maximum(x, np.float32(0)) if relu else x, mask)
        if relu:
            return y, lambda dy: ops.relu_dropout_backward(dy, y, rate)
        return y, lambda dy: dy * mask

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}


@register
class SpatialDropout2D(Dropout):
    """Drop whole feature maps: one keep/drop decision per (sample, channel), for (N, H, W, C) inputs."""

    per_channel = True

    def __init__(self, rate, seed=None, name=None):
        super().__init__(rate, None, seed, name)

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        super().build(input_shape)

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed}
