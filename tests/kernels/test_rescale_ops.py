"""``rescale`` (Rescaling's ``x * scale + offset``) and its backward on every set, bit for bit against NumPy: the
product is rounded and then the sum, never one fused multiply-add, so the bits are NumPy's. Scalars, one value per
channel, a list of one value, few and many channels, sizes over many parallel tasks; the layer and its program."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Input, Rescaling
from dropcore.layers.base import Context
from dropcore.ops import get_ops

SETS = ["reference", "numba", "cython"]
# (input shape, scale, offset)
CASES = [
    ((2, 5, 4, 3), 1 / 255, -1.0),
    ((2, 5, 4, 3), [0.5, -2.0, 3.0], [0.1, 0.0, -1.5]),
    ((2, 5, 4, 3), [2.5], 0.25),
    ((6, 7), 0.3, [0.7]),
    ((64, 32, 32, 3), [1 / 58.4, 1 / 57.1, 1 / 57.4], [-2.1, -2.0, -1.8]),  # an image batch, many tasks
    ((8, 16, 16, 40), 0.1, 0.2),
]


def _set(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


def _x(shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 100).astype(np.float32)


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("shape,scale,offset", CASES)
def test_rescale_and_its_backward_are_numpys_bits(name, shape, scale, offset):
    ops = _set(name)
    x, dy = _x(shape), _x(shape, 1)
    s, o = np.asarray(scale, dtype=np.float32), np.asarray(offset, dtype=np.float32)
    y = ops.rescale(x, scale, offset)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, x * s + o)
    np.testing.assert_array_equal(ops.rescale_backward(dy, scale), dy * s)


def test_the_layer_and_its_program_give_the_old_numpy_bits():
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    layer = Rescaling([0.5, -2.0, 3.0], offset=[0.1, 0.0, -1.5])
    layer.build((5, 4, 3))
    x, dy = _x((2, 5, 4, 3)), _x((2, 5, 4, 3), 1)
    s, o = np.float32([0.5, -2.0, 3.0]), np.float32([0.1, 0.0, -1.5])
    y, backprop = layer.forward(get_ops("cython"), x, Context())
    np.testing.assert_array_equal(y, x * s + o)
    np.testing.assert_array_equal(backprop(dy), dy * s)
    inp = Input((5, 4, 3))
    model = dropcore.Model(inp, Rescaling(1 / 255, offset=-1.0)(inp))
    assert model._inference_program().steps == ["rescaling"]
    np.testing.assert_array_equal(dropcore.Predictor(model).predict(x), x * np.float32(1 / 255) + np.float32(-1))
