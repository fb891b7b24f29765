"""Structured dropout for convolutional feature maps: ``DropBlock2D`` and ``MaxPoolingDropout2D``.

Both draw their random bits from the counter-based generator of the dropout masks (``ops.dropout_mask``): a pure
function of (seed, training step, layer, element index), keyed by the sample's row in the whole input as Dropout's
masks are (``offset = row * H * W * C``: one bit per input element), so they depend neither on the thread count nor
on the batch size, and a Monte-Carlo program draws exactly the executor's bits. DropBlock2D runs on its ops
(``ops.drop_block2d`` and its backward, which draws the blocks again; ``drop_block2d_kernel`` in Monte-Carlo
programs); MaxPoolingDropout2D's forward and backward are NumPy on the bits.

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
padded positions never win and do not count in ``n``. Monte-Carlo dropout samples the training rule.
"""
import numpy as np

from ..kernels.contract import dropout_key
from ..kernels.geometry import window_2d
from ..kernels.reference.dropout import drop_block_gamma
from ..lowering import Kernel
from ..validation import check_int
from .base import Layer
from .dropout import _check_rate, _check_seed
from .pooling import _Pooling2D
from .registry import register


def _identity(x):
    return x, lambda dy: dy


def _dropped(layer, ops, shape, rate, ctx):
    """Boolean array of ``shape`` from ``layer``'s stream: each element dropped with probability ``rate`` (element
    ``i`` of the sample at row ``r`` from stream index ``r * sample size + i``)."""
    key = dropout_key(ctx.seed if layer.seed is None else layer.seed, ctx.step, layer.stream)
    return ops.dropout_mask(tuple(shape), rate, key, ctx.row * int(np.prod(shape[1:]))) == 0


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

    def _key(self, ctx):
        return dropout_key(ctx.seed if self.seed is None else self.seed, ctx.step, self.stream)

    @staticmethod
    def _offset(ctx, shape):
        """Element ``i`` of the sample at row ``r`` draws from stream index ``r * sample size + i``."""
        return ctx.row * int(np.prod(shape[1:]))

    def forward(self, ops, x, ctx):
        if not ctx.dropout or self.rate == 0.0:
            return _identity(x)
        rate, b, key, offset = self.rate, self.block_size, self._key(ctx), self._offset(ctx, x.shape)
        y = ops.drop_block2d(x, rate, b, key, offset)
        return y, lambda dy: ops.drop_block2d_backward(dy, rate, b, key, offset)

    def lower(self, lowering, step):
        """Nothing without Monte-Carlo dropout; with it, the bound kernel, keyed as the forward."""
        if not lowering.mc or self.rate == 0.0:
            return []

        def bind(shape):
            run, y_shape = lowering.kernels.drop_block2d_kernel(shape, self.rate, self.block_size)
            return (lambda x, y, ctx: run(x, y, self._key(ctx), self._offset(ctx, shape))), y_shape

        return [Kernel(self.kind, bind, uses_ctx=True)]

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "block_size": self.block_size, "seed": self.seed}


@register
class MaxPoolingDropout2D(_Pooling2D):
    """Max pooling with its inputs dropped in training, probabilistic weighted pooling in inference (see the module
    docstring). The gradient in training goes to each window's first kept maximum (row-major, as MaxPooling2D's);
    in inference to each input with its weight ``q rate**(n - i)`` from its sorted position."""

    stochastic = property(lambda self: self.rate > 0.0)

    def __init__(self, rate, pool_size=(2, 2), strides=None, padding="valid", seed=None, name=None):
        super().__init__(pool_size, strides, padding, name)
        self.rate = _check_rate(rate, "MaxPoolingDropout2D")
        self.seed = _check_seed(seed, "MaxPoolingDropout2D")

    def lower(self, lowering, step):
        """Its own forward (weighted pooling, or the training rule with Monte-Carlo dropout): no pooling kernel."""
        return Layer.lower(self, lowering, step)

    def _geometry(self, shape):
        h, w = shape[1:3]
        return window_2d(h, w, self.pool_size, self.strides, self.padding)

    def _windows(self, a, fill):
        """``(N, OH, OW, C, K)``: each window's ``K = ph * pw`` inputs in row-major order, padding as ``fill``."""
        oh, ow, pads_h, pads_w = self._geometry(a.shape)
        (sh, sw), (ph, pw) = self.strides, self.pool_size
        ap = np.pad(a, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=fill)
        return np.stack([ap[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                         for i in range(ph) for j in range(pw)], axis=-1)

    def _scatter(self, dwin, shape):
        """The input gradient from per-window gradients ``(N, OH, OW, C, K)`` (overlapping windows add up)."""
        oh, ow, (pt, pb), (pl, pr) = self._geometry(shape)
        (sh, sw), (ph, pw) = self.strides, self.pool_size
        n, h, w, c = shape
        dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dwin.dtype)
        for i in range(ph):
            for j in range(pw):
                dxp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += dwin[..., i * pw + j]
        return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :])

    def weights_for(self, real):
        """Inference weights by sorted position (ascending, padding last) for windows whose real-input counts are
        ``real.sum(-1)``: ``q * rate**(n - 1 - i)`` for position ``i < n``, 0 for the padded positions."""
        n = real.sum(axis=-1, keepdims=True)
        i = np.arange(real.shape[-1])
        p = self.rate
        return np.where(i < n, (1.0 - p) * np.power(p, np.maximum(n - 1 - i, 0)), 0.0)

    def forward(self, ops, x, ctx):
        shape, t = x.shape, x.dtype.type
        real = self._windows(np.ones((1,) + shape[1:], dtype=bool), False)  # (1, OH, OW, C, K)
        if ctx.dropout:
            kept = self._windows(~_dropped(self, ops, shape, self.rate, ctx), False)
            win = np.where(kept, self._windows(x, 0), t(-np.inf))
            first = np.argmax(win, axis=-1)[..., None]  # the first kept maximum (row-major)
            any_kept = kept.any(axis=-1)
            y = np.where(any_kept, np.take_along_axis(win, first, -1)[..., 0], t(0))

            def backprop(dy):
                dwin = np.zeros(win.shape, dtype=dy.dtype)
                np.put_along_axis(dwin, first, np.where(any_kept, dy, 0)[..., None], -1)
                return self._scatter(dwin, shape)

            return np.ascontiguousarray(y), backprop
        win = np.where(real, self._windows(x, 0), t(np.inf))  # padding sorts last
        order = np.argsort(win, axis=-1, kind="stable")
        weights = self.weights_for(real).astype(x.dtype)  # by sorted position
        ranked = np.take_along_axis(win, order, -1)
        y = np.sum(np.where(weights != 0, ranked, t(0)) * weights, axis=-1)  # padding (inf) weighs 0

        def backprop(dy):
            dwin = np.zeros(win.shape, dtype=dy.dtype)
            np.put_along_axis(dwin, order, dy[..., None] * weights.astype(dy.dtype), -1)
            return self._scatter(dwin, shape)

        return np.ascontiguousarray(y), backprop

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
