"""Dropout masks keyed by position in the whole input: a call on rows ``k..`` with ``offset`` = ``k`` times a
sample's mask elements draws exactly the masks those rows get in one call on the whole input, on every kernel set
(what makes Monte-Carlo dropout independent of the batch size)."""
import numpy as np
import pytest

from dropcore.kernels.reference.rng import dropout_key
from dropcore.ops import get_ops

KEY = dropout_key(11, 3, 2)


def _ops(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_a_slice_with_its_offset_draws_the_whole_calls_masks(name, per_channel, relu):
    ops = _ops(name)
    x = np.random.default_rng(0).standard_normal((9, 5, 4, 6)).astype(np.float32)
    forward = ops.relu_dropout if relu else ops.dropout
    whole = forward(x, 0.4, KEY, per_channel)
    per_row = x.shape[-1] if per_channel else int(np.prod(x.shape[1:]))
    for k in (1, 4, 8):
        np.testing.assert_array_equal(forward(x[k:], 0.4, KEY, per_channel, offset=k * per_row), whole[k:])
    assert not np.array_equal(forward(x[4:], 0.4, KEY, per_channel), whole[4:])  # without it: other masks
    if name != "cython":  # the backward recomputes the same masks
        dy = np.ones_like(x)
        np.testing.assert_array_equal(ops.dropout_backward(dy[4:], 0.4, KEY, per_channel, offset=4 * per_row),
                                      ops.dropout_backward(dy, 0.4, KEY, per_channel)[4:])


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
def test_a_general_noise_shapes_mask_follows_its_offset(name):
    ops = _ops(name)
    whole = ops.dropout_mask((7, 1, 3), 0.5, KEY)
    np.testing.assert_array_equal(ops.dropout_mask((4, 1, 3), 0.5, KEY, offset=3 * 3), whole[3:])
