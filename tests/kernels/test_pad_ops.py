"""``zero_pad2d`` (ZeroPadding2D) and its backward, the crop, on every set, bit for bit against NumPy (copies and
zeros: nothing rounds). Symmetric, asymmetric and one-sided paddings, none, a wide batch over many tasks,
strided inputs; the layer in a program, where a padding before a convolution is still fused away."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Conv2D, Input, MaxPooling2D, ZeroPadding2D
from dropcore.ops import get_ops

SETS = ["reference", "numba", "cython"]
CASES = [
    ((2, 5, 4, 3), ((1, 1), (1, 1))),
    ((2, 5, 4, 3), ((1, 2), (3, 0))),
    ((2, 5, 4, 3), ((0, 0), (0, 2))),
    ((2, 5, 4, 3), ((2, 0), (0, 0))),
    ((2, 5, 4, 3), ((0, 0), (0, 0))),
    ((1, 1, 1, 1), ((3, 1), (1, 3))),
    ((64, 16, 16, 24), ((1, 1), (1, 1))),
]


def _set(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("shape,padding", CASES)
def test_zero_pad_and_its_crop_are_numpys_bits(name, shape, padding):
    ops = _set(name)
    (top, bottom), (left, right) = padding
    x = _x(shape)
    y = ops.zero_pad2d(x, padding)
    expected = np.zeros((shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3]), np.float32)
    expected[:, top:top + shape[1], left:left + shape[2]] = x
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)
    dy = _x(y.shape, 1)
    dx = ops.zero_pad2d_backward(dy, padding)
    assert dx.flags.c_contiguous and dx.shape == x.shape
    np.testing.assert_array_equal(dx, dy[:, top:top + shape[1], left:left + shape[2]])


@pytest.mark.parametrize("name", SETS)
def test_strided_and_read_only_inputs(name):
    ops = _set(name)
    x = _x((2, 10, 4, 3))[:, ::2]
    x.flags.writeable = False
    expected = np.pad(x, ((0, 0), (1, 0), (0, 2), (0, 0)))
    np.testing.assert_array_equal(ops.zero_pad2d(x, ((1, 0), (0, 2))), expected)
    dy = _x((2, 12, 9, 3))[:, ::2]  # (2, 6, 9, 3), strided
    dy.flags.writeable = False
    np.testing.assert_array_equal(ops.zero_pad2d_backward(dy, ((1, 0), (0, 2))), dy[:, 1:, :7])


def test_programs_pad_with_the_kernel_and_still_fuse_before_a_convolution():
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    inp = Input((6, 5, 3))
    pool = dropcore.Model(inp, MaxPooling2D(1)(ZeroPadding2D(((1, 2), (0, 1)))(inp)))
    assert "zero_padding2d" in pool._inference_program().steps
    x = _x((4, 6, 5, 3))
    np.testing.assert_array_equal(dropcore.Predictor(pool).predict(x), np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0))))
    conv = dropcore.Model(inp, Conv2D(2, 3)(ZeroPadding2D(1)(inp)))
    assert "zero_padding2d" not in conv._inference_program().steps
