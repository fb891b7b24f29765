"""Depthwise convolution kernels: the reference against a naive loop and finite differences, the Numba and Cython
kernels against the reference, and the same bits on any number of threads."""
import numba
import numpy as np
import pytest

from dropcore.kernels import depthwise as nb
from dropcore.kernels.reference import depthwise as ref
from dropcore.kernels.threads import threads
from dropcore.testing import check_gradient

# (N, H, W, C, kernel, mult, strides, padding, dilation, bias, relu): strides 1, 2 and (2, 1); both paddings; odd
# sizes; multipliers 1, 2 and 3; dilation 2 and (1, 3), also with strides; channels under one vector (3), one and a
# tail (13), several (40, 64); batches of 1 and more.
CASES = [
    (2, 7, 9, 3, (3, 3), 1, (1, 1), "same", (1, 1), True, False),
    (1, 7, 9, 5, (3, 3), 1, (1, 1), "valid", (1, 1), False, True),
    (3, 9, 8, 13, (3, 3), 1, (2, 2), "same", (1, 1), True, True),
    (2, 6, 6, 8, (3, 3), 2, (2, 2), "same", (1, 1), False, False),
    (1, 11, 10, 40, (5, 5), 1, (1, 1), "same", (1, 1), True, True),
    (2, 8, 7, 16, (2, 3), 3, (2, 1), "valid", (1, 1), True, False),
    (2, 10, 11, 13, (3, 3), 1, (1, 1), "same", (2, 2), True, True),
    (1, 12, 9, 6, (3, 3), 2, (2, 2), "same", (2, 2), False, True),
    (2, 9, 13, 9, (3, 2), 1, (1, 1), "valid", (1, 3), True, False),
    (1, 14, 14, 64, (3, 3), 1, (1, 1), "same", (1, 1), True, True),  # a MobileNet block
    (4, 14, 14, 32, (3, 3), 1, (2, 2), "same", (1, 1), True, True),  # its strided block
    (2, 5, 4, 7, (1, 1), 2, (1, 1), "valid", (1, 1), True, False),
    # 3x3 tiles: at 128 channels and more two vectors a tile (then one, then the tail), a last tile overlapping the
    # one before (11 wide), rows narrower than a tile (3 wide at stride 2)
    (2, 9, 11, 140, (3, 3), 1, (1, 1), "same", (1, 1), True, True),
    (1, 19, 21, 28, (3, 3), 1, (2, 2), "same", (1, 1), True, False),
    (2, 6, 5, 20, (3, 3), 1, (2, 2), "same", (2, 1), False, True),
    # the backward's 3-wide paths at stride 2: the gathered input gradient's tiles of 4 pixels x 2 vectors (then one,
    # then the tail) and both parities of the first pixel (odd width: a left padding of 1), the weight gradient's
    # blocks of outputs, and 5 kernel rows (taps summed 3 rows, then 2, at a time)
    (2, 7, 13, 140, (3, 3), 1, (2, 2), "same", (1, 1), True, True),
    (1, 8, 18, 72, (3, 3), 1, (2, 2), "same", (1, 1), True, False),
    (2, 10, 9, 24, (5, 3), 1, (2, 2), "same", (1, 1), False, True),
]


def _data(case, dtype, seed):
    n, h, w, c, (kh, kw), mult, _, _, _, bias, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    k = rng.standard_normal((kh, kw, c, mult)).astype(dtype)
    b = rng.standard_normal(c * mult).astype(dtype) if bias else None
    return x, k, b


def _args(case):
    return case[6], case[7], case[8], case[10]  # strides, padding, dilation, relu


def _naive(x, w, b, strides, padding, dilation, relu):
    """Loops over every output element and tap, TensorFlow's padding worked out here (not from geometry.py)."""
    n, h, wd, c = x.shape
    kh, kw, _, mult = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        oh, ow = -(-h // sh), -(-wd // sw)
        pt, pl = max((oh - 1) * sh + eh - h, 0) // 2, max((ow - 1) * sw + ew - wd, 0) // 2
    else:
        oh, ow, pt, pl = (h - eh) // sh + 1, (wd - ew) // sw + 1, 0, 0
    y = np.zeros((n, oh, ow, c * mult))
    for ni in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for ci in range(c):
                    for m in range(mult):
                        s = 0.0 if b is None else b[ci * mult + m]
                        for i in range(kh):
                            for j in range(kw):
                                iy, ix = oy * sh + i * dh - pt, ox * sw + j * dw - pl
                                if 0 <= iy < h and 0 <= ix < wd:
                                    s += x[ni, iy, ix, ci] * w[i, j, ci, m]
                        y[ni, oy, ox, ci * mult + m] = max(s, 0.0) if relu else s
    return y


def _sets():
    sets = [("numba", nb)]
    try:
        from dropcore.kernels import cython_depthwise
    except ImportError:
        return sets
    return sets + [("cython", cython_depthwise)]


SETS = _sets()
FAST = pytest.mark.parametrize("kernels", [m for _, m in SETS], ids=[n for n, _ in SETS])


def _close(got, want, rtol=1e-4, atol=1e-4):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES)
def test_reference_matches_naive_loops(case):
    x, w, b = _data(case, np.float64, 1)
    strides, padding, dilation, relu = _args(case)
    want = _naive(x, w, b, strides, padding, dilation, relu)
    np.testing.assert_allclose(ref.depthwise_conv2d(x, w, b, strides, padding, relu, dilation), want, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c[3] <= 13 and c[0] * c[1] * c[2] * c[3] <= 800])
def test_reference_backward_finite_differences(case):
    x, w, b = _data(case, np.float64, 2)
    strides, padding, dilation, _ = _args(case)
    g = np.random.default_rng(3).standard_normal(ref.depthwise_conv2d(x, w, b, strides, padding, False,
                                                                      dilation).shape)

    def loss():
        return float(np.sum(ref.depthwise_conv2d(x, w, b, strides, padding, False, dilation) * g))

    dx, dw, db = ref.depthwise_conv2d_backward(g, x, w, strides, padding, b is not None, dilation=dilation)
    check_gradient(loss, dx, x)
    check_gradient(loss, dw, w)
    if b is None:
        assert db is None
    else:
        check_gradient(loss, db, b)


def test_reference_backward_through_a_fused_relu():
    """``relu_output`` passes the gradient only where the forward's output is positive: the gradient of
    ``sum(relu(z) * g)`` by finite differences."""
    x, w, b = _data(CASES[0], np.float64, 4)
    g = np.random.default_rng(5).standard_normal(ref.depthwise_conv2d(x, w, b, (1, 1), "same").shape)

    def loss():
        return float(np.sum(ref.depthwise_conv2d(x, w, b, (1, 1), "same", True) * g))

    y = ref.depthwise_conv2d(x, w, b, (1, 1), "same", True)
    assert (y == 0).any() and (y > 0).any()
    dx, dw, db = ref.depthwise_conv2d_backward(g, x, w, (1, 1), "same", True, relu_output=y)
    check_gradient(loss, dx, x)
    check_gradient(loss, dw, w)
    check_gradient(loss, db, b)


@FAST
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case, kernels):
    x, w, b = _data(case, np.float32, 6)
    strides, padding, dilation, relu = _args(case)
    want = ref.depthwise_conv2d(x.astype(np.float64), w, b, strides, padding, relu, dilation)
    _close(kernels.depthwise_conv2d(x, w, b, strides, padding, relu, dilation), want)


@FAST
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_reference(case, kernels):
    x, w, b = _data(case, np.float32, 7)
    strides, padding, dilation, relu = _args(case)
    y = ref.depthwise_conv2d(x, w, b, strides, padding, relu, dilation)
    dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
    ro = y if relu else None
    want = ref.depthwise_conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                         strides, padding, b is not None, True, ro, dilation)
    got = kernels.depthwise_conv2d_backward(dy, x, w, strides, padding, b is not None, True, ro, dilation)
    for g, e, name in zip(got, want, ("dx", "dw", "db")):
        if e is None:
            assert g is None, name
        else:
            assert g.shape == e.shape, name
            _close(g, e, rtol=1e-4, atol=1e-3)
    assert kernels.depthwise_conv2d_backward(dy, x, w, strides, padding, b is not None, False, ro, dilation)[0] \
        is None


@FAST
def test_empty_batch_and_a_window_larger_than_the_input(kernels):
    """No sample: empty outputs and zero gradients; a "valid" window larger than the input: no output at all."""
    x, w = np.zeros((0, 5, 5, 3), np.float32), np.ones((3, 3, 3, 1), np.float32)
    assert kernels.depthwise_conv2d(x, w, None, (1, 1), "same").shape == (0, 5, 5, 3)
    dx, dw, db = kernels.depthwise_conv2d_backward(np.zeros((0, 5, 5, 3), np.float32), x, w, (1, 1), "same", True)
    assert dx.shape == (0, 5, 5, 3) and not dw.any() and not db.any()
    assert kernels.depthwise_conv2d(np.ones((1, 2, 2, 3), np.float32), w, None, (1, 1), "valid").shape == \
        (1, 0, 0, 3)


@FAST
def test_nan_reaches_the_output_through_relu(kernels):
    x, w = np.ones((1, 4, 4, 9), np.float32), np.ones((3, 3, 9, 1), np.float32)
    x[0, 1, 1, 4] = np.nan
    y = kernels.depthwise_conv2d(x, w, None, (1, 1), "same", True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.depthwise_conv2d(x, w, None, (1, 1), "same", True)))
    assert np.isnan(y).sum() == 9


# --- the same bits on any thread count ------------------------------------------------------------------------------
POOLS = [("numba", nb, "numba", list(range(2, numba.config.NUMBA_NUM_THREADS + 1)), False)]
POOLS += [("cython", m, "openmp", [2, 3, 4, 8], True) for name, m in SETS if name == "cython"]


@pytest.mark.parametrize("pool", POOLS, ids=[p[0] for p in POOLS])
@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[9], CASES[10]])
def test_same_bits_at_any_thread_count(case, pool):
    _, kernels, name, counts, exact = pool
    if not counts:
        pytest.skip("needs Numba started with 2 or more threads (2 CPUs)")
    x, w, b = _data(case, np.float32, 9)
    strides, padding, dilation, relu = _args(case)
    y = kernels.depthwise_conv2d(x, w, b, strides, padding, relu, dilation)
    dy = np.random.default_rng(10).standard_normal(y.shape).astype(np.float32)

    def call():
        return (kernels.depthwise_conv2d(x, w, b, strides, padding, relu, dilation),) + \
            kernels.depthwise_conv2d_backward(dy, x, w, strides, padding, b is not None, True, y if relu else None,
                                              dilation)

    with threads(1, name, exact=exact):
        expected = call()
    for n in counts:
        with threads(n, name, exact=exact):
            got = call()
        for e, g in zip(expected, got, strict=True):
            if e is None:
                assert g is None
            else:
                np.testing.assert_array_equal(g, e, err_msg=f"{n} threads")


@pytest.mark.parametrize("activation", ["relu6", "hard_swish", "tanh", "leaky_relu", "linear", "relu"])
def test_bound_kernel_applies_an_activation_in_its_epilogue(activation):
    """An activation fused into the bound kernel (each output row right after it is written) has the bits of the
    stand-alone op after the convolution."""
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    from dropcore.ops import get_ops

    ops = get_ops("cython")
    case = CASES[2]
    x, w, b = _data(case, np.float32, 11)
    x *= np.float32(3)  # past relu6's and hard_swish's bends
    strides, padding, dilation, _ = _args(case)
    from dropcore.kernels import cython_ops

    run, shape = cython_ops.depthwise_conv2d_kernel(x.shape, w, b, strides, padding, False, dilation, activation)
    y = np.full(shape, np.nan, np.float32)
    run(x, y)
    z = ops.depthwise_conv2d(x, w, b, strides, padding, False, dilation)
    want = z if activation == "linear" else getattr(ops, activation)(z)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("kernel, strides, channels", [(3, 1, 32), (3, 2, 64), (3, 1, 13), (3, 2, 136), (5, 1, 24),
                                                       (5, 2, 11), (3, 1, 128)])
def test_relu6_in_the_registers_has_the_stand_alone_bits(kernel, strides, channels):
    """ReLU6 (MobileNets') is applied in the depthwise kernel's registers before the store, not as a pass over each
    row: the 3x3 tiles at strides 1 and 2, the other kernels' 4-pixel tiles and single pixels, channel tails, values
    on both bends and exactly 6, and NaN all have the bits of the stand-alone op after the convolution."""
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    from dropcore.kernels import cython_ops
    from dropcore.ops import get_ops

    ops = get_ops("cython")
    rng = np.random.default_rng(kernel * channels)
    x = (rng.standard_normal((2, 13, 13, channels)) * 4).astype(np.float32)
    x[0, 5, 5, 0], x[1, 7, 2, channels - 1] = np.nan, np.inf
    w = rng.standard_normal((kernel, kernel, channels, 1)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    w[:, :, 1, 0] = 0.0
    w[kernel // 2, kernel // 2, 1, 0] = 1.0
    b[1] = 0.0
    x[0, 6, 6, 1] = 6.0  # exactly 6 out of channel 1 (its only tap is the centre, weight 1) where a window centres
    run, shape = cython_ops.depthwise_conv2d_kernel(x.shape, w, b, (strides, strides), "same", False, (1, 1),
                                                    "relu6")
    y = np.full(shape, -1, np.float32)
    run(x, y)
    want = ops.relu6(ops.depthwise_conv2d(x, w, b, (strides, strides), "same", False, (1, 1)))
    np.testing.assert_array_equal(y, want)
    assert np.isnan(y).any() and (y == 6).any() and (y == 0).any() and ((y > 0) & (y < 6)).any()
