"""Structured dropout for convolutional feature maps: ``DropBlock2D`` and ``MaxPoolingDropout2D``.

Both draw their random bits from the counter-based generator of the dropout masks: a pure function of (seed,
training step, layer, element index), keyed by the sample's row in the whole input as Dropout's masks are (``offset
= row * H * W * C``: one bit per input element), so they depend neither on the thread count nor on the batch size,
and a Monte-Carlo program draws exactly the executor's bits. Both run on ops of the dropout family, which draw the
bits themselves: ``ops.drop_block2d`` (its backward draws the blocks again), ``ops.max_pool_dropout2d`` (training:
the max and its tap) and ``ops.weighted_pool2d`` (inference), and programs bind their kernels.

``DropBlock2D`` (Ghiasi, Lin, Le 2018): while dropout is on, each (sample, channel) map draws block centres with
probability ``gamma = rate / block_size**2 * H W / ((H - block_size + 1) (W - block_size + 1))`` among the centres
whose block lies wholly inside the map (the paper's and timm's valid region: no block is clipped at a border), and
each centre zeroes its ``block_size x block_size`` square. The kept units of each (sample, channel) map are scaled
by ``H W / kept`` (a map with nothing kept is all zero): per map rather than per batch (timm, keras-cv), so that a
sample's output does not depend on the other samples of its batch. For an even ``block_size`` the centre is the
lower-right one of the middle four; the squares are the same either way. Overlapping blocks make the dropped
fraction somewhat below ``rate`` (the paper's gamma ignores overlaps). The identity in inference.

``MaxPoolingDropout2D`` (Wu & Gu 2015): max pooling whose inputs are dropped with probability ``rate`` in training
(one keep bit per input element, shared by the windows that overlap on it, as the paper drops units of the feature
map before pooling; kept values are not rescaled); a window with every input dropped gives 0. In inference,
probabilistic weighted pooling: with the window's ``n`` activations sorted ``a_1 <= ... <= a_n`` and ``q = 1 -
rate``, the output ``sum_i q rate**(n - i) a_i``, the expectation of the training output. With ``padding="same"``
padded positions never win and do not count in ``n``. Monte-Carlo dropout samples the training rule. The weighted
sum adds its terms in sorted order in float32 (``reference.dropout.weighted_pool2d``), where this layer's former
NumPy code summed them in NumPy's pairwise order: the two differ by at most 1.2 float32 epsilons of ``sum_i |w_i
a_i|`` (measured over 16x15x15x8 inputs, 3x3 windows, stride 2, "same").
"""
import numpy as np

from ..kernels.contract import dropout_key
from ..kernels.reference.dropout import drop_block_gamma, pool_windows
from ..lowering import Kernel
from ..validation import check_int
from .base import Layer
from .dropout import _check_rate, _check_seed
from .pooling import _Pooling2D
from .registry import register


def _identity(x):
    return x, lambda dy: dy


def _key(layer, ctx):
    """``layer``'s stream key at this step (its own seed, or the run's)."""
    return dropout_key(ctx.seed if layer.seed is None else layer.seed, ctx.step, layer.stream)


def _offset(ctx, shape):
    """Element ``i`` of the sample at row ``r`` draws from stream index ``r * sample size + i``."""
    return ctx.row * int(np.prod(shape[1:]))


@register
class DropBlock2D(Layer):
    """Drop contiguous ``block_size x block_size`` squares of each feature map in training (see the module
    docstring), for (N, H, W, C) inputs; ``block_size`` must fit in the map. The identity in inference."""

    identity_in_inference = True
    stochastic = property(lambda self: self.rate > 0.0)

    def __init__(self, rate, block_size, seed=None, name=None):
        super().__init__(name)
        self.rate = _check_rate(rate, "DropBlock2D")
        self.seed = _check_seed(seed, "DropBlock2D")
        self.block_size = check_int(block_size, "block_size", 1, "DropBlock2D")

    def build(self, input_shape):
        self.check_rank(input_shape, 3, "(batch, height, width, channels)")
        h, w = input_shape[:2]
        if self.block_size > min(h, w):
            raise ValueError(f"{self.label}: block_size {self.block_size} does not fit in a {h}x{w} feature map")
        super().build(input_shape)

    def gamma(self, h, w):
        """The probability of a block centre at each valid position of an ``h x w`` map (the paper's formula)."""
        return drop_block_gamma(self.rate, self.block_size, h, w)

    def forward(self, ops, x, ctx):
        if not ctx.dropout or self.rate == 0.0:
            return _identity(x)
        rate, b, key, offset = self.rate, self.block_size, _key(self, ctx), _offset(ctx, x.shape)
        y = ops.drop_block2d(x, rate, b, key, offset)
        return y, lambda dy: ops.drop_block2d_backward(dy, rate, b, key, offset)

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the bound kernel, keyed as the forward."""
        if not lowering.mc or self.rate == 0.0:
            return []

        def bind(shape):
            run, y_shape = lowering.kernels.drop_block2d_kernel(shape, self.rate, self.block_size)
            return (lambda x, y, ctx: run(x, y, _key(self, ctx), _offset(ctx, shape))), y_shape

        return [Kernel(self.step_name, bind, uses_ctx=True)]

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "block_size": self.block_size, "seed": self.seed}


@register
class MaxPoolingDropout2D(_Pooling2D):
    """Max pooling with its inputs dropped in training, probabilistic weighted pooling in inference (see the module
    docstring), on its ops (``ops.max_pool_dropout2d``, ``ops.weighted_pool2d`` and their backwards). The gradient
    in training goes to each window's first kept maximum (row-major, as MaxPooling2D's); in inference to each input
    with its weight ``q rate**(n - i)`` from its sorted position."""

    stochastic = property(lambda self: self.rate > 0.0)

    def __init__(self, rate, pool_size=(2, 2), strides=None, padding="valid", seed=None, name=None):
        super().__init__(pool_size, strides, padding, name)
        self.rate = _check_rate(rate, "MaxPoolingDropout2D")
        self.seed = _check_seed(seed, "MaxPoolingDropout2D")

    def lower(self, lowering, step):
        """Weighted pooling's bound kernel, or with Monte-Carlo dropout the training rule's, keyed as the forward."""
        args = (self.rate, self.pool_size, self.strides, self.padding)
        if not lowering.mc:
            return [Kernel(self.step_name, lambda shape: lowering.kernels.weighted_pool2d_kernel(shape, *args))]

        def bind(shape):
            run, y_shape = lowering.kernels.max_pool_dropout2d_kernel(shape, *args)
            return (lambda x, y, ctx: run(x, y, _key(self, ctx), _offset(ctx, shape))), y_shape

        return [Kernel(self.step_name, bind, uses_ctx=True)]

    def _windows(self, a, fill):
        """``(N, OH, OW, C, K)``: each window's inputs of ``a`` in row-major order, padding as ``fill`` (the ONNX
        exporter counts each window's real inputs with it)."""
        return pool_windows(a, self.pool_size, self.strides, self.padding, fill)

    def forward(self, ops, x, ctx):
        pool, strides, padding, rate = self.pool_size, self.strides, self.padding, self.rate
        if ctx.dropout:
            y, arg = ops.max_pool_dropout2d(x, rate, _key(self, ctx), pool, strides, padding, _offset(ctx, x.shape))
            return y, lambda dy: ops.max_pool_dropout2d_backward(dy, arg, x.shape, pool, strides, padding)
        y = ops.weighted_pool2d(x, rate, pool, strides, padding)
        return y, lambda dy: ops.weighted_pool2d_backward(dy, x, rate, pool, strides, padding)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
