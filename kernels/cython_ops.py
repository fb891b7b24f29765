"""The Cython kernels (``_cy_*.pyx``, compiled ahead of time) behind the kernel contract's signatures: the "cython"
kernel set, which training and inference run on by default.

The forwards and their bound kernels are here; the training ops (backward passes, the training forms of
``conv2d_max_pool`` and batch norm, the losses, Gaussian noise) are in ``cython_train_gemm`` and
``cython_train_elementwise``, imported at the end. Imports no Numba, so a process that trains or serves never loads
or compiles it. Importing this module raises ImportError when the extensions were not built (no compiler): callers
fall back to the Numba kernels (:func:`dropcore.info` reports which is active).
"""
import threading

import numpy as np

from .compiled import BLAS_SINGLE_THREAD, HAVE_AVX512, HAVE_FAST_GEMM  # noqa: F401  (dropcore.info reads them)
from .compiled import elementwise as _ew
from .compiled import gemm as _gemm
from .compiled import pool as _pool
from .alignment import aligned_empty
from .geometry import conv_path, window_2d, windows_inside, winograd4_pays, winograd_pays
from .reference.activation import ACTIVATION_ALPHA, CODES, epilogue as _epilogue  # noqa: F401
from .reference.dropout import (ALPHA_P, alpha_dropout_affine, drop_block_gamma, dropout_scale,
                                gaussian_dropout_scale, pool_weights)
from .reference.elementwise import tiled_rows
from .reference.rng import keep_threshold

_NO_BIAS = np.empty(0, dtype=np.float32)


def _c32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_conv(x_shape, w, b):
    """``w``, after checking that it fits inputs of ``x_shape`` and the bias ``b``: the C kernels trust the shapes
    (a mismatch would read out of bounds), so the bound kernels check them once, here."""
    if len(x_shape) != 4 or w.ndim != 4 or x_shape[3] != w.shape[2] or (
            b is not None and np.shape(b) != (w.shape[3],)):
        raise ValueError(f"conv2d: x has {x_shape[-1]} channels, w takes {w.shape[2] if w.ndim == 4 else '?'} "
                         f"(w shape {w.shape}, b shape {None if b is None else np.shape(b)}): expected x (N, H, W, "
                         f"cin), w (kh, kw, cin, cout), b (cout,)")
    return w


def _winograd(w, tile=2):
    """A function giving the Winograd F(``tile`` x ``tile``, 3x3) transform of the 3x3 kernel ``w``
    (``_gemm.winograd_weights``, or ``winograd4_weights`` for ``tile=4``) for one call: worked out once when ``w``
    is read-only (a Predictor's frozen weights); otherwise (a program bound to a model that trains reads its
    weights by reference: they change in place) again whenever ``w`` differs from the
    weights the calling thread's transform was made from, which it keeps a copy of. The comparison is exact and
    cheaper than the transform (Zen 3, 3 x 3 x 64 x 64: 12.6 against 60.7 us; 32 x 64: 4.9 against 7.4): a model
    predicting between training steps gets a fresh transform, one predicting again and again reuses it. Always
    64-byte aligned: the GEMMs read it as vectors."""
    cin, cout = w.shape[2:]
    points, weights = (16, _gemm.winograd_weights) if tile == 2 else (36, _gemm.winograd4_weights)
    if not w.flags.writeable:
        u = aligned_empty((points, cin, cout))
        weights(w, u)
        return lambda: u
    local = threading.local()

    def transform():
        u = getattr(local, "u", None)
        if u is None:  # this thread's first call: its buffers
            u = local.u = aligned_empty((points, cin, cout))
            local.source = np.empty_like(w)
            local.fresh = False
        if not local.fresh or not np.array_equal(w, local.source):  # NaN weights: never equal, always redone
            weights(w, u)
            np.copyto(local.source, w)
            local.fresh = True
        return u

    return transform


# --- bound kernels: the call a layer makes, with its geometry worked out once, filling preallocated outputs -------
# ``conv2d`` and the other forwards below use them per call; ``dropcore.program`` binds them once per batch size.

def conv2d_kernel(x_shape, w, b, strides, padding, relu=False, activation=None, alpha=None):
    """``(run, y_shape)``: ``run(x, y)`` fills the preallocated ``y`` with ``conv2d(x, w, b, ...)`` for inputs of
    ``x_shape``, on the kernel that suits the layer (direct, Winograd's tiles, implicit GEMM or im2col panels).
    ``activation`` (a name of :data:`CODES`; ``alpha``: its parameter, see :data:`ACTIVATION_ALPHA`) is applied in
    the kernel's output pass, to each block of rows right after it is written, with the bits of the stand-alone
    op."""
    n, h, wd, _ = x_shape
    w = _check_conv(x_shape, _c32(w), b)
    kh, kw, _, cout = w.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, (kh, kw), strides, padding)
    bias, has_bias, (sh, sw) = _NO_BIAS if b is None else _c32(b), b is not None, strides
    fused_relu, act, a = _epilogue(activation, alpha)
    relu, shape = bool(relu) or fused_relu, (n, oh, ow, cout)
    if winograd4_pays(w.shape, strides, _gemm.HAVE_FAST_GEMM):
        u = _winograd(w, 4)
        return _takes_residual(lambda x, y, r=None, relu=relu: _gemm.conv2d_winograd4(
            x, u(), bias, has_bias, pt, pl, oh, ow, y, relu, False, act, a, r)), shape
    if winograd_pays(w.shape, strides, _gemm.HAVE_WINOGRAD):
        u = _winograd(w)
        return _takes_residual(lambda x, y, r=None, relu=relu: _gemm.conv2d_winograd(
            x, u(), bias, has_bias, pt, pl, oh, ow, y, relu, False, act, a, r)), shape
    path = conv_path((h, wd), w.shape, strides, padding, _gemm.HAVE_FAST_GEMM)
    if path == "direct":
        padded = not windows_inside((h, wd), w.shape, strides, (pt, pl), (oh, ow))
        return _takes_residual(lambda x, y, r=None, relu=relu: _gemm.conv2d_direct(
            x, w, bias, has_bias, sh, sw, pt, pl, padded, y, relu, act, a, r)), shape
    if path == "implicit":
        return _takes_residual(lambda x, y, r=None, relu=relu: _gemm.conv2d_implicit(
            x, w, bias, has_bias, sh, sw, y, relu, act, a, r)), shape
    return _takes_residual(lambda x, y, r=None, relu=relu: _gemm.conv2d_forward(
        x, w, bias, has_bias, sh, sw, pt, pl, y, relu, act, a, r)), shape


def _takes_residual(run):
    """Mark a bound convolution ``run(x, y, r=None, relu=...)`` whose kernel adds a residual operand ``r`` to each
    block of its output rows, before the ReLU (``relu``), while they are in cache (``residual_kernel``)."""
    run.takes_residual = True
    return run


def conv2d_max_pool_kernel(x_shape, w, b, strides, padding, relu, pool):
    """``(run, y_shape)`` for ``max_pool2d(conv2d(x, ...), pool, pool, "valid")`` in one pass (the convolution's
    output stays in cache), or ``None`` where only the two separate kernels apply (the generic variant, or a layer
    that runs on im2col panels and not on Winograd's tiles, see ``geometry.winograd_pays``)."""
    n, h, wd, _ = x_shape
    w = _check_conv(x_shape, _c32(w), b)
    kh, kw, _, cout = w.shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, (kh, kw), strides, padding)
    if oh < pool[0] or ow < pool[1]:
        return None
    bias, has_bias = _NO_BIAS if b is None else _c32(b), b is not None
    if tuple(pool) == (2, 2) and winograd4_pays(w.shape, strides, _gemm.HAVE_FAST_GEMM):
        # each 4x4 tile of F(4x4)'s outputs holds four windows of the pooling
        u, relu = _winograd(w, 4), bool(relu)
        return (lambda x, y: _gemm.conv2d_winograd4(x, u(), bias, has_bias, pt, pl, oh, ow, y, relu, True)), \
            (n, oh // 2, ow // 2, cout)
    if tuple(pool) == (2, 2) and winograd_pays(w.shape, strides, _gemm.HAVE_WINOGRAD):
        # each 2x2 tile of Winograd's outputs is one window of the pooling: one pooled pixel a tile
        u, relu = _winograd(w), bool(relu)
        return (lambda x, y: _gemm.conv2d_winograd(x, u(), bias, has_bias, pt, pl, oh, ow, y, relu, True)), \
            (n, oh // 2, ow // 2, cout)
    path = conv_path((h, wd), w.shape, strides, padding, _gemm.HAVE_FAST_GEMM)
    if path == "im2col":
        return None
    direct = path == "direct"
    padded = not windows_inside((h, wd), w.shape, strides, (pt, pl), (oh, ow))
    bias, has_bias, relu, (sh, sw), (ph, pw) = _NO_BIAS if b is None else _c32(b), b is not None, bool(relu), \
        strides, pool
    return (lambda x, y: _gemm.conv2d_max_pool(x, w, bias, has_bias, sh, sw, pt, pl, direct, padded, oh, ow, ph, pw,
                                               y, relu)), (n, oh // ph, ow // pw, cout)


def residual_kernel(kernel, relu=False):
    """``(run, y_shape)`` from a bound kernel ``(run, y_shape)`` (a linear convolution's): ``run(x, r, y)`` fills
    ``y`` with ``kernel(x) + r``, then the ReLU when ``relu``: a residual ``Add`` (and the ReLU after it) in the
    convolution's step, without a buffer of their own. ``conv2d_kernel``'s kernels add ``r`` to each block of rows
    they write, while it is in cache (the same bits); any other kernel's output gets it in a pass of its own after.

    Measured on the Zen 3 (3x3 "same" steps with ReLU, the shapes of the breadth ResNet-8's three blocks, old and
    new alternating in one process): 1.05x faster on each at batch 1 (one and two threads), 1.04-1.07x at batch 64
    on two threads (16 -> 16 at 32 x 32: 3.29 -> 3.07 ms)."""
    conv, y_shape = kernel
    relu = bool(relu)
    if getattr(conv, "takes_residual", False):
        return (lambda x, r, y: conv(x, y, r, relu)), y_shape

    def run(x, r, y):
        conv(x, y)
        np.add(y, r, out=y)
        if relu:
            flat = y.reshape(-1)
            _ew.relu_forward(flat, flat)  # in place: each element read before it is written

    return run, y_shape


def dense_kernel(x_shape, w, b, relu=False, activation=None, alpha=None):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with ``dense(x, w, b, relu)`` for 2-D inputs of ``x_shape``;
    ``activation`` and ``alpha`` as :func:`conv2d_kernel`'s, applied to each block of outputs while in cache."""
    w = _c32(w)
    if len(x_shape) != 2 or x_shape[1] != w.shape[0] or (b is not None and np.shape(b) != (w.shape[1],)):
        raise ValueError(f"dense: x has {x_shape[-1]} features, w has {w.shape[0]} rows and {w.shape[1]} columns, "
                         f"b has shape {None if b is None else np.shape(b)}: expected x (N, {w.shape[0]}) and b "
                         f"({w.shape[1]},)")
    bias, has_bias = _NO_BIAS if b is None else _c32(b), b is not None
    fused_relu, act, a = _epilogue(activation, alpha)
    relu = bool(relu) or fused_relu
    return (lambda x, y: _gemm.dense_forward(x, w, bias, has_bias, y, relu, act, a)), (x_shape[0], w.shape[1])


def pool2d_kernel(x_shape, pool, strides, padding, average):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with the max (or, with ``average``, mean) pool of ``x``."""
    n, h, wd, c = x_shape
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, pool, strides, padding)
    return (lambda x, y: _pool.pool2d_forward(x, pool[0], pool[1], strides[0], strides[1], pt, pl, y, average)), \
        (n, oh, ow, c)


def pool2d_parts_kernel(x_shapes, pool, strides, padding, average):
    """``(run, y_shape)``: ``run(*xs, y)`` fills ``y`` with the max (or mean) pool of the arrays ``xs`` (of
    ``x_shapes``, NHWC) concatenated along the channels, each read where it is (no concatenated copy): the bits of
    ``concatenate_kernel`` then ``pool2d_kernel``.

    Measured on the Zen 3 (the breadth inception, whose two Concatenates each feed an AveragePooling2D(2); programs
    with and without the rule alternating in one process, two runs): ``Predictor.predict`` 1.04-1.06x faster at
    batch 1 on one thread, 1.04x on two; 1.02-1.03x at batch 64 on one, 1.01-1.04x on two."""
    shapes = [tuple(s) for s in x_shapes]
    n, h, wd, _ = shapes[0]
    if any(len(s) != 4 or s[:3] != (n, h, wd) for s in shapes):
        raise ValueError(f"pool2d_parts_kernel: the parts have shapes {shapes}, expected (N, H, W, C_i) with the "
                         f"same N, H, W")
    oh, ow, (pt, _), (pl, _) = window_2d(h, wd, pool, strides, padding)
    (ph, pw), (sh, sw) = pool, strides

    def run(*args):
        *xs, y = args
        _pool.pool2d_parts_forward(list(xs), ph, pw, sh, sw, pt, pl, y, average)

    return run, (n, oh, ow, sum(s[3] for s in shapes))


def _run(kernel, *inputs):
    run, shape = kernel
    y = np.empty(shape, dtype=np.float32)
    if y.size:
        run(*inputs, y)
    return y


def conv2d(x, w, b, strides, padding, relu=False):
    """2-D convolution (NHWC, kernel ``(kh, kw, cin, cout)``) with the bias and ReLU fused."""
    x = _c32(x)
    return _run(conv2d_kernel(x.shape, w, b, strides, padding, relu), x)


def dense(x, w, b, relu=False):
    """``x @ w + b`` for ``x`` of shape ``(N, in)``, ReLU fused when ``relu``."""
    x = _c32(x)
    return _run(dense_kernel(x.shape, w, b, relu), x)


def max_pool2d(x, pool, strides, padding):
    """Max over each window; padded positions never win."""
    x = _c32(x)
    return _run(pool2d_kernel(x.shape, pool, strides, padding, False), x)


def avg_pool2d(x, pool, strides, padding):
    """Mean over each window's non-padded positions."""
    x = _c32(x)
    return _run(pool2d_kernel(x.shape, pool, strides, padding, True), x)


def activation_kernel(x_shape, name, alpha=None):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with activation ``name`` of ``x``: "relu", "softmax" over the
    last axis, "sigmoid", or any other of :data:`CODES` ("gelu_tanh": ``gelu(approximate=True)``) with its
    parameter ``alpha`` (:data:`ACTIVATION_ALPHA`); ``y`` may be ``x``."""
    if name == "softmax":  # (the kernels take any shape: a reshape per call cost ~0.3 us of a batch-1 step)
        return (lambda x, y: _ew.softmax_forward(x, y)), tuple(x_shape)
    if name == "relu":
        return (lambda x, y: _ew.relu_forward(x, y)), tuple(x_shape)
    _, code, a = _epilogue(name, alpha)
    return (lambda x, y: _ew.act_forward(x, y, code, a)), tuple(x_shape)


def relu(x):
    """``max(x, 0)`` (NaN propagates)."""
    x = _c32(x)
    return _run(activation_kernel(x.shape, "relu"), x)


def _stream(rate, key):
    return np.uint32(key[0]), np.uint32(key[1]), keep_threshold(rate), dropout_scale(rate)


def _dropout(x, rate, key, per_channel, relu, offset):
    x = _c32(x)
    run, _ = dropout_kernel(x.shape, rate, per_channel, relu)
    y = np.empty_like(x)
    run(x, y, key, offset)
    return y


def dropout(x, rate, key, per_channel=False, offset=0):
    """Inverted dropout; ``per_channel`` drops whole channels per sample; ``offset``: the stream index of the first
    mask element. ``rate == 0`` returns a copy."""
    if rate == 0:
        return _c32(x).copy()
    return _dropout(x, rate, key, per_channel, False, offset)


def relu_dropout(x, rate, key, per_channel=False, offset=0):
    """``dropout(relu(x))`` in one pass (bit-identical to the two separate ops)."""
    return _dropout(x, rate, key, per_channel, True, offset)


def dropout_kernel(x_shape, rate, per_channel=False, relu=False):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``dropout(x, rate, key, per_channel,
    offset)`` (of ``relu(x)`` with ``relu``): the masks of :func:`dropout`, drawn from ``key`` on each call
    (Monte-Carlo dropout in an inference program)."""
    scale, thr = dropout_scale(rate), keep_threshold(rate)
    relu = bool(relu)
    if per_channel and len(x_shape) >= 2:
        rows = _channel_rows(x_shape)

        def run(x, y, key, offset=0):
            _ew.dropout_channels_forward(x.reshape(rows), y.reshape(rows), np.uint32(key[0]), np.uint32(key[1]),
                                         thr, scale, relu, offset)
    else:
        def run(x, y, key, offset=0):
            _ew.dropout_forward(x.reshape(-1), y.reshape(-1), np.uint32(key[0]), np.uint32(key[1]), thr, scale,
                                relu, offset)
    return run, tuple(x_shape)


def dropout_mask(noise_shape, rate, key, offset=0):
    """float32 array of ``noise_shape`` holding 0 (dropped) or ``1 / (1 - rate)`` (kept)."""
    k0, k1, thr, scale = _stream(rate, key)
    m = np.empty(tuple(noise_shape), dtype=np.float32)
    _ew.mask_forward(m.reshape(-1), k0, k1, thr, scale, offset)
    return m


_NO_MULT = np.empty(0, dtype=np.float32)


def gaussian_dropout_kernel(x_shape, rate):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``gaussian_dropout(x, rate, key,
    offset)[0]``: the noise drawn and applied in one pass, no multiplier kept (GaussianDropout in a Monte-Carlo
    program)."""
    s = gaussian_dropout_scale(rate)

    def run(x, y, key, offset=0):
        _ew.gaussian_noise_apply(x.reshape(-1), y.reshape(-1), _NO_MULT, np.uint32(key[0]), np.uint32(key[1]), s,
                                 False, offset)

    return run, tuple(x_shape)


def gaussian_noise_kernel(x_shape, stddev):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``add_gaussian_noise(x, stddev, key,
    offset)`` (GaussianNoise in a Monte-Carlo program)."""
    s = np.float32(stddev)

    def run(x, y, key, offset=0):
        _ew.gaussian_noise_apply(x.reshape(-1), y.reshape(-1), _NO_MULT, np.uint32(key[0]), np.uint32(key[1]), s,
                                 True, offset)

    return run, tuple(x_shape)


def _channel_rows(shape):
    """``shape`` viewed as (N, S, C) for per-channel noise, written out (a -1 cannot reshape an empty batch)."""
    return shape[0], int(np.prod(shape[1:-1])), shape[-1]


def _alpha_constants(rate):
    a, b = alpha_dropout_affine(rate)
    return np.float32(a), np.float32(b), np.float32(a * ALPHA_P + b)


def alpha_dropout_kernel(x_shape, rate, per_channel=False):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``alpha_dropout(x, rate, key, per_channel,
    offset)``: Dropout's keep bits for the same arguments, then SELU's affine map (AlphaDropout in a Monte-Carlo
    program)."""
    thr, (a, b, c) = keep_threshold(rate), _alpha_constants(rate)
    if per_channel and len(x_shape) >= 2:
        rows = _channel_rows(x_shape)

        def run(x, y, key, offset=0):
            _ew.alpha_dropout_channels_forward(x.reshape(rows), y.reshape(rows), np.uint32(key[0]),
                                               np.uint32(key[1]), thr, a, b, c, offset)
    else:
        def run(x, y, key, offset=0):
            _ew.alpha_dropout_forward(x.reshape(-1), y.reshape(-1), np.uint32(key[0]), np.uint32(key[1]), thr, a, b,
                                      c, offset)
    return run, tuple(x_shape)


def _noise_op(kernel, x, key, offset):
    x = _c32(x)
    run, _ = kernel(x.shape)
    y = np.empty_like(x)
    run(x, y, key, offset)
    return y


def gaussian_dropout(x, rate, key, offset=0):
    """``(y, m)``: ``y = x * m``, ``m = z * s + 1`` with ``z`` the ``gaussian_noise`` of ``x.shape`` at ``offset`` and
    ``s = sqrt(rate / (1 - rate))``, in one pass; ``m`` is kept for the backward."""
    x = _c32(x)
    y, m = np.empty_like(x), np.empty_like(x)
    _ew.gaussian_noise_apply(x.reshape(-1), y.reshape(-1), m.reshape(-1), np.uint32(key[0]), np.uint32(key[1]),
                             gaussian_dropout_scale(rate), False, offset)
    return y, m


def gaussian_dropout_backward(dy, m):
    """Gradient of :func:`gaussian_dropout` from its multiplier: ``dy * m``."""
    dy, m = _c32(dy), _c32(m)
    dx = np.empty_like(dy)
    _ew.multiply(dy.reshape(-1), m.reshape(-1), dx.reshape(-1))
    return dx


def add_gaussian_noise(x, stddev, key, offset=0):
    """``x + z * stddev``, ``z`` the ``gaussian_noise`` of ``x.shape`` at ``offset``, in one pass."""
    return _noise_op(lambda shape: gaussian_noise_kernel(shape, stddev), x, key, offset)


def alpha_dropout(x, rate, key, per_channel=False, offset=0):
    """AlphaDropout: ``x * a + b`` where :func:`dropout` with the same arguments keeps a unit, ``a * ALPHA_P + b``
    where it drops it."""
    return _noise_op(lambda shape: alpha_dropout_kernel(shape, rate, per_channel), x, key, offset)


def alpha_dropout_backward(dy, rate, key, per_channel=False, offset=0):
    """Gradient of :func:`alpha_dropout`: ``dy * a`` where the unit was kept, 0 elsewhere (dropout's kernel, ``a``
    for its scale)."""
    dy = _c32(dy)
    k0, k1, thr, a = np.uint32(key[0]), np.uint32(key[1]), keep_threshold(rate), _alpha_constants(rate)[0]
    dx = np.empty_like(dy)
    if per_channel and dy.ndim >= 2:
        rows = _channel_rows(dy.shape)
        _ew.dropout_channels_forward(dy.reshape(rows), dx.reshape(rows), k0, k1, thr, a, False, offset)
    else:
        _ew.dropout_forward(dy.reshape(-1), dx.reshape(-1), k0, k1, thr, a, False, offset)
    return dx


def drop_block2d_kernel(x_shape, rate, block_size):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``drop_block2d(x, rate, block_size, key,
    offset)`` (DropBlock2D in a Monte-Carlo program). The C loops trust the block to fit in the map: checked here."""
    if len(x_shape) != 4 or not 1 <= block_size <= min(x_shape[1], x_shape[2]):
        raise ValueError(f"drop_block2d: block_size {block_size} for an input of shape {tuple(x_shape)}: expected "
                         f"(N, H, W, C) with 1 <= block_size <= min(H, W)")
    _, h, w, _ = x_shape
    thr, bs = keep_threshold(drop_block_gamma(rate, block_size, h, w)), int(block_size)

    def run(x, y, key, offset=0):
        _ew.drop_block2d_forward(x, y, bs, np.uint32(key[0]), np.uint32(key[1]), thr, offset)

    return run, tuple(x_shape)


def drop_block2d(x, rate, block_size, key, offset=0):
    """DropBlock of ``x`` (N, H, W, C): ``x`` times 0 in the dropped blocks and ``H W / kept`` elsewhere, per
    (sample, channel) map; see ``reference.dropout.drop_block2d_mask``."""
    return _noise_op(lambda shape: drop_block2d_kernel(shape, rate, block_size), x, key, offset)


def drop_block2d_backward(dy, rate, block_size, key, offset=0):
    """Gradient of :func:`drop_block2d`: ``dy`` times the same multiplier, drawn again."""
    return drop_block2d(dy, rate, block_size, key, offset)


def _pool_geometry(x_shape, pool, strides, padding):
    """``((oh, ow), (ph, pw, sh, sw, pt, pl))`` of a pooling window over inputs of ``x_shape`` (N, H, W, C)."""
    oh, ow, (pt, _), (pl, _) = window_2d(x_shape[1], x_shape[2], pool, strides, padding)
    return (oh, ow), (pool[0], pool[1], strides[0], strides[1], pt, pl)


def max_pool_dropout2d_kernel(x_shape, rate, pool, strides, padding):
    """``(run, y_shape)``: ``run(x, y, key, offset=0)`` fills ``y`` with ``max_pool_dropout2d(x, rate, key, pool,
    strides, padding, offset)[0]`` (MaxPoolingDropout2D in a Monte-Carlo program; the taps go to a scratch
    array)."""
    (oh, ow), geo = _pool_geometry(x_shape, pool, strides, padding)
    thr, y_shape = keep_threshold(rate), (x_shape[0], oh, ow, x_shape[3])

    def run(x, y, key, offset=0):
        arg = np.empty(y_shape, dtype=np.int32)
        _ew.max_pool_dropout2d_forward(x, y, arg, *geo, np.uint32(key[0]), np.uint32(key[1]), thr, offset)

    return run, y_shape


def max_pool_dropout2d(x, rate, key, pool, strides, padding, offset=0):
    """MaxPoolingDropout's training rule: ``(y, arg)``, the max of each window's kept inputs (0 where none is) and
    the tap of the first kept maximum (int32, -1 where none is kept); see ``reference.dropout``."""
    x = _c32(x)
    (oh, ow), geo = _pool_geometry(x.shape, pool, strides, padding)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    arg = np.empty(y.shape, dtype=np.int32)
    _ew.max_pool_dropout2d_forward(x, y, arg, *geo, np.uint32(key[0]), np.uint32(key[1]), keep_threshold(rate),
                                   offset)
    return y, arg


def max_pool_dropout2d_backward(dy, arg, x_shape, pool, strides, padding):
    """Gradient of :func:`max_pool_dropout2d`: each window's ``dy`` to its tap ``arg``."""
    _, geo = _pool_geometry(x_shape, pool, strides, padding)
    dx = np.empty(tuple(x_shape), dtype=np.float32)
    _ew.max_pool_dropout2d_backward(_c32(dy), np.ascontiguousarray(arg, dtype=np.int32), dx, *geo)
    return dx


def weighted_pool2d_kernel(x_shape, rate, pool, strides, padding):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with ``weighted_pool2d(x, rate, pool, strides, padding)``
    (MaxPoolingDropout2D in an inference program)."""
    (oh, ow), geo = _pool_geometry(x_shape, pool, strides, padding)
    wtab = _c32(pool_weights(rate, pool[0] * pool[1]))
    return (lambda x, y: _ew.weighted_pool2d(x, x, y, wtab, *geo, oh, ow, False)), (x_shape[0], oh, ow, x_shape[3])


def weighted_pool2d(x, rate, pool, strides, padding):
    """MaxPoolingDropout's inference rule: probabilistic weighted pooling over each window's sorted inputs."""
    x = _c32(x)
    return _run(weighted_pool2d_kernel(x.shape, rate, pool, strides, padding), x)


def weighted_pool2d_backward(dy, x, rate, pool, strides, padding):
    """Gradient of :func:`weighted_pool2d`: ``dy * w_i`` to the input at sorted position ``i`` (sorted again)."""
    x = _c32(x)
    (oh, ow), geo = _pool_geometry(x.shape, pool, strides, padding)
    dx = np.empty_like(x)
    _ew.weighted_pool2d(x, _c32(dy), dx, _c32(pool_weights(rate, pool[0] * pool[1])), *geo, oh, ow, True)
    return dx


def softmax(x):
    """Softmax over the last axis (max-subtracted)."""
    x = _c32(x)
    return _run(activation_kernel(x.shape, "softmax"), x)


def sigmoid(x):
    """Logistic function (through ``exp(-|x|)``: never overflows), ``_act.h``'s: the loop a Conv2D/Dense epilogue
    runs (Cephes's exp polynomial, vectorized: 0.7 ns an element against glibc's expf's 7.7)."""
    x = _c32(x)
    return _run(activation_kernel(x.shape, "sigmoid"), x)


def batch_norm_kernel(x_shape, gamma, beta, moving_mean, moving_var, eps):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with ``batch_norm_infer(x, ...)``. The scale is worked out
    from the statistics on every call (a vector of the channel count), so that a kernel bound to a training
    model's arrays follows their in-place updates."""
    rows = (-1, x_shape[-1])

    def run(x, y):
        scale = _c32(gamma / np.sqrt(moving_var + np.float32(eps)))  # the reference's float32 expression
        _ew.batch_norm_forward(x.reshape(rows), _c32(moving_mean), scale, _c32(beta), y.reshape(rows))

    return run, tuple(x_shape)


def batch_norm_infer(x, gamma, beta, moving_mean, moving_var, eps):
    """``(x - moving_mean) / sqrt(moving_var + eps) * gamma + beta`` over the last axis."""
    x = _c32(x)
    return _run(batch_norm_kernel(x.shape, gamma, beta, moving_mean, moving_var, eps), x)


def global_pool2d_kernel(x_shape, average):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` (N, C) with the max (or, with ``average``, mean) of ``x``
    (N, H, W, C) over H and W (Keras's ``GlobalMaxPooling2D`` / ``GlobalAveragePooling2D``)."""
    n, h, wd, c = x_shape
    rows = (n, h * wd, c)  # the kernel reduces over the rows of this view (free for a C-contiguous x)
    return (lambda x, y: _pool.global_pool2d_forward(x.reshape(rows), y, average)), (n, c)


def global_avg_pool2d(x):
    """Mean over H and W of ``x`` (N, H, W, C); returns ``(N, C)``."""
    x = _c32(x)
    return _run(global_pool2d_kernel(x.shape, True), x)


def global_max_pool2d(x):
    """Max over H and W of ``x`` (N, H, W, C), NaN propagating; returns ``(N, C)``."""
    x = _c32(x)
    return _run(global_pool2d_kernel(x.shape, False), x)


def _columns(shape, axis):
    """``(rows, width)``: an array of ``shape`` as 2-D, the axes before ``axis`` as rows (a free reshape)."""
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    return rows, int(np.prod(shape[axis:], dtype=np.int64))


def concatenate_kernel(x_shapes, axis):
    """``(run, y_shape)``: ``run(*xs, y)`` fills ``y`` with the arrays ``xs`` (of ``x_shapes``, C-contiguous
    float32) joined along ``axis`` (Keras's ``Concatenate``): each row of the axes before ``axis`` is one copy
    per input, the rows split over the threads (channels last: a row is a pixel)."""
    axis = axis % len(x_shapes[0])
    y_shape = list(x_shapes[0])
    y_shape[axis] = sum(s[axis] for s in x_shapes)
    shapes = [_columns(s, axis) for s in x_shapes]
    rows = _columns(y_shape, axis)

    def run(*args):
        *xs, y = args
        _ew.concat_rows([x.reshape(s) for x, s in zip(xs, shapes)], y.reshape(rows), False)

    return run, tuple(y_shape)


def concatenate(xs, axis):
    """``xs`` joined along ``axis``."""
    xs = [_c32(x) for x in xs]
    return _run(concatenate_kernel([x.shape for x in xs], axis), *xs)


def concatenate_backward(dy, x_shapes, axis):
    """``dy`` split along ``axis`` into C-contiguous parts of ``x_shapes`` (a tuple): the copies of
    :func:`concatenate` the other way."""
    axis = axis % dy.ndim
    parts = tuple(np.empty(s, dtype=np.float32) for s in x_shapes)
    _ew.concat_rows([p.reshape(_columns(p.shape, axis)) for p in parts],
                    _c32(dy).reshape(_columns(dy.shape, axis)), True)
    return parts


def add_kernel(x_shapes):
    """``(run, y_shape)``: ``run(*xs, y)`` fills ``y`` with the sum of ``xs`` (two or more C-contiguous float32
    arrays of one shape), added in order as NumPy adds them (the same bits), in chunks over the threads."""
    def run(*args):
        *xs, y = args
        _ew.add_arrays([x.reshape(-1) for x in xs], y.reshape(-1))

    return run, tuple(x_shapes[0])


def add(xs):
    """The sum of ``xs`` (two or more arrays of one shape), in order."""
    xs = [_c32(x) for x in xs]
    return _run(add_kernel([x.shape for x in xs]), *xs)


def rescale_kernel(x_shape, scale, offset):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with ``x * scale + offset`` (Keras's ``Rescaling``),
    ``scale`` and ``offset`` over the last axis, rounded as NumPy rounds (no fused multiply-add)."""
    rows, width, (s, o) = tiled_rows(tuple(x_shape), scale, offset)
    return (lambda x, y: _ew.rescale_rows(x.reshape(rows, width), s, o, y.reshape(rows, width), True)), \
        tuple(x_shape)


def rescale(x, scale, offset):
    """``x * scale + offset`` over the last axis."""
    x = _c32(x)
    return _run(rescale_kernel(x.shape, scale, offset), x)


def rescale_backward(dy, scale):
    """``dy * scale`` over the last axis: the gradient of :func:`rescale`."""
    dy = _c32(dy)
    dx = np.empty_like(dy)
    if dy.size:
        rows, width, (s,) = tiled_rows(dy.shape, scale)
        _ew.rescale_rows(dy.reshape(rows, width), s, s, dx.reshape(rows, width), False)
    return dx


def zero_pad2d_kernel(x_shape, padding):
    """``(run, y_shape)``: ``run(x, y)`` fills ``y`` with ``x`` (N, H, W, C) padded by ``((top, bottom), (left,
    right))`` zero rows and columns (Keras's ``ZeroPadding2D``): one task per output row, over the threads."""
    (top, bottom), (left, right) = padding
    n, h, w, c = x_shape
    y_shape = (n, h + top + bottom, w + left + right, c)
    small, big = (n, h, w * c), (n, y_shape[1], y_shape[2] * c)
    return (lambda x, y: _ew.zero_pad_rows(x.reshape(small), y.reshape(big), top, left * c, False)), y_shape


def zero_pad2d(x, padding):
    """``x`` (N, H, W, C) zero-padded by ``((top, bottom), (left, right))``."""
    x = _c32(x)
    return _run(zero_pad2d_kernel(x.shape, padding), x)


def zero_pad2d_backward(dy, padding):
    """``dy`` cropped back to the unpadded rows and columns, C-contiguous: the gradient of :func:`zero_pad2d`."""
    (top, bottom), (left, right) = padding
    dy = _c32(dy)
    n, oh, ow, c = dy.shape
    dx = np.empty((n, oh - top - bottom, ow - left - right, c), dtype=np.float32)
    if dx.size:
        _ew.zero_pad_rows(dx.reshape(n, dx.shape[1], -1), dy.reshape(n, oh, ow * c), top, left * c, True)
    return dx


# The training half of the contract (they load through this module: BLAS bound and OpenMP capped above).
from .cython_train_elementwise import (avg_pool2d_backward, batch_norm_backward, batch_norm_train,  # noqa: E402,F401
                                       batch_norm_relu_backward, batch_norm_relu_train,
                                       dropout_backward, gaussian_noise, global_avg_pool2d_backward,
                                       global_max_pool2d_backward, max_pool2d_backward, mean_squared_error,
                                       relu_backward, relu_dropout_backward, sigmoid_backward,
                                       sigmoid_binary_cross_entropy, softmax_backward, softmax_cross_entropy,
                                       sparse_softmax_cross_entropy)
from . import cython_train_elementwise as _train_ew  # noqa: E402
# tanh, elu, leaky_relu, ... and their backwards: made from the contract (activation_wrappers.py)
globals().update({name: getattr(_train_ew, name) for name in _train_ew.LOOP_OPS})
from .cython_train_gemm import (conv2d_backward, conv2d_max_pool, conv2d_max_pool_backward,  # noqa: E402,F401
                                dense_backward)
from .cython_depthwise import (depthwise_conv2d, depthwise_conv2d_backward,  # noqa: E402,F401
                               depthwise_conv2d_kernel)
