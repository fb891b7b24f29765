"""Hypothesis properties: the Numba kernels equal their NumPy references over random shapes, strides, paddings."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcore.kernels import conv, pool
from dropcore.kernels import dropout as dropout_kernels
from dropcore.kernels.geometry import window_2d
from dropcore.kernels.reference import conv as ref_conv
from dropcore.kernels.reference import dropout as ref_dropout
from dropcore.kernels.reference import pool as ref_pool
from dropcore.kernels.reference.rng import dropout_key

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def window_case(draw, max_channels=5):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c = draw(st.integers(1, max_channels))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    oh, ow, _, _ = window_2d(h, w, k, s, padding)
    if oh < 1 or ow < 1:  # impossible geometry is refused by the layers before any kernel runs
        padding = "same"
    seed = draw(st.integers(0, 2**31))
    return n, h, w, c, k, s, padding, seed


@SETTINGS
@given(window_case(), st.integers(1, 4), st.booleans(), st.booleans())
def test_conv2d_matches_reference(case, cout, bias, relu):
    n, h, w, c, k, s, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    kernel = rng.normal(size=k + (c, cout)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32) if bias else None
    y = conv.conv2d(x, kernel, b, s, padding, relu=relu)
    np.testing.assert_allclose(y, ref_conv.conv2d(x.astype(np.float64), kernel.astype(np.float64), b, s, padding,
                                                  relu=relu), rtol=1e-4, atol=1e-4)
    dy = rng.normal(size=y.shape).astype(np.float32)
    got = conv.conv2d_backward(dy, x, kernel, s, padding, bias)
    want = ref_conv.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), kernel.astype(np.float64), s,
                                    padding, bias)
    for g, e in zip(got, want):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(window_case())
def test_pools_match_reference(case):
    n, h, w, c, k, s, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    for fwd, ref in ((pool.max_pool2d, ref_pool.max_pool2d), (pool.avg_pool2d, ref_pool.avg_pool2d)):
        np.testing.assert_allclose(fwd(x, k, s, padding), ref(x, k, s, padding), rtol=1e-5, atol=1e-6)
    y = pool.max_pool2d(x, k, s, padding)
    dy = rng.normal(size=y.shape).astype(np.float32)
    np.testing.assert_allclose(pool.max_pool2d_backward(dy, x, y, k, s, padding),
                               ref_pool.max_pool2d_backward(dy, x, y, k, s, padding), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pool.avg_pool2d_backward(dy, x.shape, k, s, padding),
                               ref_pool.avg_pool2d_backward(dy, x.shape, k, s, padding), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(st.lists(st.integers(1, 7), min_size=2, max_size=4), st.floats(0.0, 0.95), st.booleans(),
       st.integers(0, 2**32 - 1), st.integers(0, 10**6))
def test_dropout_masks_match_reference(shape, rate, per_channel, seed, step):
    x = np.random.default_rng(seed % 1000).normal(size=shape).astype(np.float32)
    key = dropout_key(seed, step, 3)
    np.testing.assert_array_equal(dropout_kernels.dropout(x, rate, key, per_channel),
                                  ref_dropout.dropout(x, rate, key, per_channel))
    np.testing.assert_array_equal(dropout_kernels.relu_dropout(x, rate, key, per_channel),
                                  ref_dropout.relu_dropout(x, rate, key, per_channel))
