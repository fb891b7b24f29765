"""``conv2d_max_pool`` (training's fusion of a convolution and the max pooling after it): the reference against
the two reference ops and finite differences, the Numba kernels against the two Numba kernels bit for bit (on the
direct convolution, the implicit GEMM and im2col panels), NaN, and windows too large for the tap index."""
import numpy as np
import pytest

from dropcore.kernels import blas
from dropcore.kernels import conv as nb
from dropcore.kernels import pool as nb_pool
from dropcore.kernels.geometry import conv_path
from dropcore.kernels.reference import conv as ref
from dropcore.kernels.reference import pool as ref_pool
from dropcore.kernels.threads import threads
from dropcore.testing import check_gradient

# (N, H, W, Cin, kernel, Cout, strides, padding, pool): the three paths of the Numba convolution (direct: few input
# channels; implicit GEMM: no padding; im2col: padding), outputs that windows do not cover evenly (25 rows for a
# pool of 2, 11 columns for 3), non-square windows and batches above and below 8 (a band of pooled rows per task).
CASES = [
    (3, 26, 26, 32, (3, 3), 64, (1, 1), "valid", (2, 2)),  # mnist_cnn's second block: implicit GEMM
    (9, 12, 12, 16, (3, 3), 24, (1, 1), "valid", (2, 2)),
    (2, 13, 13, 16, (3, 3), 8, (1, 1), "same", (2, 2)),  # im2col panels
    (10, 28, 28, 1, (3, 3), 32, (1, 1), "valid", (2, 2)),  # direct
    (4, 15, 15, 3, (5, 5), 6, (1, 1), "valid", (2, 2)),  # direct, 11x11 output: a row and a column left over
    (3, 17, 16, 8, (3, 3), 16, (2, 2), "same", (3, 3)),
    (2, 11, 12, 4, (3, 3), 24, (1, 1), "valid", (2, 3)),
    (1, 27, 9, 12, (2, 2), 70, (1, 1), "valid", (2, 2)),  # 26 rows: a batch of one cut into bands
]


@pytest.fixture(autouse=True, params=["fast-gemm", "blas"] if blas.HAVE_FAST_GEMM else ["blas"])
def gemm(request, monkeypatch):
    """On both kernel sets the Numba convolutions can use (see tests/kernels/test_conv.py)."""
    monkeypatch.setattr(nb, "HAVE_FAST_GEMM", request.param == "fast-gemm")
    monkeypatch.setattr(nb, "HAVE_DIRECT_CONV", request.param == "fast-gemm" and blas.HAVE_DIRECT_CONV)
    # Winograd's tiles with dropcore's GEMM, and on targets where BLAS is the only GEMM (avx2) as they run there
    monkeypatch.setattr(nb, "HAVE_WINOGRAD", blas.HAVE_WINOGRAD and (request.param == "fast-gemm" or
                                                                    not blas.HAVE_FAST_GEMM))
    return request.param


def _data(case, seed, dtype=np.float32, bias=True):
    n, h, w, cin, (kh, kw), cout = case[:6]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    k = (rng.standard_normal((kh, kw, cin, cout)) / np.sqrt(kh * kw * cin)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, k, b


def _unfused(x, w, b, strides, padding, pool, relu, dy):
    """The two Numba kernels the fused ones stand for: forward output and the backward's (dx, dw, db)."""
    z = nb.conv2d(x, w, b, strides, padding, relu)
    y = nb_pool.max_pool2d(z, pool, pool, "valid")
    dz = nb_pool.max_pool2d_backward(dy, z, y, pool, pool, "valid")
    return y, nb.conv2d_backward(dz, x, w, strides, padding, b is not None, True, z if relu else None)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_numba_has_the_bits_of_the_two_kernels_and_the_reference_values(case, relu, gemm):
    x, w, b = _data(case, 1, bias=case[0] != 2)
    strides, padding, pool = case[6:]
    y, arg = nb.conv2d_max_pool(x, w, b, strides, padding, pool, relu)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    grads = nb.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, b is not None, True, relu)
    y_sep, grads_sep = _unfused(x, w, b, strides, padding, pool, relu, dy)
    # Bit for bit on dropcore's GEMM, whose sums never depend on how rows are grouped. BLAS's may: there the
    # panels are the same as the separate convolution's only when a task is a whole sample (batches of 8 or more).
    same = np.testing.assert_array_equal if gemm == "fast-gemm" or case[0] >= 8 else (
        lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5))
    same(y, y_sep)
    for got, want in zip(grads, grads_sep):
        assert (got is None) == (want is None)
        if got is not None:
            same(got, want)
    y_ref, arg_ref = ref.conv2d_max_pool(x, w, b, strides, padding, pool, relu)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    # Taps within rounding of each other may swap; the rest must agree.
    assert arg.dtype == np.uint8 and np.mean(arg == arg_ref) > 0.999
    for got, want in zip(grads, ref.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool,
                                                             b is not None, True, relu)):
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    if gemm == "fast-gemm" and case is CASES[0]:
        assert conv_path(case[1:3], w.shape, strides, padding, True) == "implicit"


def test_numba_backward_does_not_depend_on_thread_count():
    x, w, b = _data(CASES[1], 3)
    y, arg = nb.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), True)
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    runs = []
    for t in (1, 2):
        with threads(t, "numba", exact=True):
            runs.append(nb.conv2d_max_pool_backward(dy, arg, y, x, w, (1, 1), "valid", (2, 2), True, True, True))
    for a, b_ in zip(*runs):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", [
    (2, 6, 7, 2, (3, 3), 3, (1, 1), "valid", (2, 2)),
    (1, 7, 7, 2, (2, 2), 2, (1, 1), "same", (3, 2)),
])
def test_reference_backward_finite_differences(case, relu):
    x, w, b = _data(case, 5, np.float64)
    strides, padding, pool = case[6:]
    y, arg = ref.conv2d_max_pool(x, w, b, strides, padding, pool, relu)
    g = np.random.default_rng(6).standard_normal(y.shape)

    def loss():
        return float(np.sum(ref.conv2d_max_pool(x, w, b, strides, padding, pool, relu)[0] * g))

    dx, dw, db = ref.conv2d_max_pool_backward(g, arg, y, x, w, strides, padding, pool, True, True, relu)
    check_gradient(loss, dx, x)
    check_gradient(loss, dw, w)
    check_gradient(loss, db, b)


def test_reference_matches_the_two_reference_ops():
    x, w, b = _data(CASES[4], 7)
    y, arg = ref.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), True)
    z = ref.conv2d(x, w, b, (1, 1), "valid", True)
    np.testing.assert_array_equal(y, ref_pool.max_pool2d(z, (2, 2), (2, 2), "valid"))
    # arg: the first tap (row-major) equal to the maximum, also on ties (ReLU makes zeros tie)
    taps = np.stack([z[:, i:10:2, j:10:2] for i in range(2) for j in range(2)], axis=-1)
    np.testing.assert_array_equal(arg, np.argmax(taps == y[..., None], axis=-1))
    assert (taps == 0).all(axis=-1).any()  # some windows are all zeros: the tie case was exercised


@pytest.mark.parametrize("kernels", [ref, nb])
def test_nan_reaches_the_output_and_passes_no_gradient(kernels):
    x, w, b = _data(CASES[1], 8)
    x[1, 4, 4, 0] = np.nan
    y, arg = kernels.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), False)
    nan = np.isnan(y)
    assert nan.any() and (arg[nan] == ref.NO_TAP).all() and (arg[~nan] < 4).all()
    dy = np.zeros_like(y)
    dy[nan] = 1.0  # only the NaN windows have a gradient: none of it may reach the convolution's output
    dx, _, db = kernels.conv2d_max_pool_backward(dy, arg, y, x, w, (1, 1), "valid", (2, 2), True, True, False)
    assert not dx.any() and not db.any()  # (dw is NaN: the NaN input times a zero gradient)


@pytest.mark.parametrize("kernels", [ref, nb])
def test_windows_of_more_taps_than_the_index_holds_are_refused(kernels):
    x, w, b = _data((1, 17, 17, 1, (2, 2), 1), 9)
    with pytest.raises(ValueError, match="a 16x16 window has 256 taps; expected at most 255"):
        kernels.conv2d_max_pool(x, w, b, (1, 1), "valid", (16, 16))


@pytest.mark.skipif(not blas.HAVE_FAST_GEMM, reason="the vector pooling is on the avx512 and avx2 targets; this "
                    "variant is generic")
@pytest.mark.parametrize("c, pool", [(6, (2, 2)), (37, (2, 3)), (64, (3, 3))])
def test_vector_pooling_with_taps_matches_its_numpy_stand_in(c, pool):
    """The C pooling training's forward runs on the vector targets, and the NumPy stand-in code cached elsewhere
    links to: the same maxima and taps, NaN windows included (255), rows and columns past the windows ignored."""
    from dropcore.kernels.isa import gemm

    ph, pw = pool
    prows, pow_, ow = 3, 4, 4 * pw + 1
    rng = np.random.default_rng(c)
    conv = rng.standard_normal((prows * ph, ow, c)).astype(np.float32)
    conv[:ph, :pw] = conv[0, 0]  # ties: the first maximum wins
    conv[ph, pw + 1, 2] = np.nan
    outs = []
    for fn in (blas._POOL_ARG_PROTO(gemm.max_pool_arg_address()), blas._numpy_max_pool_arg_rows):
        y, arg = np.full((prows, pow_, c), 7.0, np.float32), np.full((prows, pow_, c), 7, np.uint8)
        fn(conv.ctypes.data, ow, c, ph, pw, prows, pow_, y.ctypes.data, arg.ctypes.data)
        outs.append((y, arg))
    (y_c, arg_c), (y_np, arg_np) = outs
    np.testing.assert_array_equal(y_c, y_np)
    np.testing.assert_array_equal(arg_c, arg_np)
    assert np.isnan(y_c[1, 1, 2]) and arg_c[1, 1, 2] == 255 and (arg_c[0, 0] == 0).all()
    np.testing.assert_array_equal(y_c, nb_pool.max_pool2d(conv[None], pool, pool, "valid")[0, :, :pow_])
