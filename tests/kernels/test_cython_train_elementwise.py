"""The Cython training kernels of the activation (with dropout), pool, norm and loss families against the NumPy
reference: bit-identical where the arithmetic is the reference's (masks, selections, the pools' gradients, the
element-wise backward passes), within the Numba tests' tolerances elsewhere; the same bits on 1 and 2 OpenMP
threads; NaN propagating; the contract's signatures."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

cy = pytest.importorskip("dropcore.kernels.cython_train_elementwise",
                         reason="the Cython kernels are not built (no compiler)")

from dropcore.kernels import contract  # noqa: E402
from dropcore.kernels import cython_ops  # noqa: E402  (also caps the extensions' OpenMP, as in the engine)
from dropcore.kernels.reference import activation as ref_act  # noqa: E402
from dropcore.kernels.reference import dropout as ref_drop  # noqa: E402
from dropcore.kernels.reference import loss as ref_loss  # noqa: E402
from dropcore.kernels.reference import norm as ref_norm  # noqa: E402
from dropcore.kernels.reference import pool as ref_pool  # noqa: E402
from dropcore.kernels.reference.rng import dropout_key, random_bits  # noqa: E402
from dropcore.kernels.threads import threads  # noqa: E402

KEY = dropout_key(1234, 7, 2)
#: Elements per task of the element-wise kernels (_cy_elementwise.pyx's CHUNK): shapes below span several.
CHUNK = 16384
#: The ops this module implements (the training half of these families; cython_ops has the forwards).
OPS = ("relu_backward", "dropout_backward", "relu_dropout_backward", "softmax_backward", "sigmoid_backward",
       "gaussian_noise", "max_pool2d_backward", "avg_pool2d_backward", "global_avg_pool2d_backward",
       "global_max_pool2d_backward", "batch_norm_train", "batch_norm_backward", "softmax_cross_entropy",
       "sparse_softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error")


def _x(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _assert_f32(a, shape):
    assert a.dtype == np.float32 and a.shape == tuple(shape) and a.flags.c_contiguous


def test_signatures_are_the_contracts():
    ops = {op.name: op for op in contract.OPS}
    for name in OPS:
        assert inspect.signature(getattr(cy, name)) == contract.signature(ops[name]), name
        assert getattr(cy, name).__doc__, name


def test_imports_no_numba():
    """A process that trains on the Cython kernels never loads (or compiles) Numba."""
    code = ("import sys; import dropcore.kernels.cython_train_elementwise; "
            "sys.exit(3 if 'numba' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- activation ------------------------------------------------------------------------------------------------------

# The shapes of test_activation.py, with the flat vector sized for this module's chunks: 4-D with odd sizes, several
# chunks with a ragged last one, 2-D, 3-D, and a 4-D of several chunks.
SHAPES = [(3, 5, 7, 4), (3 * CHUNK + 17,), (33, 10), (2, 9, 37), (4, 40, 30, 24)]


@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_backwards_bit_identical_to_reference(shape):
    x, dy = _x(shape, 9, scale=4), _x(shape, 10)
    y = ref_act.relu(x)
    dx = cy.relu_backward(dy, y)
    _assert_f32(dx, shape)
    np.testing.assert_array_equal(dx, ref_act.relu_backward(dy, y))
    for rate in (0.25, 0.5):
        np.testing.assert_array_equal(cy.relu_dropout_backward(dy, y, rate),
                                      ref_drop.relu_dropout_backward(dy, y, rate))
    s = ref_act.sigmoid(x)
    np.testing.assert_array_equal(cy.sigmoid_backward(dy, s), ref_act.sigmoid_backward(dy, s))


@pytest.mark.parametrize("shape", [(7, 10), (3, 5, 13), (CHUNK + 3,), (2, 9, 9, 4), (300, 1000)])
def test_softmax_backward_matches_reference(shape):
    x, dy = _x(shape, 11, scale=4), _x(shape, 12)
    y = ref_act.softmax(x)
    dx = cy.softmax_backward(dy, y)
    _assert_f32(dx, shape)
    # the row's float32 sum in another order than NumPy's: the tolerance of the Numba tests
    np.testing.assert_allclose(dx, ref_act.softmax_backward(dy, y), rtol=1e-5, atol=1e-6)
    # against float64: the error is a few roundings of the row's terms
    exact = ref_act.softmax_backward(dy.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(dx, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_backward_bit_identical_to_reference(shape, per_channel):
    dy = _x(shape, 13)
    for rate in (0.3, 0.9):
        dx = cy.dropout_backward(dy, rate, KEY, per_channel)
        _assert_f32(dx, shape)
        np.testing.assert_array_equal(dx, ref_drop.dropout_backward(dy, rate, KEY, per_channel))
    # The mask is the reference's dropout_mask of the noise shape, times dy.
    mask = ref_drop.dropout_mask(ref_drop.noise_shape(shape, per_channel), 0.3, KEY)
    np.testing.assert_array_equal(cy.dropout_backward(np.ones(shape, np.float32), 0.3, KEY, per_channel),
                                  np.broadcast_to(mask, shape))


@pytest.mark.parametrize("per_channel", [False, True])
def test_dropout_backward_offset_is_the_whole_calls_mask(per_channel):
    dy = _x((9, 5, 4, 6), 14)
    whole = cy.dropout_backward(dy, 0.4, KEY, per_channel)
    per_row = dy.shape[-1] if per_channel else int(np.prod(dy.shape[1:]))
    for k in (1, 4, 8):
        got = cy.dropout_backward(dy[k:], 0.4, KEY, per_channel, offset=k * per_row)
        np.testing.assert_array_equal(got, whole[k:])
        np.testing.assert_array_equal(got, ref_drop.dropout_backward(dy[k:], 0.4, KEY, per_channel, k * per_row))
    assert not np.array_equal(cy.dropout_backward(dy[4:], 0.4, KEY, per_channel), whole[4:])


def test_dropout_backward_offset_keeps_the_low_32_bits():
    """Only an index's low 32 bits enter the hash: an offset past 2**32 wraps, as in the reference."""
    dy = _x((3, 1000), 15)
    for offset in (2**32 - 1500, 2**32 + 7, 3 * 2**32 + 5):
        got = cy.dropout_backward(dy, 0.5, KEY, offset=offset)
        np.testing.assert_array_equal(got, ref_drop.dropout_backward(dy, 0.5, KEY, offset=offset))
        np.testing.assert_array_equal(got, cy.dropout_backward(dy, 0.5, KEY, offset=offset % 2**32))


def test_dropout_backward_rate_zero_copies():
    dy = _x((4, 5, 6, 3), 16)
    for pc in (False, True):
        dx = cy.dropout_backward(dy, 0.0, KEY, pc)
        assert not np.shares_memory(dx, dy)
        np.testing.assert_array_equal(dx, dy)


def test_relu_dropout_backward_is_relu_then_dropout_backward():
    x, dy = _x((5, 6, 7, 9), 17), _x((5, 6, 7, 9), 18)
    for pc in (False, True):
        y = cython_ops.relu_dropout(x, 0.4, KEY, pc)
        expected = cy.dropout_backward(cy.relu_backward(dy, cython_ops.relu(x)), 0.4, KEY, pc)
        np.testing.assert_array_equal(cy.relu_dropout_backward(dy, y, 0.4), expected)


def _assert_within_float32_rounding(a, b):
    """Equal but for a float64 last-bit difference in log/cos surviving the rounding: at most one float32 ulp (the
    tolerance of test_gaussian_noise.py)."""
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32))
    assert (np.abs(a.astype(np.float64) - b) <= ulp).all()
    assert np.mean(a == b) > 0.999


@pytest.mark.parametrize("shape, offset", [((1,), 0), ((7, 5, 3), 0), ((300, 1000), 12345), ((3, 4), 2**31 - 5),
                                           ((3 * CHUNK + 17,), 2**31 + 3)])
def test_gaussian_noise_equals_the_reference(shape, offset):
    z = cy.gaussian_noise(shape, KEY, offset)
    _assert_f32(z, shape)
    _assert_within_float32_rounding(z, ref_drop.gaussian_noise(shape, KEY, offset))


def test_gaussian_noise_is_box_muller_on_hash_pairs():
    """Element i takes the hash values at 2 (offset + i) and 2 (offset + i) + 1, whatever chunk it falls in."""
    offset, n = 5, CHUNK + 9
    bits = random_bits(2 * (offset + n), KEY).astype(np.float64)
    z = cy.gaussian_noise((n,), KEY, offset)
    for i in (0, 1, CHUNK - 1, CHUNK, n - 1):
        j = offset + i
        u1, u2 = (bits[2 * j] + 1) / 2**32, bits[2 * j + 1] / 2**32
        expected = np.float32(np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))
        assert abs(float(z[i]) - float(expected)) <= np.spacing(abs(expected))


def test_gaussian_noise_slice_with_offset_is_the_whole_calls():
    whole = cy.gaussian_noise((9, 5, 4), KEY)
    for k in (1, 4, 8):
        np.testing.assert_array_equal(cy.gaussian_noise((9 - k, 5, 4), KEY, offset=k * 20), whole[k:])
    assert not np.array_equal(cy.gaussian_noise((5, 5, 4), KEY), whole[4:])
    assert not np.array_equal(cy.gaussian_noise((9, 5, 4), dropout_key(1234, 8, 2)), whole)  # another step


def test_gaussian_noise_is_standard_normal():
    n = 1 << 20
    z = cy.gaussian_noise((n,), dropout_key(5, 0, 1)).astype(np.float64)
    assert np.isfinite(z).all() and np.abs(z).max() < 6.67
    se = 1 / np.sqrt(n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.std() - 1) < 5 * se / np.sqrt(2)


def test_activation_nan_propagates():
    y = np.array([[1.0, -1.0, np.nan, 2.0]], np.float32)
    dy = np.array([[np.nan, np.nan, 3.0, 4.0]], np.float32)
    # relu: a NaN gradient passes where y > 0; a NaN output passes nothing (the reference's np.where)
    for got, want in ((cy.relu_backward(dy, y), ref_act.relu_backward(dy, y)),
                      (cy.relu_dropout_backward(dy, y, 0.5), ref_drop.relu_dropout_backward(dy, y, 0.5))):
        np.testing.assert_array_equal(got, want)
        assert np.isnan(got[0, 0])
    s = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]], np.float32)
    ds = np.array([[np.nan, 1, 2], [1, 2, 3]], np.float32)
    got = cy.softmax_backward(ds, s)
    assert np.isnan(got[0]).all() and np.isfinite(got[1]).all()  # a row's NaN reaches its row only
    assert np.isnan(cy.sigmoid_backward(ds, s)[0, 0]) and np.isnan(cy.sigmoid_backward(s, ds)[0, 0])
    # dropout: a NaN gradient of a kept unit passes (element 0 is kept by this stream at rate 0.5)
    key = next(k for k in (dropout_key(s, 0, 0) for s in range(100)) if ref_drop.dropout_mask((1,), 0.5, k)[0])
    for pc in (False, True):
        assert np.isnan(cy.dropout_backward(np.full((1, 1, 1, 3), np.nan, np.float32), 0.5, key, pc)[0, 0, 0, 0])


# --- pool ------------------------------------------------------------------------------------------------------------

# The cases of test_pool.py, and overlapping windows over more than one block of 64 channels.
POOL_CASES = [
    ((2, 7, 9, 3), (2, 2), (2, 2), "valid"),
    ((2, 7, 9, 3), (2, 2), (2, 2), "same"),
    ((2, 7, 9, 5), (3, 3), (1, 1), "same"),
    ((3, 8, 5, 4), (2, 2), (2, 1), "same"),
    ((1, 9, 11, 6), (3, 3), (2, 2), "valid"),
    ((2, 10, 7, 2), (3, 3), (2, 1), "valid"),
    ((2, 6, 7, 17), (3, 2), (2, 2), "same"),
    ((2, 5, 5, 8), (2, 2), (1, 1), "valid"),
    ((2, 6, 7, 130), (3, 3), (1, 1), "same"),
    ((3, 9, 8, 70), (2, 3), (3, 2), "same"),  # rows no window covers between bands
    # strides larger than the pool: positions no window covers, between the windows in both directions
    ((2, 10, 11, 5), (2, 2), (3, 3), "same"),
    ((2, 7, 12, 3), (1, 2), (2, 3), "valid"),
]


@pytest.mark.parametrize("shape,size,strides,padding", POOL_CASES)
def test_max_pool_backward_bit_identical_to_reference(shape, size, strides, padding):
    rng = np.random.default_rng(1)
    # distinct values, then few distinct values (ties in nearly every window: the first-tap rule decides)
    for x in (rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, size=shape).astype(np.float32)):
        y = ref_pool.max_pool2d(x, size, strides, padding)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = cy.max_pool2d_backward(dy, x, y, size, strides, padding)
        _assert_f32(dx, shape)
        # overlapping windows add in the reference's order: the same bits
        np.testing.assert_array_equal(dx, ref_pool.max_pool2d_backward(dy, x, y, size, strides, padding))


@pytest.mark.parametrize("shape,size,strides,padding", POOL_CASES + [((9, 9, 7, 5), (3, 3), (1, 1), "same")])
def test_avg_pool_backward_bit_identical_to_reference(shape, size, strides, padding):
    rng = np.random.default_rng(2)
    y_shape = ref_pool.avg_pool2d(np.zeros(shape, np.float32), size, strides, padding).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    dx = cy.avg_pool2d_backward(dy, shape, size, strides, padding)
    _assert_f32(dx, shape)
    np.testing.assert_array_equal(dx, ref_pool.avg_pool2d_backward(dy, shape, size, strides, padding))


@pytest.mark.parametrize("shape,size,strides,padding", POOL_CASES + [((2, 9, 9, 13), (3, 3), (1, 1), "same"),
                                                       ((1, 8, 8, 40), (3, 3), (1, 1), "same")])
def test_avg_pool_forward_bit_identical_to_reference(shape, size, strides, padding):
    """The taps add in the reference's order from 0, then one division by the count: the same bits, for channel
    counts below one vector, between vectors and past four (the masked SIMD path's cases)."""
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    y = cython_ops.avg_pool2d(x, size, strides, padding)
    _assert_f32(y, ref_pool.avg_pool2d(x, size, strides, padding).shape)
    np.testing.assert_array_equal(y, ref_pool.avg_pool2d(x, size, strides, padding))


def test_pool_backward_without_windows_is_zero():
    """An input smaller than the window: no output, and a zero gradient (not uninitialized memory)."""
    x = _x((2, 1, 3, 4), 3)
    y = ref_pool.max_pool2d(x, (2, 2), (2, 2), "valid")
    assert y.size == 0
    np.testing.assert_array_equal(cy.max_pool2d_backward(y, x, y, (2, 2), (2, 2), "valid"), np.zeros_like(x))
    np.testing.assert_array_equal(cy.avg_pool2d_backward(y, x.shape, (2, 2), (2, 2), "valid"), np.zeros_like(x))


def test_max_pool_backward_first_tap_wins_and_overlaps_add():
    # The hand cases of test_pool.py: one row [1, 3, 3, 2], windows of width 2 at stride 1.
    x = np.array([1, 3, 3, 2], dtype=np.float32).reshape(1, 1, 4, 1)
    y = cython_ops.max_pool2d(x, (1, 2), (1, 1), "valid")
    dy = np.array([1, 10, 100], dtype=np.float32).reshape(y.shape)
    np.testing.assert_array_equal(cy.max_pool2d_backward(dy, x, y, (1, 2), (1, 1), "valid").ravel(), [0, 11, 100, 0])
    x = np.full((1, 2, 2, 1), 7, dtype=np.float32)
    dx = cy.max_pool2d_backward(np.full((1, 1, 1, 1), 5, np.float32), x, x[:, :1, :1], (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(dx.ravel(), [5, 0, 0, 0])
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)  # all negative: a zero pad would win
    y = cython_ops.max_pool2d(x, (3, 3), (2, 2), "same")
    dx = cy.max_pool2d_backward(np.ones_like(y), x, y, (3, 3), (2, 2), "same")
    np.testing.assert_array_equal(dx.ravel(), [1, 1, 0, 1, 1, 0, 0, 0, 0])


def test_max_pool_backward_nan():
    """A NaN max (a NaN in the window) passes no gradient, as in the reference; a NaN gradient reaches its tap."""
    x = _x((1, 4, 4, 3), 6)
    x[0, 1, 2, 1] = np.nan
    y = cython_ops.max_pool2d(x, (2, 2), (2, 2), "valid")
    assert np.isnan(y[0, 0, 1, 1])
    dy = np.ones_like(y)
    dy[0, 1, 0, 2] = np.nan
    dx = cy.max_pool2d_backward(dy, x, y, (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(dx, ref_pool.max_pool2d_backward(dy, x, y, (2, 2), (2, 2), "valid"))
    assert (dx[0, 0:2, 2:4, 1] == 0).all()
    assert np.isnan(dx[0, 2:4, 0:2, 2]).sum() == 1


def test_avg_pool_backwards_nan():
    """A NaN gradient reaches every position its window covers (and only those), as in the reference."""
    for size, strides, padding in (((2, 2), (2, 2), "valid"), ((3, 3), (1, 1), "same")):
        shape = (1, 4, 4, 3)
        dy = np.ones(ref_pool.avg_pool2d(np.zeros(shape), size, strides, padding).shape, np.float32)
        dy[0, 1, 1, 2] = np.nan
        dx = cy.avg_pool2d_backward(dy, shape, size, strides, padding)
        np.testing.assert_array_equal(dx, ref_pool.avg_pool2d_backward(dy, shape, size, strides, padding))
        assert np.isnan(dx[..., 2]).any() and np.isfinite(dx[..., :2]).all()
    dy = np.array([[1.0, np.nan]], np.float32)
    dx = cy.global_avg_pool2d_backward(dy, (1, 2, 3, 2))
    assert np.isnan(dx[..., 1]).all() and (dx[..., 0] == np.float32(1) / 6).all()


# Global pools: the shapes of test_pool.py (odd H and W, C not a multiple of the vectors, a 1x1 map, 300 channels).
GLOBAL_SHAPES = [(2, 7, 9, 3), (1, 5, 5, 17), (3, 1, 1, 4), (2, 3, 5, 70), (1, 7, 7, 300), (4, 6, 4, 33)]


@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_pool_backwards_bit_identical_to_reference(shape):
    rng = np.random.default_rng(11)
    for x in (rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, size=shape).astype(np.float32)):
        y = x.max(axis=(1, 2))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = cy.global_max_pool2d_backward(dy, x, y)
        _assert_f32(dx, shape)
        np.testing.assert_array_equal(dx, ref_pool.global_max_pool2d_backward(dy, x, y))
        np.testing.assert_array_equal(dx.sum(axis=(1, 2)), dy)  # each channel's gradient lands once, whole
    dx = cy.global_avg_pool2d_backward(dy, shape)
    _assert_f32(dx, shape)
    np.testing.assert_array_equal(dx, ref_pool.global_avg_pool2d_backward(dy, shape))


def test_global_max_pool_backward_nan():
    x = _x((2, 3, 3, 4), 12)
    x[1, 2, 0, 3] = np.nan
    y = cython_ops.global_max_pool2d(x)
    dy = np.ones_like(y)
    dy[0, 1] = np.nan
    dx = cy.global_max_pool2d_backward(dy, x, y)
    np.testing.assert_array_equal(dx, ref_pool.global_max_pool2d_backward(dy, x, y))
    assert (dx[1, ..., 3] == 0).all()  # a NaN max takes no position
    assert np.isnan(dx[0, ..., 1]).sum() == 1


# --- norm ------------------------------------------------------------------------------------------------------------

# The shapes of test_norm.py ((N, C) and (N, H, W, C), batch 1, odd sizes, more rows than one chunk), and one of
# many chunks.
NORM_SHAPES = [(1, 5), (7, 3), (64, 130), (2, 5, 7, 3), (4, 9, 9, 16), (3, 26, 26, 32), (64, 16, 16, 32)]
EPS = 1e-3


def _bn_data(shape, seed, offset=0.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0, c) + offset).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_batch_norm_train_matches_reference(shape, offset):
    x, gamma, beta, _ = _bn_data(shape, 1, offset)
    got = cy.batch_norm_train(x, gamma, beta, EPS)
    _assert_f32(got[0], shape)
    for a in got[1:]:
        _assert_f32(a, shape[-1:])
    # test_norm.py's tolerances: the float32 reference, then float64 with float32 rounding's
    for a, r in zip(got, ref_norm.batch_norm_train(x, gamma, beta, EPS)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)
    y, mean, var, inv_std = ref_norm.batch_norm_train(*_f64(x, gamma, beta), EPS)
    np.testing.assert_allclose(got[1], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[2], var, rtol=1e-4 if offset else 1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], inv_std, rtol=1e-4 if offset else 1e-5)
    np.testing.assert_allclose(got[0], y, rtol=1e-4, atol=1e-4 if offset else 1e-5)


@pytest.mark.parametrize("shape", NORM_SHAPES)
def test_batch_norm_backward_matches_reference(shape):
    x, gamma, beta, dy = _bn_data(shape, 2)
    _, mean, _, inv_std = ref_norm.batch_norm_train(x, gamma, beta, EPS)
    dx, dgamma, dbeta = cy.batch_norm_backward(dy, x, mean, inv_std, gamma)
    _assert_f32(dx, shape)
    _assert_f32(dgamma, shape[-1:])
    _assert_f32(dbeta, shape[-1:])
    rdx, rdgamma, rdbeta = ref_norm.batch_norm_backward(*_f64(dy, x, mean, inv_std, gamma))
    m = x.size // shape[-1]
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dgamma, rdgamma, rtol=1e-5, atol=1e-6 * np.sqrt(m))
    np.testing.assert_allclose(dbeta, rdbeta, rtol=1e-5, atol=1e-6 * np.sqrt(m))
    for a, r in zip((dx, dgamma, dbeta), ref_norm.batch_norm_backward(dy, x, mean, inv_std, gamma)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * np.sqrt(m))


@pytest.mark.parametrize("value", [0.1, 1234.567])
def test_batch_norm_constant_channel(value):
    x, gamma, beta, dy = _bn_data((3, 6, 5, 4), 5)
    x[..., 1] = value  # not exactly representable: a plain mean of it would round
    y, mean, var, inv_std = cy.batch_norm_train(x, gamma, beta, EPS)
    assert np.isfinite(y).all() and np.isfinite(inv_std).all()
    assert var[1] == 0 and mean[1] == np.float32(value)
    assert (y[..., 1] == beta[1]).all()
    dx, dgamma, dbeta = cy.batch_norm_backward(dy, x, mean, inv_std, gamma)
    assert np.isfinite(dx).all() and np.isfinite(dgamma).all() and np.isfinite(dbeta).all()


def test_batch_norm_nan_propagates_to_its_channel():
    x, gamma, beta, dy = _bn_data((4, 5, 5, 6), 7)
    x[2, 3, 1, 4] = np.nan
    y, mean, var, inv_std = cy.batch_norm_train(x, gamma, beta, EPS)
    for stat in (mean, var, inv_std):
        assert np.isnan(stat[4]) and np.isfinite(np.delete(stat, 4)).all()
    assert np.isnan(y[..., 4]).all() and np.isfinite(np.delete(y, 4, axis=-1)).all()
    _, mean, _, inv_std = ref_norm.batch_norm_train(np.nan_to_num(x), gamma, beta, EPS)
    dy[0, 0, 0, 2] = np.nan
    dx, dgamma, dbeta = cy.batch_norm_backward(dy, x, mean, inv_std, gamma)
    assert np.isnan(dgamma[[2, 4]]).all() and np.isnan(dbeta[2]) and np.isfinite(dbeta[4])
    assert np.isnan(dx[..., [2, 4]]).all() and np.isfinite(np.delete(dx, [2, 4], axis=-1)).all()


# --- loss ------------------------------------------------------------------------------------------------------------

LOSS_SHAPES = [(1, 10), (7, 3), (33, 17), (64, 1000), (5, 1)]  # test_loss.py's


def _logits(shape, seed, scale=3.0):
    return _x(shape, seed, scale)


def _onehot(labels, k):
    return np.eye(k, dtype=np.float32)[labels]


def _assert_pair(got, want, rtol=1e-5, atol=1e-6):
    """test_loss.py's comparison: float32, the reference's shapes, its tolerances."""
    _assert_f32(got[0], want[0].shape)
    _assert_f32(got[1], want[1].shape)
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", LOSS_SHAPES)
def test_losses_match_reference(shape):
    n, k = shape
    z = _logits(shape, 1)
    labels = np.random.default_rng(2).integers(0, k, n)
    onehot = _onehot(labels, k)
    bits = (np.random.default_rng(3).random(shape) < 0.5).astype(np.float32)
    soft = np.random.default_rng(4).random(shape)
    soft = (soft / soft.sum(axis=-1, keepdims=True)).astype(np.float32)
    for targets in (onehot, soft):
        _assert_pair(cy.softmax_cross_entropy(z, targets), ref_loss.softmax_cross_entropy(z, targets))
    _assert_pair(cy.sparse_softmax_cross_entropy(z, labels), ref_loss.sparse_softmax_cross_entropy(z, labels))
    _assert_pair(cy.sparse_softmax_cross_entropy(z, labels.astype(np.int32)),
                 ref_loss.sparse_softmax_cross_entropy(z, labels))
    _assert_pair(cy.sigmoid_binary_cross_entropy(z, bits), ref_loss.sigmoid_binary_cross_entropy(z, bits))
    got, want = cy.mean_squared_error(z, bits), ref_loss.mean_squared_error(z, bits)
    _assert_pair(got, want)
    np.testing.assert_array_equal(got[1], want[1])  # the reference's float32 expression: the same bits


@pytest.mark.parametrize("shape", [(6,), (4, 5, 3), (2, 4, 4, 3)])
def test_mse_any_rank(shape):
    y, t = _logits(shape, 5), _logits(shape, 6)
    got = cy.mean_squared_error(y, t)
    _assert_pair(got, ref_loss.mean_squared_error(y, t))


def test_sparse_equals_onehot():
    z = _logits((9, 6), 7)
    labels = np.random.default_rng(8).integers(0, 6, 9)
    sparse = cy.sparse_softmax_cross_entropy(z, labels)
    dense = cy.softmax_cross_entropy(z, _onehot(labels, 6))
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(sparse[1], dense[1])


def test_extreme_logits():
    """test_loss.py's exact answers for logits of 1e4: nothing overflows."""
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype=np.float32)
    labels = np.array([1, 2, 0])
    with np.errstate(over="raise", invalid="raise"):
        loss, grad = cy.sparse_softmax_cross_entropy(z, labels)
        loss2, grad2 = cy.softmax_cross_entropy(z, _onehot(labels, 3))
    np.testing.assert_allclose(loss, [2e4, 0.0, np.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0], [0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    np.testing.assert_allclose(grad2, grad, atol=1e-7)
    t = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.float32)
    loss, grad = cy.sigmoid_binary_cross_entropy(z, t)
    np.testing.assert_allclose(loss, [(1e4 + 1e4 + np.log(2.0)) / 3, 1e4 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1 / 3, -1 / 3, -1 / 6], [-1 / 3, 0, 0], [0, 0, 0]], atol=1e-7)


def test_losses_against_float64():
    """exp and log1p are computed in float64 without libm: the losses and gradients stay within a few float32
    roundings of the exact values, tiny losses (confident right answers: log1p of exp(-30)) included."""
    rng = np.random.default_rng(10)
    z = _logits((2000, 50), 11, scale=8)
    t = (rng.random(z.shape) < 0.5).astype(np.float32)
    loss, grad = cy.sigmoid_binary_cross_entropy(z, t)
    loss64, grad64 = ref_loss.sigmoid_binary_cross_entropy(z.astype(np.float64), t.astype(np.float64))
    np.testing.assert_allclose(loss, loss64, rtol=1e-6)
    # sigmoid(z) - t cancels (sigmoid near t): the error is the float32 rounding of the sigmoid, ulp(1) / K
    np.testing.assert_allclose(grad, grad64, rtol=1e-6, atol=np.spacing(np.float32(1)) / 50)
    confident = np.array([[30.0, -30.0, 17.0], [88.0, -103.0, 40.0]], np.float32)
    right = (confident > 0).astype(np.float32)
    loss, grad = cy.sigmoid_binary_cross_entropy(confident, right)
    loss64, grad64 = ref_loss.sigmoid_binary_cross_entropy(confident.astype(np.float64), right.astype(np.float64))
    assert (loss > 0).all()
    np.testing.assert_allclose(loss, loss64, rtol=1e-6)
    np.testing.assert_allclose(grad, grad64, rtol=1e-5, atol=np.spacing(np.float32(1)) / 3)
    labels = rng.integers(0, 50, 2000)
    loss, grad = cy.sparse_softmax_cross_entropy(z, labels)
    loss64, grad64 = ref_loss.sparse_softmax_cross_entropy(z.astype(np.float64), labels)
    np.testing.assert_allclose(loss, loss64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad, grad64, atol=1e-6)


def test_losses_nan_propagates_to_its_row():
    z = _logits((3, 4), 9)
    z[1, 2] = np.nan
    labels = np.array([0, 1, 3])
    t = _onehot(labels, 4)
    for loss, grad in (cy.softmax_cross_entropy(z, t), cy.sparse_softmax_cross_entropy(z, labels)):
        assert np.isnan(loss[1]) and np.isnan(grad[1]).all()  # the softmax of the row: every element
        assert np.isfinite(np.delete(loss, 1)).all() and np.isfinite(np.delete(grad, 1, axis=0)).all()
    for loss, grad in (cy.sigmoid_binary_cross_entropy(z, t), cy.mean_squared_error(z, t)):
        assert np.isnan(loss[1]) and np.isnan(grad[1, 2]) and np.isfinite(np.delete(grad[1], 2)).all()
        assert np.isfinite(np.delete(loss, 1)).all()


# --- the same bits on any number of threads ------------------------------------------------------------------------

def _same_bits_on_1_and_2_threads(call):
    results = []
    for n in (1, 2):
        with threads(n, "openmp", exact=True):  # exact: 2 threads even where the process has 1 CPU
            out = call()
        results.append(out if isinstance(out, tuple) else (out,))
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(two, one)


def test_thread_count_does_not_change_the_bits():
    """Sizes whose work each kernel splits between two threads (team_size: 32768 element operations a thread)."""
    x, dy = _x((16, 40, 30, 24), 20, scale=3), _x((16, 40, 30, 24), 21)
    y = ref_act.relu(x)
    s = ref_act.softmax(x)
    _same_bits_on_1_and_2_threads(lambda: cy.relu_backward(dy, y))
    _same_bits_on_1_and_2_threads(lambda: cy.relu_dropout_backward(dy, y, 0.3))
    _same_bits_on_1_and_2_threads(lambda: cy.sigmoid_backward(dy, s))
    _same_bits_on_1_and_2_threads(lambda: cy.softmax_backward(dy, s))
    for pc in (False, True):
        _same_bits_on_1_and_2_threads(lambda: cy.dropout_backward(dy, 0.3, KEY, pc, 11))
    _same_bits_on_1_and_2_threads(lambda: cy.gaussian_noise((16, 40, 30, 24), KEY, 5))
    for size, strides, padding in (((2, 2), (2, 2), "valid"), ((3, 3), (1, 1), "same")):
        yp = cython_ops.max_pool2d(x, size, strides, padding)
        dyp = _x(yp.shape, 22)
        _same_bits_on_1_and_2_threads(lambda: cy.max_pool2d_backward(dyp, x, yp, size, strides, padding))
        _same_bits_on_1_and_2_threads(lambda: cy.avg_pool2d_backward(dyp, x.shape, size, strides, padding))
    yg = cython_ops.global_max_pool2d(x)
    dyg = _x(yg.shape, 23)
    _same_bits_on_1_and_2_threads(lambda: cy.global_max_pool2d_backward(dyg, x, yg))
    _same_bits_on_1_and_2_threads(lambda: cy.global_avg_pool2d_backward(dyg, x.shape))
    xb, gamma, beta, dyb = _bn_data((64, 16, 16, 32), 24, offset=3.0)
    _same_bits_on_1_and_2_threads(lambda: cy.batch_norm_train(xb, gamma, beta, EPS))
    _, mean, _, inv_std = cy.batch_norm_train(xb, gamma, beta, EPS)
    _same_bits_on_1_and_2_threads(lambda: cy.batch_norm_backward(dyb, xb, mean, inv_std, gamma))
    z = _logits((4000, 10), 25)
    labels = np.random.default_rng(26).integers(0, 10, 4000)
    t = _onehot(labels, 10)
    _same_bits_on_1_and_2_threads(lambda: cy.softmax_cross_entropy(z, t))
    _same_bits_on_1_and_2_threads(lambda: cy.sparse_softmax_cross_entropy(z, labels))
    _same_bits_on_1_and_2_threads(lambda: cy.sigmoid_binary_cross_entropy(z, t))
    _same_bits_on_1_and_2_threads(lambda: cy.mean_squared_error(z, t))
