"""Activation and dropout kernels: masks bit-identical across backends and thread counts, mask statistics, exact
scaling, fused ReLU-dropout, finite differences on the reference, Numba against the reference."""
import numba
import numpy as np
import pytest
from scipy.special import expit

from dropcore.kernels import activation as act
from dropcore.kernels import dropout as nb_drop
from dropcore.kernels import rng
from dropcore.kernels.reference import activation as ref
from dropcore.kernels.reference import dropout as ref_drop
from dropcore.ops import get_ops
from dropcore.kernels.threads import threads
from dropcore.testing import check_gradient

KEY = rng.dropout_key(1234, 7, 2)
# 4-D with odd sizes; a flat vector spanning several Numba chunks with a ragged last one; 2-D; 3-D.
SHAPES = [(3, 5, 7, 4), (3 * act.CHUNK + 17,), (33, 10), (2, 9, 37), (4, 40, 30, 24)]
TOL = dict(rtol=1e-5, atol=1e-6)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_numba_bit_identical_to_reference(shape, per_channel):
    x = _x(shape)
    for name in ("dropout", "relu_dropout", "dropout_backward"):
        np.testing.assert_array_equal(getattr(nb_drop, name)(x, 0.3, KEY, per_channel),
                                      getattr(ref_drop, name)(x, 0.3, KEY, per_channel), err_msg=name)


@pytest.mark.parametrize("shape", [(5, 1, 1, 7), (4, 33), (act.CHUNK + 5,), (2, 3, 1, 4)])
def test_dropout_mask_numba_matches_reference(shape):
    m = nb_drop.dropout_mask(shape, 0.4, KEY)
    assert m.dtype == np.float32 and m.shape == shape
    np.testing.assert_array_equal(m, ref_drop.dropout_mask(shape, 0.4, KEY))
    assert set(np.unique(m)) <= {np.float32(0), np.float32(1) / np.float32(0.6)}


def test_dropout_masks_do_not_depend_on_thread_count():
    x = _x((16, 30, 30, 8))
    results = []
    for n in (1, 2):
        with threads(min(n, numba.config.NUMBA_NUM_THREADS)):
            results.append([nb_drop.relu_dropout(x, 0.5, KEY, pc) for pc in (False, True)])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9, 0.99])
def test_kept_fraction_and_mean(rate):
    n = 1 << 20
    m = nb_drop.dropout_mask((n,), rate, rng.dropout_key(99, 3, 1))
    p = 1 - rate
    kept = np.count_nonzero(m)
    assert abs(kept - n * p) < 5 * np.sqrt(n * p * (1 - p))
    # dropout(ones) is the mask itself: its mean is 1 within 5 standard deviations of the mean.
    y = nb_drop.dropout(np.ones(n, np.float32), rate, rng.dropout_key(99, 3, 1))
    np.testing.assert_array_equal(y, m)
    assert abs(y.mean(dtype=np.float64) - 1) < 5 * np.sqrt((1 - p) / (p * n))


@pytest.mark.parametrize("impl", [get_ops("reference"), get_ops("numba")], ids=["reference", "numba"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_dropout_scaling_exact(impl, per_channel):
    x = _x((6, 7, 5, 16), seed=1)  # standard normal: no element is 0, so y == 0 means dropped
    y = impl.dropout(x, 0.3, KEY, per_channel)
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(y[kept], x[kept] * (np.float32(1) / np.float32(1 - 0.3)))


@pytest.mark.parametrize("impl", [get_ops("reference"), get_ops("numba")], ids=["reference", "numba"])
def test_rate_zero_is_identity(impl):
    x = _x((4, 5, 6, 3), seed=2)
    for pc in (False, True):
        y = impl.dropout(x, 0.0, KEY, pc)
        assert not np.shares_memory(y, x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(impl.dropout_backward(x, 0.0, KEY, pc), x)
        np.testing.assert_array_equal(impl.relu_dropout(x, 0.0, KEY, pc), impl.relu(x))


def test_different_keys_give_different_masks():
    shape = (64, 64)
    masks = [nb_drop.dropout_mask(shape, 0.5, rng.dropout_key(*k))
             for k in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]]
    for i in range(len(masks)):
        for j in range(i):
            # Independent masks at rate 0.5 differ on about half the elements.
            assert 0.4 < np.mean(masks[i] != masks[j]) < 0.6


@pytest.mark.parametrize("impl", [get_ops("reference"), get_ops("numba")], ids=["reference", "numba"])
def test_per_channel_masks_constant_over_space(impl):
    y = impl.dropout(np.ones((8, 5, 6, 12), np.float32), 0.5, KEY, per_channel=True)
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :1, :], y.shape))
    assert 0 < np.count_nonzero(y[:, 0, 0, :]) < 8 * 12
    # The per-channel mask is the per-element mask of the (N, 1, 1, C) noise shape.
    np.testing.assert_array_equal(y[:, :1, :1, :], ref_drop.dropout_mask((8, 1, 1, 12), 0.5, KEY))


@pytest.mark.parametrize("impl", [get_ops("reference"), get_ops("numba")], ids=["reference", "numba"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_relu_dropout_fuses_exactly(impl, per_channel):
    x = _x((5, 6, 7, 9), seed=3)
    y = impl.relu_dropout(x, 0.4, KEY, per_channel)
    np.testing.assert_array_equal(y, impl.dropout(impl.relu(x), 0.4, KEY, per_channel))
    dy = _x(x.shape, seed=4)
    expected = impl.dropout_backward(impl.relu_backward(dy, impl.relu(x)), 0.4, KEY, per_channel)
    np.testing.assert_array_equal(impl.relu_dropout_backward(dy, y, 0.4), expected)


def _away_from_kink(shape, seed):
    """float64 values with |x| >= 0.1, so a 1e-6 perturbation never crosses the ReLU kink."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(x >= 0, x + 0.1, x - 0.1)


@pytest.mark.parametrize("per_channel", [False, True])
def test_reference_dropout_gradients(per_channel):
    x = _away_from_kink((3, 4, 3, 5), seed=5)
    w = np.random.default_rng(6).standard_normal(x.shape)
    y = ref_drop.relu_dropout(x, 0.3, KEY, per_channel)
    check_gradient(lambda: np.sum(ref_drop.relu_dropout(x, 0.3, KEY, per_channel) * w),
                   ref_drop.relu_dropout_backward(w, y, 0.3), x)
    check_gradient(lambda: np.sum(ref_drop.dropout(x, 0.3, KEY, per_channel) * w),
                   ref_drop.dropout_backward(w, 0.3, KEY, per_channel), x)


def test_reference_activation_gradients():
    rng_ = np.random.default_rng(7)
    x = _away_from_kink((4, 7), seed=8)
    w = rng_.standard_normal(x.shape)
    check_gradient(lambda: np.sum(ref.relu(x) * w), ref.relu_backward(w, ref.relu(x)), x)
    check_gradient(lambda: np.sum(ref.sigmoid(x) * w), ref.sigmoid_backward(w, ref.sigmoid(x)), x)
    x, w = rng_.standard_normal((2, 3, 6)), rng_.standard_normal((2, 3, 6))
    check_gradient(lambda: np.sum(ref.softmax(x) * w), ref.softmax_backward(w, ref.softmax(x)), x)


@pytest.mark.parametrize("shape", [(7, 10), (3, 5, 13), (act.CHUNK + 3,), (2, 9, 9, 4)])
def test_numba_elementwise_and_softmax_match_reference(shape):
    x, dy = _x(shape, seed=9) * 4, _x(shape, seed=10)
    np.testing.assert_array_equal(act.relu(x), ref.relu(x))
    y = ref.relu(x)
    np.testing.assert_array_equal(act.relu_backward(dy, y), ref.relu_backward(dy, y))
    np.testing.assert_array_equal(nb_drop.relu_dropout_backward(dy, y, 0.25),
                                  ref_drop.relu_dropout_backward(dy, y, 0.25))
    for fwd in ("sigmoid", "softmax"):
        y = getattr(ref, fwd)(x)
        np.testing.assert_allclose(getattr(act, fwd)(x), y, **TOL, err_msg=fwd)
        np.testing.assert_allclose(getattr(act, fwd + "_backward")(dy, y), getattr(ref, fwd + "_backward")(dy, y),
                                   **TOL, err_msg=fwd)


@pytest.mark.parametrize("impl", [ref, act], ids=["reference", "numba"])
def test_softmax_sums_to_one_and_is_stable(impl):
    x = _x((6, 11), seed=11) * 5
    np.testing.assert_allclose(impl.softmax(x).sum(axis=-1), 1, rtol=1e-6)
    big = np.array([[1e4, -1e4, 0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        y = impl.softmax(big)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], rtol=1e-6)


@pytest.mark.parametrize("impl", [ref, act], ids=["reference", "numba"])
def test_sigmoid_is_stable(impl):
    x = np.array([-1e4, -80, -1, 0, 1, 80, 1e4], np.float32)  # exp(-80) is still a normal float32
    with np.errstate(over="raise", invalid="raise"):
        y = impl.sigmoid(x)
    np.testing.assert_allclose(y, expit(x.astype(np.float64)), rtol=1e-6, atol=0)


@pytest.mark.parametrize("impl", [get_ops("reference"), get_ops("numba")], ids=["reference", "numba"])
def test_nan_propagates(impl):
    x = np.array([np.nan, -1, 2], np.float32)
    assert np.isnan(impl.relu(x)[0])
    # Element 0 of this stream is kept at rate 0.5, so the NaN reaches the output of the fused op too.
    key = next(k for k in (rng.dropout_key(s, 0, 0) for s in range(100)) if ref_drop.dropout_mask((1,), 0.5, k)[0])
    assert np.isnan(impl.relu_dropout(x, 0.5, key)[0])
