"""Winograd F(4x4, 3x3) (``_winograd4.h``, ``conv2d_winograd4``): its weight transform against the textbook matrices,
its outputs against float64 sums, and the properties the inference programs rely on (the same bits in any batch, at
any thread count, fused or not)."""
import numpy as np
import pytest

cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")

from dropcore.kernels.geometry import window_2d, winograd4_pays  # noqa: E402
from dropcore.kernels.reference import conv as ref_conv  # noqa: E402
from dropcore.kernels.reference import pool as ref_pool  # noqa: E402
from dropcore.kernels.threads import threads  # noqa: E402

pytestmark = pytest.mark.skipif(not cy.HAVE_FAST_GEMM, reason="F(4x4) runs on dropcore's own GEMM (avx512, avx2)")

g = cy._gemm
RNG = np.random.default_rng(11)
# Lavin & Gray's F(4x4, 3x3), points 0, +-1, +-2 (the matrices _winograd4.h's comment gives)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)
# Of the output's largest magnitude, against float64 sums: measured 3-8e-6 (geometry.winograd4_pays)
REL = 2e-5


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _layer(cin, cout):
    """Weights scaled as a trained layer's (unit-variance outputs for unit-variance inputs) and a bias."""
    return _rand(3, 3, cin, cout, scale=1 / np.sqrt(9 * cin)), _rand(cout, scale=0.1)


def _weights(w):
    u = np.empty((36,) + w.shape[2:], np.float32)
    g.winograd4_weights(w, u)
    return u


def _run(x, w, b, padding, relu=False, pool=False, act=0, alpha=0.0, r=None):
    oh, ow, (pt, _), (pl, _) = window_2d(x.shape[1], x.shape[2], (3, 3), (1, 1), padding)
    shape = (len(x), oh // 2, ow // 2, w.shape[3]) if pool else (len(x), oh, ow, w.shape[3])
    y = np.full(shape, np.nan, np.float32)
    g.conv2d_winograd4(x, _weights(w), b, True, pt, pl, oh, ow, y, relu, pool, act, alpha, r)
    return y


def test_the_weight_transform_is_g_w_gt():
    w = _rand(3, 3, 5, 11)
    want = np.einsum("ek,klio,fl->efio", G, w.astype(np.float64), G).reshape(36, 5, 11)
    np.testing.assert_allclose(_weights(w), want, rtol=1e-6, atol=1e-7)


def test_the_textbook_matrices_compute_the_correlation():
    """The check of the matrices themselves: A^T [(G g G^T) . (B^T d B)] A is the 3x3 correlation of the 6x6 block."""
    d, k = RNG.standard_normal((6, 6)), RNG.standard_normal((3, 3))
    y = AT @ ((G @ k @ G.T) * (BT @ d @ BT.T)) @ AT.T
    want = np.array([[(d[i:i + 3, j:j + 3] * k).sum() for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


CASES = [  # (x shape, cin -> cout, padding)
    ((1, 26, 26, 32), 64, "valid"),  # mnist_cnn's second layer: 24 x 24 out, 6 x 6 tiles
    ((3, 13, 11, 32), 64, "valid"),  # 11 x 9 out: the last tiles partly outside the output
    ((2, 16, 16, 64), 64, "same"),  # padded all round
    ((5, 8, 8, 64), 128, "same"),  # 2 x 2 tiles a sample: a task holds several samples
    ((4, 7, 9, 17), 70, "same"),  # masked channel vectors in and out
    ((2, 9, 9, 8), 48, "valid"),  # one vector of inputs
    ((1, 5, 4, 16), 24, "same"),  # smaller than a tile
]


@pytest.mark.parametrize("xs,cout,padding", CASES)
def test_outputs_match_float64_sums(xs, cout, padding):
    x = _rand(*xs)
    w, b = _layer(xs[3], cout)
    y = _run(x, w, b, padding)
    exact = ref_conv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), padding)
    assert np.abs(y - exact).max() / np.abs(exact).max() < REL
    relu = _run(x, w, b, padding, relu=True)
    np.testing.assert_array_equal(relu, np.where(y < 0, 0, y))  # the fused ReLU on the same sums


@pytest.mark.parametrize("xs,cout,padding", CASES[:5])
def test_pooled_is_the_max_pooling_of_the_same_outputs(xs, cout, padding):
    """Each 4x4 tile holds four windows of a 2x2 max pooling: pooled in registers, bit for bit the pooling of the
    unpooled kernel's output (a last odd row or column dropped, as "valid" pooling does)."""
    x = _rand(*xs)
    w, b = _layer(xs[3], cout)
    for relu in (False, True):
        pooled = _run(x, w, b, padding, relu=relu, pool=True)
        np.testing.assert_array_equal(pooled, ref_pool.max_pool2d(_run(x, w, b, padding, relu=relu), (2, 2), (2, 2),
                                                                  "valid"))


def test_a_nan_reaches_the_pooled_windows_of_its_tile_only():
    """A NaN in the input reaches the pooled outputs of the 4x4 tiles whose 6x6 input blocks hold it (never lost to
    the maximum), and no others."""
    x, (w, b) = _rand(1, 8, 8, 8), _layer(8, 48)
    x[0, 5, 6, 3] = np.nan  # padded "same": tile (1, 1)'s block is rows and columns 3..8
    y = _run(x, w, b, "same", pool=True)
    assert np.isnan(y[0, 2:, 2:]).all()
    assert not np.isnan(y[0, :2]).any() and not np.isnan(y[0, :, :2]).any()


def test_the_same_bits_in_any_batch_and_at_any_thread_count():
    """Tasks are runs of tile rows across samples (small images share one); each tile is computed alone, so a
    sample's output does not depend on which task or thread computed it, nor on the samples beside it."""
    x = _rand(11, 8, 12, 32)
    w, b = _layer(32, 64)
    with threads(2, "openmp", exact=True):
        whole = _run(x, w, b, "same", relu=True)
        pooled = _run(x, w, b, "same", relu=True, pool=True)
    for t in (1, 3, 8):
        with threads(t, "openmp", exact=True):
            np.testing.assert_array_equal(_run(x, w, b, "same", relu=True), whole)
            np.testing.assert_array_equal(_run(x, w, b, "same", relu=True, pool=True), pooled)
    with threads(2, "openmp", exact=True):
        for i in (0, 5, 10):
            np.testing.assert_array_equal(_run(x[i:i + 1], w, b, "same", relu=True), whole[i:i + 1])
            np.testing.assert_array_equal(_run(x[i:i + 3], w, b, "same", relu=True), whole[i:i + 3])


@pytest.mark.parametrize("act", ["tanh", "leaky_relu"])
def test_residual_and_activation_over_each_task_rows(act):
    """The residual operand is added and the activation applied over the output rows each task wrote: the bits of
    the unfused kernel followed by the stand-alone add and activation."""
    x = _rand(3, 10, 9, 16)  # 10 x 9 out, 3 tile rows a sample: tasks end mid-sample
    w, b = _layer(16, 32)
    r = _rand(3, 10, 9, 32)
    code, alpha = cy.CODES[act], float(cy.ACTIVATION_ALPHA.get(act, 0.0))
    plain = _run(x, w, b, "same")
    np.testing.assert_array_equal(_run(x, w, b, "same", relu=True, r=r), cy.relu(plain + r))
    run, shape = cy.activation_kernel(plain.shape, act, alpha)
    want = np.empty(shape, np.float32)
    run(plain, want)
    np.testing.assert_array_equal(_run(x, w, b, "same", act=code, alpha=alpha), want)


def test_the_bound_kernel_takes_f4_where_the_rule_says():
    assert winograd4_pays((3, 3, 16, 24), (1, 1), True) and not winograd4_pays((3, 3, 16, 16), (1, 1), True)
    assert not winograd4_pays((3, 3, 4, 128), (1, 1), True) and not winograd4_pays((3, 3, 32, 32), (2, 2), True)
    assert not winograd4_pays((3, 3, 32, 32), (1, 1), False)
    run, _ = cy.conv2d_kernel((2, 8, 8, 16), _rand(3, 3, 16, 24), None, (1, 1), "same")
    assert "conv2d_winograd4" in run.__code__.co_names


def test_an_empty_batch_writes_nothing():
    w, b = _layer(16, 24)
    for pool in (False, True):
        assert _run(_rand(0, 8, 8, 16), w, b, "same", pool=pool).shape[0] == 0


def test_mismatched_transform_is_refused():
    x, (w, b) = _rand(1, 8, 8, 16), _layer(16, 24)
    u = np.empty((16, 16, 24), np.float32)  # an F(2x2) transform
    with pytest.raises(ValueError, match=r"conv2d_winograd4: u shape \(16, 16, 24\), expected \(36, 16, cout\)"):
        g.conv2d_winograd4(x, u, b, True, 1, 1, 8, 8, np.empty((1, 8, 8, 24), np.float32), False, False)
    with pytest.raises(ValueError, match=r"winograd4_weights: w shape \(3, 3, 16, 24\), u shape \(16, 16, 24\)"):
        g.winograd4_weights(w, u)


@pytest.mark.parametrize("pads", [(1, 1), (0, 0), (2, 0)])
def test_input_gradient_stand_in_matches_the_c_kernel_and_the_reference(pads):
    """Training's input gradient on F(4x4) (``dc_wino4_dx_rows``): the full convolution of ``dy`` with the kernel
    turned 180 degrees and its channels swapped, against the reference backward; and the NumPy stand-in that code
    Numba cached where the kernel was loaded links to elsewhere keeps its contract."""
    import ctypes

    from dropcore.kernels import blas

    (n, h, wd, c, cout), (pt, pl) = (2, 11, 9, 24, 16), pads
    x, (w, _) = _rand(n, h, wd, c), _layer(c, cout)
    padding = ((pt, 2 - pt), (pl, 2 - pl))  # explicit pads: the output is h x wd
    dy = _rand(n, h, wd, cout)
    want = ref_conv.conv2d_backward(dy, x, w, (1, 1), padding, False)[0]
    u = _weights(np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)))
    c_rows = blas._WINO4_DX_PROTO(g.winograd4_dx_address())
    th = (h + 3) // 4
    for fn in (c_rows, blas._numpy_wino4_dx_rows):
        dx = np.full((n, h, wd, c), np.nan, np.float32)
        for s in range(n):
            for ty0, ty1 in ((0, 1), (1, th)):  # two bands of tile rows
                scratch = np.empty(36 * (ty1 - ty0) * ((wd + 3) // 4) * (c + cout), np.float32)
                fn(dy[s].ctypes.data, h, wd, cout, u.ctypes.data, c, pt, pl, h, wd, ty0, ty1,
                   dx[s].ctypes.data, scratch.ctypes.data)
        assert np.abs(dx - want).max() / np.abs(want).max() < REL, fn


def test_training_takes_f4_for_the_input_gradient_where_the_rule_says():
    """The Cython and the Numba backward both run the input gradient on F(4x4) where ``winograd4_dx_pays`` (the
    flipped kernel's ``winograd4_pays``), with the same bits (tests/kernels/test_cython_train_gemm.py compares the
    sets on every case), and the gradient stays within F(4x4)'s rounding of the reference."""
    from dropcore.kernels import conv as nb_conv
    from dropcore.kernels import cython_train_gemm as ct
    from dropcore.kernels.geometry import winograd4_dx_pays

    assert winograd4_dx_pays((3, 3, 16, 24), (1, 1), True) and winograd4_dx_pays((3, 3, 64, 8), (1, 1), True)
    assert not winograd4_dx_pays((3, 3, 24, 16), (1, 1), False) and not winograd4_dx_pays((3, 3, 64, 4), (1, 1), True)
    assert not winograd4_dx_pays((3, 3, 16, 16), (1, 1), True)  # the direct kernel's input gradient stays
    x, (w, b) = _rand(3, 10, 12, 16), _layer(16, 24)
    dy = _rand(3, 10, 12, 24)
    dx, dw, db = ct.conv2d_backward(dy, x, w, (1, 1), "same", True)
    want = ref_conv.conv2d_backward(dy, x, w, (1, 1), "same", True)
    assert np.abs(dx - want[0]).max() / np.abs(want[0]).max() < REL
    np.testing.assert_allclose(dw, want[1], rtol=1e-4, atol=1e-4 * np.abs(want[1]).max())
    np.testing.assert_array_equal(dx, nb_conv.conv2d_backward(dy, x, w, (1, 1), "same", True)[0])
