"""Noise layers of Keras's dropout family: ``GaussianDropout``, ``GaussianNoise`` and ``AlphaDropout``.

Each is the identity in inference (an inference program has no step for it) and draws its noise while dropout is
on (``ctx.dropout``: training, and Monte-Carlo dropout). The noise comes from the counter-based generator of the
dropout masks: a pure function of (seed, training step, layer, element index), keyed by the sample's row in the
whole input (``offset``) as Dropout's masks are, so it depends neither on the thread count nor on the batch size,
and a Monte-Carlo program (which runs the layer's own forward on the "cython" kernel set) draws exactly the
executor's noise. Gaussian noise: ``ops.gaussian_noise`` (Box-Muller on two hashed 32-bit values per element);
AlphaDropout's keep bits: ``ops.dropout_mask``.
"""
import math

import numpy as np

from ..activations import SELU_ALPHA, SELU_SCALE
from ..kernels.contract import dropout_key
from ..kernels.reference.dropout import noise_shape as channel_noise_shape
from ..validation import check_float
from .base import Layer
from .dropout import Dropout, _check_rate, _check_seed
from .registry import register

#: AlphaDropout sets dropped units to SELU's negative saturation.
ALPHA_P = -SELU_ALPHA * SELU_SCALE


def _identity(x):
    return x, lambda dy: dy


class _GaussianLayer(Layer):
    """Shared by the two Gaussian layers: the seed, the stream key, the per-row offset, when the noise is on and
    the Monte-Carlo lowering. A subclass defines ``_active`` and ``_apply(x, z) -> (y, backprop)`` for standard
    normal noise ``z``."""

    identity_in_inference = True
    stochastic = property(lambda self: self._active())

    def __init__(self, seed, name):
        super().__init__(name)
        self.seed = _check_seed(seed, type(self).__name__)

    def _key(self, ctx):
        return dropout_key(ctx.seed if self.seed is None else self.seed, ctx.step, self.stream)

    def _active(self):
        raise NotImplementedError

    def _apply(self, x, z):
        raise NotImplementedError

    def forward(self, ops, x, ctx):
        """Standard normal noise of ``x.shape`` (element ``i`` of a sample at row ``r`` from stream index
        ``r * sample size + i``) applied while dropout is on; otherwise the identity."""
        if not ctx.dropout or not self._active():
            return _identity(x)
        z = ops.gaussian_noise(x.shape, self._key(ctx), ctx.row * int(np.prod(x.shape[1:])))
        return self._apply(x, z)

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the layer's own forward (its noise on ``lowering.ops``)."""
        if not lowering.mc or not self._active():
            return []
        return super().lower(lowering, step)


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

    def _apply(self, x, z):
        z *= np.float32(math.sqrt(self.rate / (1.0 - self.rate)))
        z += np.float32(1.0)
        m = z.astype(x.dtype, copy=False)
        return x * m, lambda dy: dy * m

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

    def _apply(self, x, z):
        z *= np.float32(self.stddev)
        return x + z.astype(x.dtype, copy=False), lambda dy: dy

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
        rate = self.rate
        a = ((1.0 - rate) * (1.0 + rate * ALPHA_P ** 2)) ** -0.5
        return a, -a * ALPHA_P * rate

    def _kept(self, ops, shape, ctx):
        """Boolean keep bits of the (broadcastable) noise shape, for an input of ``shape``."""
        mode = self._mode(shape)
        ns = tuple(shape) if mode == "element" else channel_noise_shape(shape, True) if mode == "channel" else mode
        return ops.dropout_mask(ns, self.rate, self._key(ctx), self._offset(ctx, shape, mode)) != 0

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the layer's own forward (its masks on ``lowering.ops``)."""
        if not lowering.mc or self.rate == 0.0:
            return []
        return Layer.lower(self, lowering, step)

    def forward(self, ops, x, ctx):
        if not ctx.dropout or self.rate == 0.0:
            return _identity(x)
        kept = self._kept(ops, x.shape, ctx)
        a, b = self._affine()
        t = x.dtype.type
        y = np.where(kept, x * t(a) + t(b), t(a * ALPHA_P + b))
        return y, lambda dy: np.where(kept, dy * t(a), t(0))
