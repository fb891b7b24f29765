"""Pooling kernels: Numba against the NumPy reference, the reference against finite differences, hand cases."""
import numpy as np
import pytest

from dropcore.kernels import pool
from dropcore.kernels.reference import pool as ref
from dropcore.testing import check_gradient

# (input shape, pool, strides, padding): square and rectangular pools, overlapping and not, odd sizes, both paddings.
CASES = [
    ((2, 7, 9, 3), (2, 2), (2, 2), "valid"),
    ((2, 7, 9, 3), (2, 2), (2, 2), "same"),
    ((2, 7, 9, 5), (3, 3), (1, 1), "same"),
    ((3, 8, 5, 4), (2, 2), (2, 1), "same"),
    ((1, 9, 11, 6), (3, 3), (2, 2), "valid"),
    ((2, 10, 7, 2), (3, 3), (2, 1), "valid"),
    ((2, 6, 7, 17), (3, 2), (2, 2), "same"),
    ((2, 5, 5, 8), (2, 2), (1, 1), "valid"),
]
TOL = dict(rtol=1e-5, atol=1e-6)


def _distinct(shape, rng, dtype=np.float64):
    """Values at least 0.01 apart: no ties, and a 1e-6 perturbation never changes which tap is the max."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0).astype(dtype)


@pytest.mark.parametrize("shape,size,strides,padding", CASES)
def test_max_pool_numba_matches_reference(shape, size, strides, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    y = pool.max_pool2d(x, size, strides, padding)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, size, strides, padding))  # a max is exact
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(pool.max_pool2d_backward(dy, x, y, size, strides, padding),
                               ref.max_pool2d_backward(dy, x, y, size, strides, padding), **TOL)


@pytest.mark.parametrize("shape,size,strides,padding", CASES)
def test_avg_pool_numba_matches_reference(shape, size, strides, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    y = pool.avg_pool2d(x, size, strides, padding)
    np.testing.assert_allclose(y, ref.avg_pool2d(x, size, strides, padding), **TOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(pool.avg_pool2d_backward(dy, shape, size, strides, padding),
                               ref.avg_pool2d_backward(dy, shape, size, strides, padding), **TOL)


@pytest.mark.parametrize("shape,size,strides,padding", CASES[:1] + CASES[2:5])
def test_max_pool_numba_ties_match_reference(shape, size, strides, padding):
    # Few distinct values: nearly every window has ties, so the first-tap rule decides every gradient.
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=shape).astype(np.float32)
    y = pool.max_pool2d(x, size, strides, padding)
    dy = rng.integers(1, 5, size=y.shape).astype(np.float32)  # small integers: sums are exact in any order
    np.testing.assert_array_equal(pool.max_pool2d_backward(dy, x, y, size, strides, padding),
                                  ref.max_pool2d_backward(dy, x, y, size, strides, padding))


GRAD_CASES = [
    ((1, 4, 5, 2), (2, 2), (2, 2), "valid"),
    ((2, 5, 4, 1), (3, 3), (1, 1), "same"),
    ((1, 5, 5, 2), (3, 2), (2, 1), "same"),
    ((1, 6, 5, 1), (2, 3), (1, 2), "valid"),
]


@pytest.mark.parametrize("shape,size,strides,padding", GRAD_CASES)
def test_max_pool_reference_gradient(shape, size, strides, padding):
    rng = np.random.default_rng(4)
    x = _distinct(shape, rng)
    y = ref.max_pool2d(x, size, strides, padding)
    w = rng.standard_normal(y.shape)
    check_gradient(lambda: np.sum(ref.max_pool2d(x, size, strides, padding) * w),
                   ref.max_pool2d_backward(w, x, y, size, strides, padding), x)


@pytest.mark.parametrize("shape,size,strides,padding", GRAD_CASES)
def test_avg_pool_reference_gradient(shape, size, strides, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(ref.avg_pool2d(x, size, strides, padding).shape)
    check_gradient(lambda: np.sum(ref.avg_pool2d(x, size, strides, padding) * w),
                   ref.avg_pool2d_backward(w, shape, size, strides, padding), x)


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
def test_max_pool_first_tap_wins_and_overlaps_add(impl):
    # One row [1, 3, 3, 2], windows of width 2 at stride 1: [1, 3] -> tap 1, [3, 3] -> tap 1 (first of the tie),
    # [3, 2] -> tap 2. Position 1 collects two windows' gradients.
    x = np.array([1, 3, 3, 2], dtype=np.float32).reshape(1, 1, 4, 1)
    y = impl.max_pool2d(x, (1, 2), (1, 1), "valid")
    np.testing.assert_array_equal(y.ravel(), [3, 3, 3])
    dy = np.array([1, 10, 100], dtype=np.float32).reshape(y.shape)
    dx = impl.max_pool2d_backward(dy, x, y, (1, 2), (1, 1), "valid")
    np.testing.assert_array_equal(dx.ravel(), [0, 11, 100, 0])
    # A 2x2 window of equal values: the top-left tap (row-major first) takes it all.
    x = np.full((1, 2, 2, 1), 7, dtype=np.float32)
    dx = impl.max_pool2d_backward(np.full((1, 1, 1, 1), 5, np.float32), x, x[:, :1, :1], (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(dx.ravel(), [5, 0, 0, 0])


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
def test_max_pool_padding_never_wins(impl):
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)  # all negative: a zero pad would win
    y = impl.max_pool2d(x, (3, 3), (2, 2), "same")  # pads one row/column on each side
    np.testing.assert_array_equal(y.ravel(), [-1, -2, -4, -5])  # windows cover rows/columns {0, 1} and {1, 2}
    dx = impl.max_pool2d_backward(np.ones_like(y), x, y, (3, 3), (2, 2), "same")
    np.testing.assert_array_equal(dx.ravel(), [1, 1, 0, 1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
def test_avg_pool_same_divides_by_real_positions(impl):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    # pool 2, stride 1, "same": one padded row/column after; edge windows average 2 values, the corner 1.
    y = impl.avg_pool2d(x, (2, 2), (1, 1), "same")
    expected = [[3, 4, 4.5], [6, 7, 7.5], [7.5, 8.5, 9]]
    np.testing.assert_allclose(y[0, :, :, 0], expected, rtol=1e-6)
    # pool 3, stride 2, "same" on 3x3: one padded row/column on each side, so each window covers 2x2 real values
    # (rows/columns {0, 1} or {1, 2}) and divides by 4, not 9.
    y = impl.avg_pool2d(x, (3, 3), (2, 2), "same")
    np.testing.assert_allclose(y[0, :, :, 0], [[3, 4], [6, 7]], rtol=1e-6)
    # The backward spreads dy / 4 over the same real positions; the centre pixel is in all four windows.
    dx = impl.avg_pool2d_backward(np.ones_like(y), x.shape, (3, 3), (2, 2), "same")
    np.testing.assert_allclose(dx[0, :, :, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]], rtol=1e-6)


def test_max_pool_nan_propagates():
    x = np.random.default_rng(6).standard_normal((1, 4, 4, 3)).astype(np.float32)
    x[0, 1, 2, 1] = np.nan
    for impl in (ref, pool):
        y = impl.max_pool2d(x, (2, 2), (2, 2), "valid")
        assert np.isnan(y[0, 0, 1, 1]) and np.isnan(y).sum() == 1
