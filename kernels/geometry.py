"""Output sizes and padding for convolution and pooling windows (TensorFlow's rules).

``"valid"``: no padding, ``out = (in - k) // s + 1``.
``"same"``: ``out = ceil(in / s)``; the total padding ``max((out - 1) * s + k - in, 0)`` is split with the smaller
half before and the larger half after (TensorFlow's asymmetric rule, which matters for strides > 1).
"""
PADDINGS = ("valid", "same")


def window_1d(size, k, s, padding):
    """Return ``(out, pad_before, pad_after)`` for one spatial axis. ``out`` may be <= 0 for impossible geometry.

    ``padding``: "valid", "same", or explicit ``(before, after)`` zeros (an ONNX ``pads`` or PyTorch ``padding``;
    inference programs fold a ``ZeroPadding2D`` into the convolution after it this way). Kernels read only
    ``pad_before`` and the output size, so any explicit padding runs on every path."""
    if isinstance(padding, tuple):
        before, after = padding
        size += before + after
        return ((size - k) // s + 1 if size >= k else 0), before, after
    if padding == "valid":
        return (size - k) // s + 1 if size >= k else 0, 0, 0
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2, total - total // 2
    raise ValueError(f"Invalid value for `padding`: expected one of {PADDINGS}. Received: padding={padding!r}")


def window_2d(h, w, kernel, strides, padding):
    """Return ``(oh, ow, (pad_top, pad_bottom), (pad_left, pad_right))`` for an (h, w) input; ``padding``:
    "valid", "same" or explicit ``((top, bottom), (left, right))``."""
    rows, cols = padding if isinstance(padding, tuple) else (padding, padding)
    oh, pt, pb = window_1d(h, kernel[0], strides[0], rows)
    ow, pl, pr = window_1d(w, kernel[1], strides[1], cols)
    return oh, ow, (pt, pb), (pl, pr)


def conv_path(in_hw, kernel_shape, strides, padding, fast):
    """How a convolution's forward runs: "direct", "implicit" (GEMM on the windows in place) or "im2col" (panels).

    The one rule the Numba kernels, the Cython kernels and the tests follow. ``fast``: whether dropcore's
    own vector kernels are loaded (the avx512 and avx2 variants; without them every convolution runs on im2col
    panels and BLAS). ``in_hw`` is
    ``(h, w)``, ``kernel_shape`` ``(kh, kw, cin, cout)``.
    """
    if not fast:
        return "im2col"
    oh, ow, (pt, _), (pl, _) = window_2d(in_hw[0], in_hw[1], kernel_shape[:2], strides, padding)
    if wide_pointwise(kernel_shape, strides, (pt, pl)):
        return "im2col"  # whose panels are the input rows themselves: one product, no copy
    if direct_conv_pays(kernel_shape):
        return "direct"
    return "implicit" if implicit_gemm_pays(in_hw, kernel_shape, strides, (pt, pl), (oh, ow)) else "im2col"


def winograd_pays(kernel_shape, strides, available):
    """Whether a convolution runs on Winograd F(2x2, 3x3) (``_winograd.h``): 3x3 kernels at stride 1 (any padding)
    that do not run on the direct kernel, where the loaded variant has the Winograd kernels (``available``: the
    avx512 and avx2 ones). The Cython forward of the layers ``winograd4_pays`` leaves to it (with the rule as it is:
    none) and training's forward with a fused 2x2 max pooling; in training (the Numba kernels, through the
    extension's symbols) the forward, the input gradient (itself a 3x3 stride-1 convolution of ``dy``, where
    ``winograd4_dx_pays`` does not take it) and the weight gradient (16 products of the transformed input and
    output gradient, ``dc_wino_dw_rows``, then ``G^T dU G``).
    ``kernel_shape`` is ``(kh, kw, cin, cout)``.

    Measured on mnist_cnn's second layer with its 2x2 max pooling (32 -> 64 channels, 26x26, 2 threads): 25.5
    against 45.2 us at batch 1, 7.2 against 11.2 ms at batch 256 (2.25x fewer multiply-adds, plus transforms).
    Its results differ from the direct sums by rounding: 1-3e-7 relative to float64 sums on the layers tried,
    against 2-5e-7 for the direct float32 products.
    """
    return available and tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1) and \
        not direct_conv_pays(kernel_shape)


def winograd4_pays(kernel_shape, strides, available):
    """Whether an inference forward runs on Winograd F(4x4, 3x3) (``_winograd4.h``) rather than F(2x2, 3x3) or the
    direct kernel: 3x3 kernels at stride 1 (any padding) with 8 or more input channels and ``cin * cout >= 384``,
    where the loaded variant has dropcore's own GEMM (``available``: the avx512 and avx2 ones). Training's input
    gradient follows it on the flipped kernel (``winograd4_dx_pays``); its weight gradient and pooled forward keep
    F(2x2) (``winograd_pays``). ``kernel_shape`` is ``(kh, kw, cin, cout)``.

    Measured on the Zen 3 (avx2, one thread, batch 64, F(4x4) against F(2x2) / the direct kernel): 32 -> 32 at 16 x 16
    1.92x / 1.91x, 64 -> 64 at 8 x 8 1.92x / 2.89x, 64 -> 128 1.61x / 3.69x, mnist_cnn's 32 -> 64 at 26 x 26 1.69x /
    2.29x; with its 2x2 max pooling 1.56-2.01x against F(2x2); under the direct kernel's weight bound 16 -> 24 at
    32 x 32 1.41x, 16 -> 32 1.91x, 32 -> 16 2.00x, 8 -> 64 1.50x the direct kernel. At batch 1 F(4x4) was 1.0-1.9x
    F(2x2) and 1.1-2.9x the direct kernel on all of these. Below the bound it lost: 16 -> 16 at 32 x 32 0.88x and
    8 -> 16 0.97x the direct kernel at batch 64 (they stay direct). Its results are further from exact sums: 3-8e-6
    of the output's largest magnitude against float64 sums, against 2-4e-7 for F(2x2) and 4-10e-7 for the direct
    float32 sums (unit-variance inputs, weights scaled by 1 / sqrt(9 cin)).
    """
    kh, kw, cin, cout = kernel_shape
    return available and (kh, kw) == (3, 3) and tuple(strides) == (1, 1) and cin >= 8 and cin * cout >= 384


def winograd4_dx_pays(kernel_shape, strides, available):
    """Whether training's input gradient of a convolution runs on F(4x4, 3x3)'s tiles (``dc_wino4_dx_rows``): it is
    the 3x3 stride-1 convolution of ``dy`` with the kernel turned 180 degrees and its channels swapped, so the rule
    of ``winograd4_pays`` on that kernel, ``(3, 3, cout, cin)``. Otherwise F(2x2), the direct kernel or panel
    products, as before. ``kernel_shape`` is ``(kh, kw, cin, cout)``.

    Measured on the Zen 3 (avx2, one thread, batch 64, the whole backward: dx, dW and db, old against new
    alternating): 16 -> 24 at 32 x 32 1.28x (its dx was the direct kernel's), 16 -> 32 1.26x, 32 -> 32 at 16 x 16
    1.29x (was F(2x2)), 32 -> 48 1.27x, 32 -> 64 1.25x, mnist_cnn's 32 -> 64 at 26 x 26 1.22x, 64 -> 64 at 8 x 8
    1.15x, 64 -> 128 1.06x."""
    kh, kw, cin, cout = kernel_shape
    return winograd4_pays((kh, kw, cout, cin), strides, available)


def implicit_gemm_pays(in_hw, kernel_shape, strides, pads, out_hw):
    """Whether a convolution is computed as an implicit GEMM (its NHWC windows read in place, no im2col copy).

    Only without padding (every window inside the input), and only where it measured faster than im2col panels:
    with 8 or more input channels, or 32 or more outputs (mnist's 1-channel first layer with 32 outputs: 2.6x
    faster; LeNet's 1-channel 5x5 layer with 6 outputs: 1.4x slower, its products too narrow). ``pads`` is
    ``(top, left)``; ``kernel_shape`` is ``(kh, kw, cin, cout)``.
    """
    cin, cout = kernel_shape[2:]
    return windows_inside(in_hw, kernel_shape, strides, pads, out_hw) and (cin >= 8 or cout >= 32)


def windows_inside(in_hw, kernel_shape, strides, pads, out_hw):
    """Whether every window of a convolution lies inside its input (no padding read): ``pads`` is ``(top, left)``,
    ``kernel_shape`` ``(kh, kw, ...)``."""
    (h, w), (kh, kw), (oh, ow) = in_hw, kernel_shape[:2], out_hw
    return pads == (0, 0) and (oh - 1) * strides[0] + kh <= h and (ow - 1) * strides[1] + kw <= w


#: Most weights (floats: kh * kw * cin * min(cout, 64)) a convolution may have to run as a direct convolution.
DIRECT_MAX_WEIGHTS = 8192


def direct_conv_pays(kernel_shape):
    """Whether a convolution runs as a direct convolution (``_direct_conv.h``): its output tile stays in
    registers over the whole window, which needs a block of 64 output channels of the weights in L1 (32 KiB).

    These are the layers with few input channels, which as GEMMs are too shallow to run fast (mnist's and
    cifar's first layers, both of LeNet's): measured 1.5-6x faster than the implicit GEMM or im2col panels.
    ``kernel_shape`` is ``(kh, kw, cin, cout)``.
    """
    kh, kw, cin, cout = kernel_shape
    return kh <= 64 and kh * kw * cin * min(cout, 64) <= DIRECT_MAX_WEIGHTS


def pointwise(kernel_shape, strides, pads):
    """Whether a convolution is 1x1 at stride 1 without padding: its im2col panel is its input rows, so the
    backward's products read ``x`` and write ``dx`` in place. ``pads`` is ``(top, left)``."""
    return tuple(kernel_shape[:2]) == (1, 1) and tuple(strides) == (1, 1) and tuple(pads) == (0, 0)


def wide_pointwise(kernel_shape, strides, pads):
    """Whether a convolution is ``pointwise`` with 16 or more inputs and 32 or more outputs: its forward and its
    weight gradient run as one product on the input rows in place (read as the im2col panel they are), not on the
    direct kernels, though those take its weights.

    Measured on the Zen 3 (one thread, batch 64, the breadth MobileNet's layers): the forward 1.21x faster at
    32 -> 64 (32 x 32), 1.33x at 64 -> 128, 1.04x at 128 -> 128, 1.38x at 128 -> 256 (16 x 16 and 8 x 8); the weight
    gradient 4.95 against 7.49 ms at 32 -> 64, the others within 3%. Narrower, the direct kernels stay: a 32 -> 16
    layer's weight gradient 1.18 against 1.42 ms, a 32 -> 8 forward 0.55 against 0.68 ms.
    """
    cin, cout = kernel_shape[2:]
    return pointwise(kernel_shape, strides, pads) and cin >= 16 and cout >= 32


def direct_dw_pays(kernel_shape, strides=(1, 1), pads=(0, 0)):
    """Whether a convolution's weight and bias gradients run on the direct kernel (``_direct_conv_dw.h``: a tile
    of taps x output channels stays in registers over all the output pixels, no im2col panel), on the vector
    targets: the layers of ``direct_conv_pays`` but the ``wide_pointwise`` ones. ``kernel_shape`` is ``(kh, kw,
    cin, cout)``, ``pads`` ``(top, left)``.

    As GEMMs their weight gradients are products ``kh * kw * cin`` deep per output pixel, fed by an im2col panel
    written and read back, and only ``cout`` columns wide. Measured on the Zen 3 (one thread, batch 128, the
    backward of the convolution with its 2x2 max pooling, against im2col panels with the same unpooling): LeNet's
    first layer (5x5, 1 -> 6, need_dx=False) 4.9x faster, 3x3 1 -> 16 2.6x, 3x3 3 -> 16 2.4x, mnist's first layer
    (3x3, 1 -> 32) 1.9x, cifar's (3x3, 3 -> 64) 1.44x; with the input gradient too, LeNet's second layer (5x5,
    6 -> 16) 1.15x, 3x3 8 -> 64 1.11x, 3x3 16 -> 32 1.09x. No direct layer measured slower.
    """
    return direct_conv_pays(kernel_shape) and not wide_pointwise(kernel_shape, strides, pads)


def direct_dx_pays(kernel_shape, strides, pads):
    """Whether a convolution's input gradient runs on the direct kernel, as the convolution of ``dy`` with the
    kernel turned 180 degrees and its channels swapped (pads ``kh - 1 - top``, ``kw - 1 - left``), on the vector
    targets: stride-1 layers of ``direct_conv_pays`` both ways round that are not ``pointwise``. ``kernel_shape``
    is ``(kh, kw, cin, cout)``, ``pads`` ``(top, left)``.

    As panel products (``dy`` times the kernel, ``kh * kw * cin`` wide) added back by col2im, each pixel's
    gradient was written and read ``kh * kw`` times. Measured on the Zen 3 (one thread, batch 64, 3x3 "same"):
    ResNet-8's 16 -> 16 layer at 32 x 32 8.24 -> 3.55 ms, the inception's 16 -> 24 10.23 -> 5.38, 16 -> 32 at
    16 x 16 2.90 -> 1.65, 8 -> 16 at 32 x 32 5.05 -> 2.15.
    """
    kh, kw, cin, cout = kernel_shape
    return tuple(strides) == (1, 1) and not pointwise(kernel_shape, strides, pads) and 0 <= pads[0] < kh and \
        0 <= pads[1] < kw and direct_conv_pays(kernel_shape) and direct_conv_pays((kh, kw, cout, cin))


def direct_scratch(rows, kernel_shape, strides, in_w, pad_left, ow):
    """Floats of scratch one task of the direct convolution needs for ``rows`` output rows of a padded layer: the
    input rows they read, zero-padded to a width every window fits in (``dc_direct_scratch`` in C)."""
    kh, kw, cin, _ = kernel_shape
    width = max((ow - 1) * strides[1] + kw, in_w + pad_left)
    return ((rows - 1) * strides[0] + kh) * width * cin
