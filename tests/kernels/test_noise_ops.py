"""The noise layers' ops (``gaussian_dropout``, ``add_gaussian_noise``, ``alpha_dropout`` and their backwards): on
every kernel set they give, bit for bit, the formulas the layers applied in NumPy before, on that set's own
``gaussian_noise`` and ``dropout_mask`` (two float32 roundings, no fused multiply-add); a slice with its offset draws
the whole call's values; the results do not depend on the thread count; the bound kernels equal the ops.

The contract cases (``test_contract_cases.py``) compare the sets with the reference and the backwards with finite
differences; this file holds what they cannot say: exact bits against the former formulas, per channel and per
element, at offsets past 2**31."""
import math

import numpy as np
import pytest

from dropcore.kernels.reference.dropout import ALPHA_P, alpha_dropout_affine, noise_shape
from dropcore.kernels.reference.rng import dropout_key
from dropcore.kernels.threads import threads
from dropcore.ops import get_ops

KEY = dropout_key(5, 2, 3)
SETS = ["reference", "numba", "cython"]


def _ops(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    return get_ops(name)


def _x(shape=(3, 9, 7, 37), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("rate", [0.1, 0.5])
@pytest.mark.parametrize("offset", [0, 2**31 - 100])
def test_gaussian_dropout_is_the_former_formula_bit_for_bit(name, rate, offset):
    ops, x = _ops(name), _x()
    m = ops.gaussian_noise(x.shape, KEY, offset) * np.float32(math.sqrt(rate / (1 - rate)))
    m += np.float32(1)
    y, multiplier = ops.gaussian_dropout(x, rate, KEY, offset)
    np.testing.assert_array_equal(multiplier, m)
    np.testing.assert_array_equal(y, x * m)
    np.testing.assert_array_equal(ops.gaussian_dropout_backward(x, multiplier), x * m)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("offset", [0, 12345])
def test_add_gaussian_noise_is_the_former_formula_bit_for_bit(name, offset):
    ops, x = _ops(name), _x()
    z = ops.gaussian_noise(x.shape, KEY, offset) * np.float32(0.3)
    np.testing.assert_array_equal(ops.add_gaussian_noise(x, 0.3, KEY, offset), x + z)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_alpha_dropout_is_the_former_formula_bit_for_bit(name, per_channel, rate):
    ops, x = _ops(name), _x()
    kept = ops.dropout_mask(noise_shape(x.shape, per_channel), rate, KEY, 5) != 0
    a, b = alpha_dropout_affine(rate)
    expected = np.where(kept, x * np.float32(a) + np.float32(b), np.float32(a * ALPHA_P + b))
    np.testing.assert_array_equal(ops.alpha_dropout(x, rate, KEY, per_channel, 5), expected)
    np.testing.assert_array_equal(ops.alpha_dropout_backward(x, rate, KEY, per_channel, 5),
                                  np.where(kept, x * np.float32(a), np.float32(0)))


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_a_slice_with_its_offset_draws_the_whole_calls_values(name):
    """What Monte-Carlo programs rely on: rows ``r:`` of a call equal a call on those rows at ``offset = r * sample
    size``, whatever the batch they came in."""
    ops, x = _ops(name), _x((6, 5, 4, 3))
    per_row = 5 * 4 * 3
    whole = ops.gaussian_dropout(x, 0.3, KEY, 0)
    for got, expected in zip(ops.gaussian_dropout(x[2:], 0.3, KEY, 2 * per_row), whole):
        np.testing.assert_array_equal(got, expected[2:])
    whole = ops.add_gaussian_noise(x, 0.4, KEY, 0)
    np.testing.assert_array_equal(ops.add_gaussian_noise(x[2:], 0.4, KEY, 2 * per_row), whole[2:])
    for per_channel, per in ((False, per_row), (True, 3)):
        whole = ops.alpha_dropout(x, 0.3, KEY, per_channel, 0)
        np.testing.assert_array_equal(ops.alpha_dropout(x[4:], 0.3, KEY, per_channel, 4 * per), whole[4:])


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_no_dependence_on_the_thread_count(name):
    ops, x = _ops(name), _x((8, 40, 40, 16))  # several tasks of 16384 elements
    results = []
    for n in (1, 2):
        with threads(n, "numba" if name == "numba" else "openmp", exact=True):
            results.append([*ops.gaussian_dropout(x, 0.3, KEY, 9), ops.add_gaussian_noise(x, 0.2, KEY, 9),
                            ops.alpha_dropout(x, 0.3, KEY, False, 9), ops.alpha_dropout(x, 0.3, KEY, True, 9)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_the_bound_kernels_equal_the_ops():
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    x = _x()
    for (run, shape), expected in (
            (cy.gaussian_dropout_kernel(x.shape, 0.4), cy.gaussian_dropout(x, 0.4, KEY, 77)[0]),
            (cy.gaussian_noise_kernel(x.shape, 0.4), cy.add_gaussian_noise(x, 0.4, KEY, 77)),
            (cy.alpha_dropout_kernel(x.shape, 0.4), cy.alpha_dropout(x, 0.4, KEY, False, 77)),
            (cy.alpha_dropout_kernel(x.shape, 0.4, True), cy.alpha_dropout(x, 0.4, KEY, True, 77))):
        y = np.full(shape, np.nan, np.float32)
        run(x, y, KEY, 77)
        np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_empty_inputs(name):
    ops, x = _ops(name), np.zeros((0, 4, 4, 3), np.float32)
    assert all(a.shape == x.shape for a in ops.gaussian_dropout(x, 0.3, KEY))
    assert ops.add_gaussian_noise(x, 0.3, KEY).shape == x.shape
    assert ops.alpha_dropout(x, 0.3, KEY, True).shape == x.shape
    for per_channel in (False, True):  # (per channel: the (N, S, C) view, written out for an empty batch)
        assert ops.dropout(x, 0.3, KEY, per_channel).shape == x.shape
        assert ops.relu_dropout(x, 0.3, KEY, per_channel).shape == x.shape
        assert ops.dropout_backward(x, 0.3, KEY, per_channel).shape == x.shape
