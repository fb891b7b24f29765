"""Noise layers of Keras's dropout family: ``GaussianDropout``, ``GaussianNoise`` and ``AlphaDropout``.

Each is the identity in inference (an inference program has no step for it) and draws its noise while dropout is
on (``ctx.dropout``: training, and Monte-Carlo dropout). The noise comes from the counter-based generator of the
dropout masks: a pure function of (seed, training step, layer, element index), keyed by the sample's row in the
whole input (``offset``) as Dropout's masks are, so it depends neither on the thread count nor on the batch size,
and a Monte-Carlo program draws exactly the executor's noise. Each layer runs on an op that draws the noise and
applies it in one pass (``ops.gaussian_dropout``, ``ops.add_gaussian_noise``: Box-Muller on two hashed 32-bit
values per element, the values of ``ops.gaussian_noise``; ``ops.alpha_dropout``: Dropout's keep bits), and
Monte-Carlo programs bind their kernels (``gaussian_dropout_kernel``, ...). Only AlphaDropout with a general
``noise_shape`` (neither per element nor per channel) applies its mask in NumPy, as Dropout does with one.
"""
import numpy as np

from ..kernels.contract import dropout_key
from ..kernels.reference.dropout import ALPHA_P, alpha_dropout_affine
from ..lowering import Kernel, forward_kernel
from ..validation import check_float
from .base import Layer
from .dropout import Dropout, _check_rate, _check_seed
from .registry import register


def _identity(x):
    return x, lambda dy: dy


class _GaussianLayer(Layer):
    """Shared by the two Gaussian layers: the seed, the stream key, the per-row offset, when the noise is on and
    the Monte-Carlo lowering. A subclass defines ``_active``, ``_apply(ops, x, key, offset) -> (y, backprop)`` and
    ``_bound(kernels, shape) -> (run, y_shape)`` (its bound kernel)."""

    identity_in_inference = True
    stochastic = property(lambda self: self._active())

    def __init__(self, seed, name):
        super().__init__(name)
        self.seed = _check_seed(seed, type(self).__name__)

    def _key(self, ctx):
        return dropout_key(ctx.seed if self.seed is None else self.seed, ctx.step, self.stream)

    @staticmethod
    def _offset(ctx, shape):
        """Element ``i`` of the sample at row ``r`` draws from stream index ``r * sample size + i``."""
        return ctx.row * int(np.prod(shape[1:]))

    def _active(self):
        raise NotImplementedError

    def _apply(self, ops, x, key, offset):
        raise NotImplementedError

    def _bound(self, kernels, shape):
        raise NotImplementedError

    def forward(self, ops, x, ctx):
        """Standard normal noise of ``x.shape`` applied while dropout is on; otherwise the identity."""
        if not ctx.dropout or not self._active():
            return _identity(x)
        return self._apply(ops, x, self._key(ctx), self._offset(ctx, x.shape))

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the layer's bound kernel, keyed as its forward."""
        if not lowering.mc or not self._active():
            return []

        def bind(shape):
            run, y_shape = self._bound(lowering.kernels, shape)
            return (lambda x, y, ctx: run(x, y, self._key(ctx), self._offset(ctx, shape))), y_shape

        return [Kernel(self.step_name, bind, uses_ctx=True)]


@register
class GaussianDropout(_GaussianLayer):
    """Multiply the inputs by noise drawn from N(1, rate / (1 - rate)) while dropout is on (training, Monte-Carlo
    dropout); the identity in inference. ``seed``: fixes this layer's noise regardless of the seed given to
    ``fit``."""

    def __init__(self, rate, seed=None, name=None):
        self.rate = _check_rate(rate, "GaussianDropout")
        super().__init__(seed, name)

    def _active(self):
        return self.rate > 0.0

    def _apply(self, ops, x, key, offset):
        y, m = ops.gaussian_dropout(x, self.rate, key, offset)  # m: the multiplier, kept for the backward
        return y, lambda dy: ops.gaussian_dropout_backward(dy, m)

    def _bound(self, kernels, shape):
        return kernels.gaussian_dropout_kernel(shape, self.rate)

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed}


@register
class GaussianNoise(_GaussianLayer):
    """Add noise drawn from N(0, stddev**2); the identity in inference.

    Keras adds it when the layer is called with ``training=True``, and Keras users run Monte-Carlo dropout by calling
    the model with ``training=True``, which adds this noise too; so here it is added whenever dropout is on
    (``ctx.dropout``): in training and in Monte-Carlo predictions (``mc_samples``), never in plain inference.
    """

    def __init__(self, stddev, seed=None, name=None):
        self.stddev = check_float(stddev, "stddev", 0.0, None, where="GaussianNoise")
        super().__init__(seed, name)

    def _active(self):
        return self.stddev > 0.0

    def _apply(self, ops, x, key, offset):
        return ops.add_gaussian_noise(x, self.stddev, key, offset), lambda dy: dy

    def _bound(self, kernels, shape):
        return kernels.gaussian_noise_kernel(shape, self.stddev)

    def get_config(self):
        return {"name": self.name, "stddev": self.stddev, "seed": self.seed}


@register
class AlphaDropout(Dropout):
    """Dropout that keeps SELU's self-normalization (Keras's formula): a dropped unit becomes ``alpha' = -alpha *
    scale`` (SELU's negative saturation), then every unit ``a * x + b`` with ``a = ((1 - rate) (1 + rate
    alpha'**2)) ** -0.5`` and ``b = -a alpha' rate``, so zero-mean unit-variance inputs keep mean 0 and variance 1.
    The identity in inference. ``noise_shape`` and ``seed`` as for Dropout (whose masks it draws: a unit is kept
    exactly where Dropout with the same rate, noise shape and stream keeps it). Unlike Dropout it takes no fused
    ReLU.
    """

    OPTIONS = ()
    absorbs_relu = False

    def _affine(self):
        return alpha_dropout_affine(self.rate)

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the bound kernel (per element or per channel), or, for a
        general noise shape, the layer's own forward."""
        if not lowering.mc or self.rate == 0.0:
            return []

        def bind(shape):
            mode = self._mode(shape)
            if not isinstance(mode, str):
                return forward_kernel(self, lowering, step.opts).bind(shape)
            run, y_shape = lowering.kernels.alpha_dropout_kernel(shape, self.rate, mode == "channel")
            return (lambda x, y, ctx: run(x, y, self._key(ctx), self._offset(ctx, shape, mode))), y_shape

        return [Kernel(self.step_name, bind, uses_ctx=True)]

    def forward(self, ops, x, ctx):
        if not ctx.dropout or self.rate == 0.0:
            return _identity(x)
        mode, rate, key = self._mode(x.shape), self.rate, self._key(ctx)
        offset = self._offset(ctx, x.shape, mode)
        if isinstance(mode, str):
            per_channel = mode == "channel"
            y = ops.alpha_dropout(x, rate, key, per_channel, offset)
            return y, lambda dy: ops.alpha_dropout_backward(dy, rate, key, per_channel, offset)
        # a general noise shape: its keep bits broadcast (as Dropout's mask with one is), the affine map in NumPy
        kept = ops.dropout_mask(mode, rate, key, offset) != 0
        a, b = self._affine()
        t = x.dtype.type
        y = np.where(kept, x * t(a) + t(b), t(a * ALPHA_P + b))
        return y, lambda dy: np.where(kept, dy * t(a), t(0))
