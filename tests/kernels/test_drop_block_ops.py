"""DropBlock's op (``drop_block2d`` and its backward): on every kernel set, bit for bit, the multiplier the layer
built in NumPy before (``reference.dropout.drop_block2d_mask``, its former code) times ``x``, NaN and signed zeros
included; a slice with its offset draws the whole call's blocks; no dependence on the thread count; the bound
kernel refuses a block that does not fit, naming the block and the shape."""
import numpy as np
import pytest

from dropcore.kernels.reference.dropout import drop_block2d_mask
from dropcore.kernels.reference.rng import dropout_key
from dropcore.kernels.threads import threads
from dropcore.ops import get_ops

KEY = dropout_key(5, 2, 3)
CASES = [((3, 9, 11, 5), 0.4, 3, 7), ((4, 16, 16, 33), 0.2, 5, 2**31 - 9), ((2, 5, 5, 2), 0.9, 5, 0),
         ((2, 6, 7, 3), 0.5, 1, 3), ((1, 4, 4, 300), 0.3, 2, 0)]


def _ops(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    return get_ops(name)


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # NaN * 0 stays NaN, as in x * m
    return x


def _assert_same_bits(got, expected):
    np.testing.assert_array_equal(got, expected)  # NaN where NaN
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))  # -x * 0 is -0.0, as before


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@pytest.mark.parametrize("shape, rate, block_size, offset", CASES)
def test_the_former_multiplier_bit_for_bit(name, shape, rate, block_size, offset):
    ops, x = _ops(name), _x(shape)
    m = drop_block2d_mask(shape, rate, block_size, KEY, offset).astype(np.float32)
    assert (m == 0).any()  # the third case drops every map whole (a map with nothing kept is all 0)
    _assert_same_bits(ops.drop_block2d(x, rate, block_size, KEY, offset), x * m)
    _assert_same_bits(ops.drop_block2d_backward(x, rate, block_size, KEY, offset), x * m)


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_a_slice_with_its_offset_draws_the_whole_calls_blocks(name):
    ops, x = _ops(name), _x((5, 8, 7, 3))
    whole = ops.drop_block2d(x, 0.3, 3, KEY, 0)
    _assert_same_bits(ops.drop_block2d(x[2:], 0.3, 3, KEY, 2 * 8 * 7 * 3), whole[2:])


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_no_dependence_on_the_thread_count(name):
    ops, x = _ops(name), _x((8, 24, 24, 16))
    results = []
    for n in (1, 2):
        with threads(n, "numba" if name == "numba" else "openmp", exact=True):
            results.append(ops.drop_block2d(x, 0.2, 3, KEY, 11))
    _assert_same_bits(results[0], results[1])


def test_the_bound_kernel_refuses_a_block_that_does_not_fit():
    cy = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    with pytest.raises(ValueError, match=r"drop_block2d: block_size 5 for an input of shape \(2, 4, 6, 3\)"):
        cy.drop_block2d_kernel((2, 4, 6, 3), 0.2, 5)
    run, shape = cy.drop_block2d_kernel((2, 4, 6, 3), 0.2, 4)
    x, y = _x((2, 4, 6, 3)), np.full((2, 4, 6, 3), np.nan, np.float32)
    run(x, y, KEY, 9)
    _assert_same_bits(y, cy.drop_block2d(x, 0.2, 4, KEY, 9))


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_an_empty_batch(name):
    assert _ops(name).drop_block2d(np.zeros((0, 5, 5, 2), np.float32), 0.3, 3, KEY).shape == (0, 5, 5, 2)
