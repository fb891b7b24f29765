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


# Global pools (Keras's GlobalAveragePooling2D / GlobalMaxPooling2D): odd H and W, C not a multiple of 16, N = 1,
# a 1x1 map, and 300 channels (the Numba kernels' second block of 256 channels, partly filled).
GLOBAL_SHAPES = [(2, 7, 9, 3), (1, 5, 5, 17), (3, 1, 1, 4), (2, 3, 5, 70), (1, 7, 7, 300), (4, 6, 4, 33)]
GLOBAL_GRAD_SHAPES = [(1, 3, 3, 2), (2, 3, 4, 3), (2, 1, 5, 1)]


def _f32(impl, *arrays):
    """The arrays as ``impl`` takes them: float32 for the Numba kernels, unchanged (float64) for the reference."""
    return [a.astype(np.float32) if impl is pool else a for a in arrays]


def _global_case(forward, shape, seed):
    """``(x, forward(x), dy)`` for a random input of ``shape``, the output's shape and dtype checked."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = forward(x)
    assert y.shape == (shape[0], shape[3]) and y.dtype == np.float32
    return x, y, rng.standard_normal(y.shape).astype(np.float32)


@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_avg_pool_numba_matches_reference(shape):
    x, y, dy = _global_case(pool.global_avg_pool2d, shape, 10)
    # Same summation order as the float32 reference: only the last rounding of the division may differ.
    np.testing.assert_allclose(y, ref.global_avg_pool2d(x), rtol=1e-6, atol=1e-7)
    # Against the exact mean: the float32 sum's error grows with the size of the terms, not of the result.
    np.testing.assert_allclose(y, ref.global_avg_pool2d(x.astype(np.float64)), rtol=1e-6,
                               atol=1e-6 * np.abs(x).max())
    dx = pool.global_avg_pool2d_backward(dy, shape)
    assert dx.shape == shape and dx.dtype == np.float32
    np.testing.assert_allclose(dx, ref.global_avg_pool2d_backward(dy, shape), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_max_pool_numba_matches_reference(shape):
    x, y, dy = _global_case(pool.global_max_pool2d, shape, 11)
    np.testing.assert_array_equal(y, ref.global_max_pool2d(x))  # a max is exact
    np.testing.assert_array_equal(y, x.max(axis=(1, 2)))
    dx = pool.global_max_pool2d_backward(dy, x, y)
    assert dx.shape == shape and dx.dtype == np.float32
    np.testing.assert_array_equal(dx, ref.global_max_pool2d_backward(dy, x, y))  # no arithmetic: exact
    # Each channel's gradient lands once, whole, on a position holding the max.
    np.testing.assert_array_equal(dx.sum(axis=(1, 2)), dy)
    assert ((dx != 0) <= (x == y[:, None, None, :])).all()


def _global_pools(impl):
    """``(avg, max)`` of the Numba kernels or, when built, of the Cython ones."""
    if impl == "numba":
        return pool.global_avg_pool2d, pool.global_max_pool2d
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return cy.global_avg_pool2d, cy.global_max_pool2d


@pytest.mark.parametrize("impl", ["numba", "cython"])
@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 7, 7, 300), (16, 7, 9, 70)])
def test_global_pools_large_values(impl, shape):
    avg, amax = _global_pools(impl)
    rng = np.random.default_rng(12)
    base = rng.standard_normal(shape)
    # Huge magnitudes (no overflow: the float32 sum of 49 values of 1e36 stays finite) and a large common offset
    # (partial sums of ~5e7 whose roundings the mean must not amplify).
    for x64 in (base * 1e36, base + 1e6):
        x = x64.astype(np.float32)
        y = avg(x)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, ref.global_avg_pool2d(x), rtol=1e-6)
        np.testing.assert_allclose(y, ref.global_avg_pool2d(x.astype(np.float64)), rtol=2e-6,
                                   atol=2e-6 * np.abs(x64).max())
    x = (base / np.abs(base).max() * 3.4e38).astype(np.float32)  # up to float32's largest finite value; a -inf
    x[0, 0, 0, 0] = -np.inf
    np.testing.assert_array_equal(amax(x), ref.global_max_pool2d(x))
    assert np.isfinite(amax(x)).all()


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (3, 4, 5, 70), (1, 3, 3, 300)])
def test_global_max_pool_numba_ties_match_reference(shape):
    # Few distinct values: nearly every channel's max is tied, so the first-position rule decides every gradient.
    rng = np.random.default_rng(13)
    x = rng.integers(0, 3, size=shape).astype(np.float32)
    y = pool.global_max_pool2d(x)
    dy = rng.integers(1, 5, size=y.shape).astype(np.float32)
    dx = pool.global_max_pool2d_backward(dy, x, y)
    np.testing.assert_array_equal(dx, ref.global_max_pool2d_backward(dy, x, y))
    assert (np.count_nonzero(dx.reshape(shape[0], -1, shape[3]), axis=1) == 1).all()  # one position per channel


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
def test_global_max_pool_first_position_wins(impl):
    # Channel 0: all equal, the top-left (row-major first) position takes it. Channel 1: 5 at (0, 1) and (1, 0),
    # (0, 1) comes first in row-major order.
    x = np.zeros((1, 2, 2, 2), dtype=np.float32)
    x[0, :, :, 0] = 7
    x[0, :, :, 1] = [[1, 5], [5, 2]]
    y = impl.global_max_pool2d(x)
    np.testing.assert_array_equal(y, [[7, 5]])
    dx = impl.global_max_pool2d_backward(np.array([[3, 10]], dtype=np.float32), x, y)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[3, 0], [0, 0]])
    np.testing.assert_array_equal(dx[0, :, :, 1], [[0, 10], [0, 0]])


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
def test_global_avg_pool_hand_case(impl):
    x = np.arange(1, 13, dtype=np.float32).reshape(1, 2, 3, 2)  # channel 0: 1, 3, ..., 11; channel 1: 2, ..., 12
    np.testing.assert_allclose(impl.global_avg_pool2d(x), [[6, 7]], rtol=1e-6)
    dx = impl.global_avg_pool2d_backward(np.array([[6, -3]], dtype=np.float32), x.shape)
    np.testing.assert_allclose(dx[0, :, :, 0], np.full((2, 3), 1.0), rtol=1e-6)
    np.testing.assert_allclose(dx[0, :, :, 1], np.full((2, 3), -0.5), rtol=1e-6)


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
@pytest.mark.parametrize("where", [(0, 0, 0, 1), (1, 4, 2, 1), (1, 2, 1, 0)])
def test_global_max_pool_nan_propagates(impl, where):
    # The NaN first, last, and in the middle of its channel's positions: only that (sample, channel) is NaN.
    x = np.random.default_rng(14).standard_normal((2, 5, 3, 2)).astype(np.float32)
    x[where] = np.nan
    y = impl.global_max_pool2d(x)
    expected = np.zeros(y.shape, dtype=bool)
    expected[where[0], where[3]] = True
    np.testing.assert_array_equal(np.isnan(y), expected)
    # No position equals a NaN max: like max_pool2d_backward, that channel's gradient goes nowhere.
    dx = impl.global_max_pool2d_backward(np.ones_like(y), x, y)
    assert not dx[where[0], :, :, where[3]].any()
    assert (dx.sum(axis=(1, 2)) == ~expected).all()


def test_global_max_pool_numba_nan_in_second_channel_block():
    x = np.random.default_rng(15).standard_normal((1, 3, 3, 300)).astype(np.float32)
    x[0, 2, 1, 280] = np.nan
    assert np.flatnonzero(np.isnan(pool.global_max_pool2d(x))).tolist() == [280]


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
@pytest.mark.parametrize("shape", GLOBAL_GRAD_SHAPES)
def test_global_avg_pool_gradient(impl, shape):
    rng = np.random.default_rng(16)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((shape[0], shape[3]))
    (w_impl,) = _f32(impl, w)
    check_gradient(lambda: np.sum(ref.global_avg_pool2d(x) * w), impl.global_avg_pool2d_backward(w_impl, shape), x)


@pytest.mark.parametrize("impl", [ref, pool], ids=["reference", "numba"])
@pytest.mark.parametrize("shape", GLOBAL_GRAD_SHAPES)
def test_global_max_pool_gradient(impl, shape):
    rng = np.random.default_rng(17)
    x = _distinct(shape, rng)  # no ties: a 1e-6 perturbation never changes the argmax
    w = rng.standard_normal((shape[0], shape[3]))
    x_impl, w_impl = _f32(impl, x, w)
    analytic = impl.global_max_pool2d_backward(w_impl, x_impl, impl.global_max_pool2d(x_impl))
    check_gradient(lambda: np.sum(ref.global_max_pool2d(x) * w), analytic, x)
