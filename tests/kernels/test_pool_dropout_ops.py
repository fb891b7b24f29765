"""MaxPoolingDropout's ops: ``max_pool_dropout2d`` (training: the max of each window's kept inputs and its tap),
``weighted_pool2d`` (inference: probabilistic weighted pooling) and their backwards. Every set gives the reference's
bits (the same argmax, the same stable NaN-last sort, the same float32 sums in the same order), ties and NaN
included, for valid and same padding and overlapping windows; the training rule is the layer's former NumPy code
bit for bit, the weighted sum within the rounding of a sum of its terms; a slice with its offset draws the whole
call's bits; nothing depends on the thread count; the bound kernels equal the ops."""
import numpy as np
import pytest

from dropcore.kernels.reference import dropout as ref
from dropcore.kernels.reference.rng import dropout_key
from dropcore.kernels.threads import threads
from dropcore.ops import get_ops

KEY = dropout_key(4, 1, 6)
GEOMETRIES = [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (2, 1), "same"), ((2, 3), (1, 2), "valid"),
              ((3, 3), (1, 1), "same")]


def _ops(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    return get_ops(name)


def _x(shape=(3, 7, 8, 5), seed=0, ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: the first maximum and the stable order decide
        return rng.integers(-2, 3, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _assert_same(got, expected):
    pairs = zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,))
    for g, e in pairs:
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name", ["numba", "cython"])
@pytest.mark.parametrize("pool, strides, padding", GEOMETRIES)
@pytest.mark.parametrize("ties", [False, True])
def test_each_set_gives_the_references_bits(name, pool, strides, padding, ties):
    ops, x = _ops(name), _x(ties=ties)
    if not ties:
        x[1, 2, 3, :2] = np.nan  # a kept NaN wins its windows; a NaN sorts last
    y, arg = ref.max_pool_dropout2d(x, 0.4, KEY, pool, strides, padding, 17)
    _assert_same(ops.max_pool_dropout2d(x, 0.4, KEY, pool, strides, padding, 17), (y, arg))
    assert (arg == -1).any() or pool != (2, 2)  # some window lost every input
    dy = _x(y.shape, seed=1)
    _assert_same(ops.max_pool_dropout2d_backward(dy, arg, x.shape, pool, strides, padding),
                 ref.max_pool_dropout2d_backward(dy, arg, x.shape, pool, strides, padding))
    for rate in (0.0, 0.3):
        _assert_same(ops.weighted_pool2d(x, rate, pool, strides, padding),
                     ref.weighted_pool2d(x, rate, pool, strides, padding))
        _assert_same(ops.weighted_pool2d_backward(dy, x, rate, pool, strides, padding),
                     ref.weighted_pool2d_backward(dy, x, rate, pool, strides, padding))


def _former_weighted_pool(x, rate, pool, strides, padding):
    """MaxPoolingDropout2D's inference forward before it moved onto kernels: padding as +inf, NumPy's sum."""
    real = ref.pool_windows(np.ones((1,) + x.shape[1:], dtype=bool), pool, strides, padding, False)
    win = np.where(real, ref.pool_windows(x, pool, strides, padding, 0), np.float32(np.inf))
    ranked = np.take_along_axis(win, np.argsort(win, axis=-1, kind="stable"), -1)
    weights = ref.pool_weights(rate, pool[0] * pool[1])[real.sum(axis=-1)].astype(np.float32)
    terms = np.where(weights != 0, ranked, np.float32(0)) * weights
    return np.sum(terms, axis=-1), np.abs(terms).astype(np.float64).sum(axis=-1)


@pytest.mark.parametrize("pool, strides, padding", GEOMETRIES)
def test_the_weighted_sum_is_the_former_one_within_its_rounding(pool, strides, padding):
    """The terms are the same float32 products; only the order of their float32 sum changed (sorted order, where
    NumPy summed pairwise): each of the two sums is within (K - 1) eps of the sum of its terms' magnitudes, so
    they differ by at most 2 (K - 1) eps of it (1.2 eps measured on 3x3 windows)."""
    x = _x((4, 9, 10, 6), seed=2)
    former, magnitude = _former_weighted_pool(x, 0.4, pool, strides, padding)
    k = pool[0] * pool[1]
    bound = 2 * (k - 1) * np.finfo(np.float32).eps * magnitude
    assert (np.abs(ref.weighted_pool2d(x, 0.4, pool, strides, padding) - former) <= bound).all()


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_a_slice_with_its_offset_draws_the_whole_calls_bits(name):
    ops, x = _ops(name), _x((5, 6, 6, 3))
    whole = ops.max_pool_dropout2d(x, 0.5, KEY, (2, 2), (2, 2), "valid", 0)
    part = ops.max_pool_dropout2d(x[3:], 0.5, KEY, (2, 2), (2, 2), "valid", 3 * 6 * 6 * 3)
    _assert_same(part, tuple(a[3:] for a in whole))


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_no_dependence_on_the_thread_count(name):
    ops, x = _ops(name), _x((6, 20, 20, 16))
    dy = _x((6, 10, 10, 16), seed=3)
    results = []
    for n in (1, 2):
        with threads(n, "numba" if name == "numba" else "openmp", exact=True):
            y, arg = ops.max_pool_dropout2d(x, 0.3, KEY, (3, 3), (2, 2), "same", 5)
            results.append((y, arg, ops.max_pool_dropout2d_backward(dy, arg, x.shape, (3, 3), (2, 2), "same"),
                            ops.weighted_pool2d(x, 0.3, (3, 3), (2, 2), "same"),
                            ops.weighted_pool2d_backward(dy, x, 0.3, (3, 3), (2, 2), "same")))
    _assert_same(results[0], results[1])


def test_the_bound_kernels_equal_the_ops():
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    x = _x()
    run, shape = cy.max_pool_dropout2d_kernel(x.shape, 0.4, (3, 2), (2, 1), "same")
    y = np.full(shape, np.nan, np.float32)
    run(x, y, KEY, 9)
    _assert_same(y, cy.max_pool_dropout2d(x, 0.4, KEY, (3, 2), (2, 1), "same", 9)[0])
    run, shape = cy.weighted_pool2d_kernel(x.shape, 0.4, (3, 2), (2, 1), "same")
    y = np.full(shape, np.nan, np.float32)
    run(x, y)
    _assert_same(y, cy.weighted_pool2d(x, 0.4, (3, 2), (2, 1), "same"))


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_an_empty_batch(name):
    ops, x = _ops(name), np.zeros((0, 4, 4, 2), np.float32)
    y, arg = ops.max_pool_dropout2d(x, 0.3, KEY, (2, 2), (2, 2), "valid")
    assert y.shape == arg.shape == (0, 2, 2, 2)
    assert ops.weighted_pool2d(x, 0.3, (2, 2), (2, 2), "valid").shape == (0, 2, 2, 2)
    assert ops.weighted_pool2d_backward(y, x, 0.3, (2, 2), (2, 2), "valid").shape == x.shape
    assert ops.max_pool_dropout2d_backward(y, arg, x.shape, (2, 2), (2, 2), "valid").shape == x.shape
