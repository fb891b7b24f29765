"""Training's Cython conv and dense kernels (``cython_train_gemm``): against the NumPy reference on the case lists of
test_conv.py, test_conv_pool.py and test_dense.py, bit for bit against the Numba kernels on the vector targets, the
same bits on 1 and 2 OpenMP threads, need_dx=False, fused ReLU, NaN windows, and finite differences."""
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("dropcore.kernels.cython_train_gemm", reason="the Cython kernels are not built (no compiler)")

from dropcore.kernels import conv as nb_conv  # noqa: E402
from dropcore.kernels import dense as nb_dense  # noqa: E402
from dropcore.kernels.contract import OPS, signature  # noqa: E402
from dropcore.kernels.geometry import conv_path, winograd_pays  # noqa: E402
from dropcore.kernels.reference import conv as ref_conv  # noqa: E402
from dropcore.kernels.reference import dense as ref_dense  # noqa: E402
from dropcore.kernels.threads import threads  # noqa: E402
from dropcore.testing import check_gradient  # noqa: E402


def _module(name):
    """A sibling test module, for its case lists (pytest's importlib mode puts none of them on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"_cases_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (N, H, W, Cin, kernel, Cout, strides, padding, bias, relu)
CONV_CASES = _module("test_conv").CASES + [
    (3, 26, 26, 32, (3, 3), 64, (1, 1), "valid", True, True),  # mnist_cnn's second layer: Winograd dx and dW
    (37, 8, 7, 3, (3, 3), 5, (1, 1), "same", True, True),  # 32 chunks of 1 or 2 samples
    (3, 13, 12, 16, (1, 1), 40, (1, 1), "same", True, False),  # pointwise: products on x and dx in place
    (2, 11, 13, 160, (1, 1), 64, (1, 1), "valid", False, True),  # pointwise, too many weights for the direct dW
]
# (N, H, W, Cin, kernel, Cout, strides, padding, pool)
POOL_CASES = _module("test_conv_pool").CASES + [
    (2, 9, 9, 32, (3, 2), 64, (1, 1), "same", (2, 2)),  # padded, large weights: im2col panels
    (2, 15, 15, 40, (3, 2), 64, (1, 1), "valid", (2, 2)),  # no padding, large weights: implicit GEMM
    (2, 15, 15, 64, (3, 3), 64, (1, 1), "valid", (2, 2)),  # cifar_cnn's second layer: Winograd, odd 13x13 output
    (9, 28, 28, 1, (5, 5), 6, (1, 1), "same", (2, 2)),  # LeNet's first layer: direct, padded
    (5, 28, 28, 1, (5, 5), 6, (2, 2), "same", (2, 2)),  # strided: the direct weight gradient on pooled rows
]
DENSE_SHAPES = _module("test_dense").SHAPES + [(128, 9216, 128), (128, 120, 84)]  # mnist_cnn's, LeNet's

FAST = ct._gemm.HAVE_FAST_GEMM
#: On the generic target the products run on BLAS, whose sums depend on the blocks it is handed (and the Numba
#: kernels' np.dot on others): the results agree within the reference's tolerance, not bit for bit.
needs_fast = pytest.mark.skipif(not FAST, reason="generic target: products on BLAS, whose summation order depends "
                                "on block sizes; bit-identity with the Numba kernels holds on avx512/avx2 only")


def _conv_data(case, seed, dtype=np.float32, bias=True):
    n, h, w, cin, (kh, kw), cout = case[:6]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    k = (rng.standard_normal((kh, kw, cin, cout)) / np.sqrt(kh * kw * cin)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, k, b


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _close(got, want, rtol=1e-4, atol=1e-5):
    """float32 against a float64 truth; the absolute floor scales with the result's magnitude."""
    assert got.dtype == np.float32 and got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max(initial=0.0))))


def _same(got, want):
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_signatures_are_the_contracts():
    for op in OPS:
        if hasattr(ct, op.name):
            assert inspect.signature(getattr(ct, op.name)) == signature(op), op.name
    assert {op.name for op in OPS if hasattr(ct, op.name)} == {
        "conv2d_max_pool", "conv2d_backward", "conv2d_max_pool_backward", "dense_backward"}


def test_winograd_band_is_the_numba_kernels():
    """The Winograd tile rows per task fix no sum's order, but the two drivers split the same way."""
    assert nb_conv.WINOGRAD_BAND == 4  # _cy_gemm.pyx's WINO_BAND


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward_matches_reference(case):
    x, w, b = _conv_data(case, 7)
    strides, padding, has_bias = case[6], case[7], case[8]
    z = ref_conv.conv2d(x, w, b, strides, padding, relu=True)
    dy = np.random.default_rng(8).standard_normal(z.shape).astype(np.float32)
    want = ref_conv.conv2d_backward(_f64(dy), _f64(x), _f64(w), strides, padding, has_bias)
    got = ct.conv2d_backward(dy, x, w, strides, padding, has_bias)
    _close(got[0], want[0])
    _close(got[1], want[1])
    if has_bias:
        _close(got[2], want[2])
    else:
        assert got[2] is None
    # fused ReLU: dy passes where the forward's output is positive
    want_r = ref_conv.conv2d_backward(_f64(dy), _f64(x), _f64(w), strides, padding, has_bias, relu_output=_f64(z))
    got_r = ct.conv2d_backward(dy, x, w, strides, padding, has_bias, relu_output=z)
    for g, r in zip(got_r, want_r):
        if r is not None:
            _close(g, r)
    # without the input gradient (the first layer): None, and the same weight and bias gradients
    dx, dw, db = ct.conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx=False, relu_output=z)
    assert dx is None
    np.testing.assert_array_equal(dw, got_r[1])
    if has_bias:
        np.testing.assert_array_equal(db, got_r[2])


@needs_fast
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("need_dx", [True, False])
def test_conv2d_backward_has_the_numba_bits(case, relu, need_dx):
    x, w, b = _conv_data(case, 9)
    strides, padding, has_bias = case[6], case[7], case[8]
    z = nb_conv.conv2d(x, w, b, strides, padding, relu=True) if relu else None
    dy = np.random.default_rng(10).standard_normal(nb_conv.conv2d(x, w, b, strides, padding).shape)
    dy = dy.astype(np.float32)
    _same(ct.conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx, z),
          nb_conv.conv2d_backward(dy, x, w, strides, padding, has_bias, need_dx, z))


def test_conv2d_backward_finite_differences():
    """The float32 kernel's gradients against central differences of the float64 forward at the same point."""
    case = (2, 5, 6, 2, (3, 3), 3, (1, 1), "same", True, False)
    x, w, b = _conv_data(case, 11)
    g = np.random.default_rng(12).standard_normal((2, 5, 6, 3))
    dx, dw, db = ct.conv2d_backward(g.astype(np.float32), x, w, (1, 1), "same", True)
    x64, w64, b64 = _f64(x), _f64(w), _f64(b)

    def loss():
        return float(np.sum(ref_conv.conv2d(x64, w64, b64, (1, 1), "same") * g))

    for analytic, at in ((dx, x64), (dw, w64), (db, b64)):
        check_gradient(loss, analytic.astype(np.float64), at, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_max_pool_and_backward_match_reference(case, relu):
    x, w, b = _conv_data(case, 1, bias=case[0] != 2)
    strides, padding, pool = case[6:]
    y, arg = ct.conv2d_max_pool(x, w, b, strides, padding, pool, relu)
    y_ref, arg_ref = ref_conv.conv2d_max_pool(_f64(x), _f64(w), _f64(b), strides, padding, pool, relu)
    _close(y, y_ref)
    # taps within rounding of each other may swap; the rest must agree
    assert arg.dtype == np.uint8 and arg.shape == y.shape and np.mean(arg == arg_ref) > 0.999
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    want = ref_conv.conv2d_max_pool_backward(_f64(dy), arg, _f64(y), _f64(x), _f64(w), strides, padding, pool,
                                             b is not None, True, relu)
    got = ct.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, b is not None, True, relu)
    for g, r in zip(got, want):
        assert (g is None) == (r is None)
        if r is not None:
            _close(g, r)
    dx, dw, db = ct.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, b is not None, False, relu)
    assert dx is None
    np.testing.assert_array_equal(dw, got[1])


@pytest.mark.skipif(not FAST, reason="generic target: every convolution runs on im2col panels and BLAS")
def test_pool_cases_cover_every_forward_kernel():
    paths = {"winograd" if tuple(c[8]) == (2, 2) and winograd_pays((*c[4], c[3], c[5]), c[6], True) else
             conv_path(c[1:3], (*c[4], c[3], c[5]), c[6], c[7], True) for c in POOL_CASES}
    assert paths == {"winograd", "direct", "implicit", "im2col"}


@needs_fast
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_max_pool_and_backward_have_the_numba_bits(case, relu):
    x, w, b = _conv_data(case, 3, bias=case[0] != 2)
    strides, padding, pool = case[6:]
    y, arg = ct.conv2d_max_pool(x, w, b, strides, padding, pool, relu)
    _same((y, arg), nb_conv.conv2d_max_pool(x, w, b, strides, padding, pool, relu))
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    for need_dx in (True, False):
        _same(ct.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, b is not None, need_dx, relu),
              nb_conv.conv2d_max_pool_backward(dy, arg, y, x, w, strides, padding, pool, b is not None, need_dx,
                                               relu))


@pytest.mark.parametrize("case", [(9, 12, 12, 16, (3, 3), 24, (1, 1), "valid", (2, 2)),  # direct
                                  (3, 26, 26, 32, (3, 3), 64, (1, 1), "valid", (2, 2))])  # Winograd
def test_nan_reaches_the_output_and_passes_no_gradient(case):
    x, w, b = _conv_data(case, 8)
    x[1, 4, 4, 0] = np.nan
    y, arg = ct.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), False)
    nan = np.isnan(y)
    assert nan.any() and (arg[nan] == ref_conv.NO_TAP).all() and (arg[~nan] < 4).all()
    np.testing.assert_array_equal(nan, np.isnan(ref_conv.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2))[0]))
    dy = np.zeros_like(y)
    dy[nan] = 1.0  # only the NaN windows have a gradient: none of it may reach the convolution's output
    for relu in (False, True):
        dx, _, db = ct.conv2d_max_pool_backward(dy, arg, y, x, w, (1, 1), "valid", (2, 2), True, True, relu)
        assert not dx.any() and not db.any()  # (dw is NaN: the NaN input times a zero gradient)


def test_relu_passes_the_gradient_only_where_the_window_is_positive():
    case = (2, 10, 10, 3, (3, 3), 8, (1, 1), "valid", (2, 2))
    x, w, b = _conv_data(case, 5)
    b[:] = -0.5  # many windows all negative: ReLU makes them 0
    y, arg = ct.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), True)
    assert (y == 0).any() and (y > 0).any()
    dy = np.ones_like(y)
    _, _, db = ct.conv2d_max_pool_backward(dy, arg, y, x, w, (1, 1), "valid", (2, 2), True, False, True)
    np.testing.assert_array_equal(db, (y > 0).sum(axis=(0, 1, 2)).astype(np.float32))


def test_windows_of_more_taps_than_the_index_holds_are_refused():
    x, w, b = _conv_data((1, 17, 17, 1, (2, 2), 1), 9)
    with pytest.raises(ValueError, match="a 16x16 window has 256 taps; expected at most 255"):
        ct.conv2d_max_pool(x, w, b, (1, 1), "valid", (16, 16))


def test_results_do_not_depend_on_the_thread_count():
    """1 and 2 OpenMP threads, bit for bit: the backward's chunks and every other split are fixed by the shapes."""
    rng = np.random.default_rng(6)
    pool_case = (37, 12, 12, 16, (3, 3), 24, (1, 1), "valid", (2, 2))
    x, w, b = _conv_data(pool_case, 13)
    xw, ww, bw = _conv_data((33, 13, 13, 32, (3, 3), 64), 14)  # Winograd on the vector targets
    dy = rng.standard_normal((37, 10, 10, 24)).astype(np.float32)
    dyw = rng.standard_normal((33, 13, 13, 64)).astype(np.float32)
    xd, wd_, dyd = (rng.standard_normal(s).astype(np.float32) for s in ((128, 2304), (2304, 256), (128, 256)))

    def run():
        y, arg = ct.conv2d_max_pool(x, w, b, (1, 1), "valid", (2, 2), True)
        yw, argw = ct.conv2d_max_pool(xw, ww, bw, (1, 1), "same", (2, 2), True)
        return [y, arg, *ct.conv2d_max_pool_backward(dy[:, :5, :5], arg, y, x, w, (1, 1), "valid", (2, 2), True),
                yw, argw, *ct.conv2d_max_pool_backward(dyw[:, :6, :6], argw, yw, xw, ww, (1, 1), "same", (2, 2), True,
                                                      True, True),
                *ct.conv2d_backward(dy, x, w, (1, 1), "valid", True),
                *ct.conv2d_backward(dyw, xw, ww, (1, 1), "same", True),
                *ct.dense_backward(dyd, xd, wd_, True)]

    with threads(1, "openmp", exact=True):
        one = run()
    with threads(2, "openmp", exact=True):
        two = run()
    _same(one, two)


@pytest.mark.parametrize("shape", DENSE_SHAPES)
@pytest.mark.parametrize("has_bias", [False, True])
def test_dense_backward_matches_reference(shape, has_bias):
    n, k, o = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, o)) / np.sqrt(k)).astype(np.float32)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    dx, dw, db = ct.dense_backward(dy, x, w, has_bias)
    rdx, rdw, rdb = ref_dense.dense_backward(_f64(dy), _f64(x), _f64(w), has_bias)
    _close(dx, rdx)
    _close(dw, rdw, atol=1e-5 * np.sqrt(n))  # dw sums n products of O(1) terms
    if has_bias:
        _close(db, rdb, atol=1e-5 * np.sqrt(n))
    else:
        assert db is None
    if FAST:
        _same((dx, dw, db), nb_dense.dense_backward(dy, x, w, has_bias))
