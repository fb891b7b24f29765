"""Add and Concatenate on the kernel contract's merge ops give NumPy's bits, as they did when they ran NumPy
themselves: in training (forward and backprop, on each kernel set) and in inference programs (the bound kernels)."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Add, Concatenate, Input
from dropcore.layers.base import Context
from dropcore.ops import get_ops


def _xs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4,) + s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@pytest.mark.parametrize("axis,shapes", [(-1, [(5, 3, 2), (5, 3, 7)]), (2, [(5, 3, 2), (5, 1, 2), (5, 4, 2)]),
                                         (-3, [(5, 3, 2), (2, 3, 2)])])
def test_concatenate_forward_and_backprop_are_numpys_bits(name, axis, shapes):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    layer = Concatenate(axis=axis)
    layer.build(shapes)
    xs = _xs(shapes)
    y, backprop = layer.forward(get_ops(name), xs, Context())
    a = axis % 4
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=a))
    dy = _xs([y.shape[1:]], 1)[0]
    cuts = np.cumsum([x.shape[a] for x in xs[:-1]])
    for got, expected in zip(backprop(dy), np.split(dy, cuts, a)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@pytest.mark.parametrize("n", [2, 3])
def test_add_forward_is_numpys_sum_and_passes_dy_itself(name, n):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    layer = Add()
    layer.build([(5, 3, 2)] * n)
    xs = _xs([(5, 3, 2)] * n)
    y, backprop = layer.forward(get_ops(name), xs, Context())
    expected = xs[0] + xs[1]
    for x in xs[2:]:
        expected += x
    np.testing.assert_array_equal(y, expected)
    dy = _xs([(5, 3, 2)], 1)[0]
    assert all(g is dy for g in backprop(dy))  # the same array for every input: no copy


def test_programs_run_the_bound_kernels_with_numpys_bits():
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    inp = Input((6, 5, 3))
    model = dropcore.Model(inp, Concatenate(axis=2)([Add()([inp, inp, inp]), inp]))
    program = model._inference_program()
    assert program is not None and {"add", "concatenate"} <= set(program.steps)
    x = _xs([(6, 5, 3)])[0]
    np.testing.assert_array_equal(dropcore.Predictor(model).predict(x),
                                  np.concatenate([(x + x) + x, x], axis=2))


def test_a_value_read_by_four_steps_gets_the_sum_of_their_gradients():
    """The executor sums a value's gradient over its readers, in place from the third on: the same array may come
    back twice (Add's backprop returns ``dy`` for both operands), and the sum must still be every reader's share
    once. Checked against central differences of the float64 loss through the first layer's weights."""
    from dropcore.layers import Activation, Dense
    from dropcore.testing import check_gradient

    dropcore.set_random_seed(5)
    inp = Input((3,))
    h = Dense(4, name="first")(inp)
    out = Concatenate()([Add()([h, h]), Activation("tanh")(h), Dense(2)(h)])
    model = dropcore.Model(inp, out)
    for layer in model.layers:
        for name, w in layer.weights.items():
            layer.weights[name] = np.random.default_rng(len(name)).standard_normal(w.shape)
    ops, ctx = get_ops("reference"), Context(training=True)
    x = np.random.default_rng(1).standard_normal((5, 3))
    r = np.random.default_rng(2).standard_normal((5, 10))
    y, tape = model._plan.forward(ops, x, ctx, keep_backprop=True)
    model._plan.backward(tape, r)
    first = model.get_layer("first")

    def loss():
        return float(np.sum(model._plan.forward(ops, x, ctx)[0] * r))

    check_gradient(loss, first.grads["kernel"], first.weights["kernel"])
    check_gradient(loss, first.grads["bias"], first.weights["bias"])
