"""Concatenate, Reshape, Rescaling, ZeroPadding2D and LeakyReLU end to end: Keras 3's outputs and shapes, finite
differences through each layer's backprop, PyTorch's gradients through a model using all five, Numba training equal
to the reference, the inference program, model files, the Predictor and JSON descriptions; bad arguments named."""
import numpy as np
import pytest

import dropcore
from dropcore import serialization, zoo
from dropcore.layers import (Concatenate, Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU, Rescaling, Reshape,
                             ZeroPadding2D)
from dropcore.layers.base import Context
from dropcore.inference import predict_outputs
from dropcore.ops import get_ops
from dropcore.testing import assert_trains_like_reference, assert_weight_gradients, check_gradient

#: id -> (class, constructor arguments, the sample shapes of its inputs); Keras's layer takes the same arguments
CASES = {
    "concatenate": (Concatenate, {}, [(3, 4, 2), (3, 4, 5)]),
    "concatenate-axis2-three-inputs": (Concatenate, {"axis": 2}, [(3, 4, 2), (3, 1, 2), (3, 2, 2)]),
    "concatenate-axis-3": (Concatenate, {"axis": -3}, [(3, 4, 2), (1, 4, 2)]),
    "concatenate-vectors": (Concatenate, {"axis": 1}, [(3,), (5,)]),
    "reshape": (Reshape, {"target_shape": (4, 6)}, [(3, 4, 2)]),
    "reshape-inferred": (Reshape, {"target_shape": (2, -1, 3)}, [(3, 4, 2)]),
    "reshape-flat": (Reshape, {"target_shape": (-1,)}, [(3, 4, 2)]),
    "rescaling": (Rescaling, {"scale": 1 / 255, "offset": -1.0}, [(3, 4, 2)]),
    "rescaling-per-channel": (Rescaling, {"scale": [0.5, -2.0, 3.0], "offset": [0.1, 0.0, -1.5]}, [(4, 3)]),
    "rescaling-one-value-list": (Rescaling, {"scale": [2.5], "offset": 0.25}, [(3, 4, 2)]),
    "zero-padding": (ZeroPadding2D, {}, [(3, 4, 2)]),
    "zero-padding-int": (ZeroPadding2D, {"padding": 2}, [(3, 4, 2)]),
    "zero-padding-pair": (ZeroPadding2D, {"padding": (0, 3)}, [(3, 4, 2)]),
    "zero-padding-asymmetric": (ZeroPadding2D, {"padding": ((1, 2), (3, 0))}, [(3, 4, 2)]),
    "leaky-relu": (LeakyReLU, {}, [(3, 4, 2)]),
    "leaky-relu-zero-slope": (LeakyReLU, {"negative_slope": 0.0}, [(3, 4, 2)]),
    "leaky-relu-steep": (LeakyReLU, {"negative_slope": 1.5}, [(3, 4, 2)]),
}


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _inputs(shapes, n=2, dtype=np.float32):
    xs = [_x((n,) + s, seed=10 + i, dtype=dtype) for i, s in enumerate(shapes)]
    xs[0].reshape(-1)[::5] = 0.0  # exact zeros: LeakyReLU's x > 0 boundary
    return xs


def _one_or_list(items):
    return items[0] if len(items) == 1 else list(items)


@pytest.mark.parametrize("case", CASES)
def test_matches_keras(case):
    """The same arguments and inputs give Keras 3's values (eager) and output shape (compute_output_shape and a
    symbolic call)."""
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    cls, kwargs, shapes = CASES[case]
    xs = _inputs(shapes, n=3)
    ours = cls(**kwargs)(_one_or_list(xs))
    theirs = keras.ops.convert_to_numpy(getattr(keras.layers, cls.__name__)(**kwargs)(_one_or_list(xs)))
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    keras_layer = getattr(keras.layers, cls.__name__)(**kwargs)
    computed = keras_layer.compute_output_shape(_one_or_list([(None,) + s for s in shapes]))
    symbolic = keras_layer(_one_or_list([keras.Input(s) for s in shapes])).shape
    ours_symbolic = cls(**kwargs)(_one_or_list([Input(s) for s in shapes])).shape
    assert (None,) + ours_symbolic == tuple(computed) == tuple(symbolic) == (None,) + ours.shape[1:]


def test_leaky_relu_takes_keras_2s_alpha_with_a_warning_as_keras_3():
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    x = _inputs([(3, 4, 2)])[0]
    with pytest.warns(UserWarning, match="`alpha` is deprecated. Use `negative_slope` instead"):
        ours = LeakyReLU(negative_slope=0.7, alpha=0.1)
    with pytest.warns(UserWarning, match="`alpha` is deprecated"):
        theirs = keras.layers.LeakyReLU(negative_slope=0.7, alpha=0.1)
    assert ours.negative_slope == theirs.negative_slope == 0.1  # alpha wins, as in Keras 3
    assert ours.get_config() == {"name": ours.name, "negative_slope": 0.1}  # a model file holds no alpha
    np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-6)
    assert np.min(ours(x)) == pytest.approx(0.1 * np.min(x), rel=1e-6)
    entry = {"class_name": "LeakyReLU", "config": {"name": "l", "negative_slope": 0.1, "alpha": 0.2}}
    with pytest.raises(serialization.Invalid, match=r"unknown key\(s\) \['alpha'\]"):  # model files stay strict
        serialization.from_config(entry, serialization.LAYERS, "layer", "test")


def test_leaky_relu_gradient_at_zero_is_the_slope_as_pytorch():
    """Where finite differences say nothing: at exactly 0 the gradient is ``negative_slope`` (PyTorch's and
    TensorFlow's convention), above it 1."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    x = np.array([[-2.0, 0.0, 3.0, -0.5, 0.0, 1e-30]], dtype=np.float32)
    dy = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=np.float32)
    y, backprop = LeakyReLU(0.2).forward(get_ops("numba"), x, Context())
    t = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.leaky_relu(t, 0.2)
    out.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, out.detach().numpy())
    np.testing.assert_array_equal(backprop(dy), t.grad.numpy())
    np.testing.assert_allclose(backprop(dy), [[0.2, 0.4, 3.0, 0.8, 1.0, 6.0]], rtol=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_layer_backward_matches_finite_differences(case):
    """Through the layer's own forward and backprop closure, on the reference kernels in float64, every input."""
    cls, kwargs, shapes = CASES[case]
    layer = cls(**kwargs)
    layer.build(shapes[0] if len(shapes) == 1 else shapes)
    ops = get_ops("reference")
    xs = [_x((2,) + s, seed=20 + i, dtype=np.float64) for i, s in enumerate(shapes)]
    arg = _one_or_list(xs)
    y, backprop = layer.forward(ops, arg, Context())
    r = _x(y.shape, seed=5, dtype=np.float64)
    grads = backprop(r)
    grads = grads if isinstance(grads, list) else [grads]
    assert len(grads) == len(xs)
    for x, g in zip(xs, grads):
        assert g.shape == x.shape
        check_gradient(lambda: float(np.sum(layer.forward(ops, arg, Context())[0] * r)), g, x)


def _model(kind, seed=0):
    """A small CNN with the layer (named "layer") after a convolution, so its backprop reaches weights."""
    dropcore.set_random_seed(seed)
    inp = Input((6, 5, 3))
    h = Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    if kind == "concatenate":
        h = Concatenate(name="layer")([h, Conv2D(2, 1, name="conv_b")(inp), inp])  # (6, 5, 9)
    elif kind == "concatenate-rows":
        h = Concatenate(axis=1, name="layer")([h, Conv2D(4, (2, 1), name="conv_b")(inp)])  # (11, 5, 4)
    elif kind == "reshape":
        h = Dense(3, name="dense_rows")(Reshape((-1, 8), name="layer")(h))  # (15, 8) -> (15, 3)
    elif kind == "rescaling":
        h = Rescaling([0.5, -1.0, 2.0, 0.25], offset=0.1, name="layer")(h)
    elif kind == "zero-padding":
        h = Conv2D(3, 3, name="conv_c")(ZeroPadding2D(((1, 2), (0, 1)), name="layer")(h))  # (7, 4, 3)
    elif kind == "leaky-relu":
        h = LeakyReLU(0.2, name="layer")(Conv2D(4, 3, padding="same", name="conv_c")(h))
    model = dropcore.Model(inp, Dense(4, activation="softmax", name="dense")(Flatten()(Dropout(0.25)(h))))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


#: the model kind -> the inference program step the layer runs as (None: no step of its own; the zero padding is
#: read by the convolution after it, tests/engine/test_pad_folding.py; the LeakyReLU runs with its slope in the
#: output pass of the convolution before it, tests/engine/test_folding.py)
STEPS = {"concatenate": "concatenate", "concatenate-rows": "concatenate", "reshape": None,
         "rescaling": "rescaling", "zero-padding": None, "leaky-relu": None}


@pytest.mark.parametrize("kind", STEPS)
def test_trains_and_every_engine_agrees(kind, tmp_path):
    """Numba training steps equal the reference's; the program (predict, Predictor), the executor and a model file
    read back all give the same outputs."""
    x, y = _x((12, 6, 5, 3), seed=6), np.arange(12) % 4
    fast = assert_trains_like_reference(lambda: _model(kind), x, y)
    expected = predict_outputs(fast._plan, get_ops("numba"), x, 256)
    program = fast._inference_program()
    assert fast.inference_engine == "cython-program"
    if STEPS[kind]:
        assert STEPS[kind] in program.steps
    np.testing.assert_allclose(fast.predict(x, batch_size=5), expected, rtol=1e-5, atol=1e-6)
    fast.save(tmp_path / "m.dropcore")
    loaded = dropcore.load_model(tmp_path / "m.dropcore")
    assert loaded.get_layer("layer").get_config() == fast.get_layer("layer").get_config()
    assert type(loaded.get_layer("layer")) is type(fast.get_layer("layer"))
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    predictor = dropcore.Predictor(tmp_path / "m.dropcore")
    np.testing.assert_allclose(predictor.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_reshape_is_a_view_in_programs():
    """Reshape lowers to a view: no kernel runs (``run is None``), the -1 resolved at any batch size."""
    layer = Reshape((2, -1, 3))
    layer.build((3, 4, 2))
    (kernel,) = layer.lower(None, None)
    assert kernel.name == "reshape"
    assert kernel.bind((7, 3, 4, 2)) == (None, (7, 2, 4, 3))
    model = _model("reshape")
    steps = model._inference_program().steps
    assert not set(steps) - {"conv2d", "reshape", "dense", "softmax"}  # nothing but views between the kernels


def test_concatenate_writes_the_programs_buffer_in_place():
    from dropcore.lowering import Lowering

    cython_ops = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    layer = Concatenate(axis=-2)
    layer.build([(3, 4, 2), (3, 1, 2)])
    (kernel,) = layer.lower(Lowering(cython_ops, get_ops("cython")), None)
    run, shape = kernel.bind([(2, 3, 4, 2), (2, 3, 1, 2)])
    assert shape == (2, 3, 5, 2)
    a, b, y = _x((2, 3, 4, 2), 1), _x((2, 3, 1, 2), 2), np.full(shape, np.nan, dtype=np.float32)
    run(a, b, y)
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=2))


def test_gradients_through_all_five_match_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    F = torch.nn.functional
    dropcore.set_random_seed(3)
    inp = Input((6, 5, 3))
    a = Conv2D(4, 3, name="conv_a")(Rescaling(0.5, offset=0.25)(inp))  # (4, 3, 4)
    a = ZeroPadding2D(((1, 1), (0, 2)))(LeakyReLU(0.2)(a))  # (6, 5, 4)
    b = Rescaling([0.5, -2.0], offset=[0.1, 0.0])(Conv2D(2, 1, name="conv_b")(inp))  # (6, 5, 2)
    h = Dense(4, name="d1")(Reshape((15, 12))(Concatenate()([a, b])))  # (15, 4)
    model = dropcore.Model(inp, Dense(3, activation="softmax", name="d2")(Flatten()(h)))
    x = _x((5, 6, 5, 3), seed=2)
    names = ("conv_a", "conv_b", "d1", "d2")
    params = {(n, w): torch.tensor(model.get_layer(n).weights[w], requires_grad=True)
              for n in names for w in ("kernel", "bias")}

    def conv(t, name):  # NHWC in and out
        return F.conv2d(t.permute(0, 3, 1, 2), params[name, "kernel"].permute(3, 2, 0, 1),
                        params[name, "bias"]).permute(0, 2, 3, 1)

    xt = torch.tensor(x)
    ta = F.pad(F.leaky_relu(conv(xt * 0.5 + 0.25, "conv_a"), 0.2), (0, 0, 0, 2, 1, 1))
    tb = conv(xt, "conv_b") * torch.tensor([0.5, -2.0]) + torch.tensor([0.1, 0.0])
    th = torch.cat([ta, tb], dim=-1).reshape(5, 15, 12) @ params["d1", "kernel"] + params["d1", "bias"]
    out = torch.softmax(th.reshape(5, -1) @ params["d2", "kernel"] + params["d2", "bias"], dim=1)
    np.testing.assert_allclose(model.predict(x), out.detach().numpy(), rtol=1e-4, atol=1e-6)
    r = _x(out.shape, seed=3)
    (out * torch.tensor(r)).sum().backward()
    assert_weight_gradients(model, x, r, {key: p.grad.numpy() for key, p in params.items()})


def test_the_one_input_layers_in_a_json_description():
    desc = {"input_shape": [6, 6, 1], "layers": [
        {"class_name": "Rescaling", "config": {"scale": 0.00392156862745098}},
        {"class_name": "ZeroPadding2D", "config": {"padding": [[1, 0], [0, 1]]}},
        {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3}},
        {"class_name": "LeakyReLU", "config": {"negative_slope": 0.1}},
        {"class_name": "Reshape", "config": {"target_shape": [-1, 4]}},
        {"class_name": "Flatten"},
        {"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}}]}
    model = zoo.from_description(desc)
    assert [type(la).__name__ for la in model.layers][:5] == ["Rescaling", "ZeroPadding2D", "Conv2D", "LeakyReLU",
                                                              "Reshape"]
    assert model.layers[4].output_shape_for((5, 5, 4)) == (25, 4) and model.output_shape == (None, 2)
    with pytest.raises(ValueError, match=r"layers\[0\] has class_name 'Concatenate'; expected one of"):
        zoo.from_description({"input_shape": [3], "layers": [{"class_name": "Concatenate"}]})


@pytest.mark.parametrize("make, match", [
    (lambda: Concatenate(axis=0), r"Concatenate: Invalid value for `axis`: expected a non-zero int \(axis 0 is the "
                                  r"batch axis, which cannot be concatenated\). Received: axis=0"),
    (lambda: Concatenate(axis=1.0), r"Concatenate: Invalid value for `axis`.*Received: axis=1.0"),
    (lambda: Concatenate(axis=True), r"Concatenate: Invalid value for `axis`.*Received: axis=True"),
    (lambda: Reshape((-1, -1)), r"Reshape: Invalid value for `target_shape`: .*at most one -1.*"
                                r"Received: target_shape=\(-1, -1\)"),
    (lambda: Reshape((0, 3)), r"Reshape: Invalid value for `target_shape`: expected a non-empty tuple of positive "
                              r"ints"),
    (lambda: Reshape((-2, 6)), r"Reshape: Invalid value for `target_shape`.*Received: target_shape=\(-2, 6\)"),
    (lambda: Reshape((2.0, 6)), r"Reshape: Invalid value for `target_shape`.*Received: target_shape=\(2.0, 6\)"),
    (lambda: Reshape(12), r"Reshape: Invalid value for `target_shape`.*Received: target_shape=12"),
    (lambda: Reshape(()), r"Reshape: Invalid value for `target_shape`.*Received: target_shape=\(\)"),
    (lambda: Rescaling("a"), r"Rescaling: Invalid value for `scale`: expected a finite float or a non-empty list "
                             r"of finite floats \(one per channel, the last axis\). Received: scale='a'"),
    (lambda: Rescaling(None), r"Rescaling: Invalid value for `scale`.*Received: scale=None"),
    (lambda: Rescaling(True), r"Rescaling: Invalid value for `scale`.*Received: scale=True"),
    (lambda: Rescaling(np.inf), r"Rescaling: Invalid value for `scale`.*Received: scale=inf"),
    (lambda: Rescaling([]), r"Rescaling: Invalid value for `scale`.*Received: scale=\[\]"),
    (lambda: Rescaling([[1.0, 2.0]]), r"Rescaling: Invalid value for `scale`.*Received: scale=\[\[1.0, 2.0\]\]"),
    (lambda: Rescaling(1.0, offset=[0.0, np.nan]), r"Rescaling: Invalid value for `offset`.*Received: "
                                                   r"offset=\[0.0, nan\]"),
    (lambda: ZeroPadding2D(-1), r"ZeroPadding2D: Invalid value for `padding`: expected an int >= 0, a tuple of 2 "
                                r"such ints \(height, width\), or a tuple of 2 tuples of 2 such ints"),
    (lambda: ZeroPadding2D(((1, 2), 3)), r"ZeroPadding2D: Invalid value for `padding`.*Received: "
                                         r"padding=\(\(1, 2\), 3\)"),
    (lambda: ZeroPadding2D((1, 2, 3)), r"ZeroPadding2D: Invalid value for `padding`.*Received: padding=\(1, 2, 3\)"),
    (lambda: ZeroPadding2D(1.0), r"ZeroPadding2D: Invalid value for `padding`.*Received: padding=1.0"),
    (lambda: ZeroPadding2D(data_format="channels_first"), r"ZeroPadding2D: Invalid value for `data_format`: "
                                                          r"expected one of \('channels_last',\)"),
    (lambda: LeakyReLU(-0.1), r"LeakyReLU: Invalid value for `negative_slope`: expected a float in \[0.0, inf\]. "
                              r"Received: negative_slope=-0.1"),
    (lambda: LeakyReLU(None), r"LeakyReLU: Invalid value for `negative_slope`.*Received: negative_slope=None"),
    (lambda: LeakyReLU("0.2"), r"LeakyReLU: Invalid value for `negative_slope`.*Received: negative_slope='0.2'"),
])
def test_bad_arguments_name_the_layer_the_argument_and_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_an_unknown_keyword_is_a_type_error_as_in_python():
    with pytest.raises(TypeError, match="LeakyReLU got an unexpected keyword argument 'slope'"):
        LeakyReLU(slope=0.2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'alpha'"):
        Rescaling(1.0, alpha=0.2)


@pytest.mark.parametrize("make, inputs, match", [
    (lambda: Concatenate(axis=-4, name="cat"), [(3, 4, 2), (3, 4, 2)],
     r"layer 'cat' \(Concatenate\): axis -4 is the batch axis, which cannot be concatenated, for inputs of shape "
     r"\(None, 3, 4, 2\), \(None, 3, 4, 2\); expected an axis in \[1, 3\] or \[-3, -1\]"),
    (lambda: Concatenate(axis=4, name="cat"), [(3, 4, 2), (3, 4, 2)], r"layer 'cat' \(Concatenate\): axis 4 is out "
                                                                      r"of range"),
    (lambda: Concatenate(name="cat"), [(3, 4, 2), (3, 5, 2)],
     r"layer 'cat' \(Concatenate\): the inputs must have the same shape except on the concatenation axis \(-1\), "
     r"received \(None, 3, 4, 2\), \(None, 3, 5, 2\)"),
    (lambda: Concatenate(name="cat"), [(3, 4, 2), (8, 2)], r"layer 'cat' \(Concatenate\): all inputs must have the "
                                                           r"same number of dimensions"),
    (lambda: Concatenate(name="cat"), [(3, 4, 2)], r"layer 'cat' \(Concatenate\) needs at least 2 inputs, received 1"),
    (lambda: Reshape((5,), name="rs"), [(3, 4)], r"layer 'rs' \(Reshape\): cannot reshape an input of shape "
                                                 r"\(None, 3, 4\) \(12 values a sample\) to target_shape \(5,\) "
                                                 r"\(5 values\)"),
    (lambda: Reshape((5, -1), name="rs"), [(3, 4)], r"layer 'rs' \(Reshape\): cannot reshape .* to target_shape "
                                                    r"\(5, -1\) \(12 is not a multiple of 5\)"),
    (lambda: Rescaling([1.0, 2.0], name="rsc"), [(3, 4, 3)], r"layer 'rsc' \(Rescaling\): `scale` has 2 values; an "
                                                             r"input of shape \(None, 3, 4, 3\) takes 1 or 3"),
    (lambda: Rescaling(1.0, [1.0, 2.0], name="rsc"), [(3,)], r"layer 'rsc' \(Rescaling\): `offset` has 2 values"),
    (lambda: ZeroPadding2D(name="zp"), [(3, 4)], r"Input to layer 'zp' \(ZeroPadding2D\) must have 4 dimensions"),
])
def test_bad_inputs_name_the_layer(make, inputs, match):
    with pytest.raises(ValueError, match=match):
        make()(_one_or_list([Input(s) for s in inputs]))
