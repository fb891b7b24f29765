"""Conv2D's dilation_rate, DepthwiseConv2D and SeparableConv2D end to end: Keras 3's outputs, shapes and weight
layouts, PyTorch's forward and gradients, finite differences through each layer's backprop, Numba training equal to
the reference, the inference program (bound to weights that keep training), model files (old ones without
``dilation_rate`` included), the Predictor and JSON descriptions; bad arguments named."""
import json
import zipfile

import numpy as np
import pytest

import dropcore
from dropcore import serialization, zoo
from dropcore.constraints import MaxNorm
from dropcore.layers import (Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, Input, MaxPooling2D,
                             SeparableConv2D)
from dropcore.layers.base import Context
from dropcore.layers.dilation import dilated
from dropcore.inference import predict_outputs
from dropcore.ops import get_ops
from dropcore.testing import (assert_predictor_matches, assert_trains_like_reference, assert_weight_gradients,
                              check_gradient)

#: id -> (class, constructor arguments, sample shape); Keras's layer takes the same arguments
CASES = {
    "conv-dilated-same": (Conv2D, {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, (9, 7, 3)),
    "conv-dilated-valid": (Conv2D, {"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (9, 7, 3)),
    "conv-dilated-odd": (Conv2D, {"filters": 3, "kernel_size": (2, 3), "dilation_rate": (3, 2), "padding": "same",
                                  "activation": "relu"}, (7, 8, 2)),
    "conv-dilated-even-same": (Conv2D, {"filters": 2, "kernel_size": 2, "dilation_rate": (2, 3), "padding": "same",
                                        "use_bias": False}, (6, 5, 3)),
    "conv-dilation-one": (Conv2D, {"filters": 3, "kernel_size": 3, "strides": 2, "dilation_rate": 1,
                                   "padding": "same"}, (7, 8, 2)),
    "depthwise": (DepthwiseConv2D, {"kernel_size": 3}, (7, 6, 3)),
    "depthwise-same-strides": (DepthwiseConv2D, {"kernel_size": 3, "strides": 2, "padding": "same"}, (9, 7, 3)),
    "depthwise-mult2": (DepthwiseConv2D, {"kernel_size": (2, 3), "depth_multiplier": 2, "activation": "tanh"},
                        (7, 6, 3)),
    "depthwise-mult2-same-odd": (DepthwiseConv2D, {"kernel_size": 4, "strides": (2, 3), "padding": "same",
                                                   "depth_multiplier": 2, "use_bias": False}, (9, 11, 2)),
    "separable": (SeparableConv2D, {"filters": 4, "kernel_size": 3}, (7, 6, 3)),
    "separable-same-strides-mult2": (SeparableConv2D, {"filters": 5, "kernel_size": 3, "strides": 2, "padding": "same",
                                                       "depth_multiplier": 2, "activation": "relu"}, (9, 7, 3)),
    "separable-odd-no-bias": (SeparableConv2D, {"filters": 2, "kernel_size": (3, 2), "strides": (1, 2),
                                                "use_bias": False, "activation": "sigmoid"}, (5, 7, 4)),
    "depthwise-dilated-strided": (DepthwiseConv2D, {"kernel_size": 3, "strides": 2, "dilation_rate": 2,
                                                    "padding": "same"}, (11, 9, 3)),
    "depthwise-dilated-mult2": (DepthwiseConv2D, {"kernel_size": (2, 3), "dilation_rate": (3, 2),
                                                  "depth_multiplier": 2, "activation": "relu"}, (9, 10, 2)),
    "separable-dilated": (SeparableConv2D, {"filters": 4, "kernel_size": 3, "dilation_rate": (2, 1),
                                            "padding": "same"}, (9, 8, 3)),
    "conv-groups": (Conv2D, {"filters": 6, "kernel_size": 3, "groups": 3, "padding": "same"}, (7, 8, 6)),
    "conv-groups-dilated": (Conv2D, {"filters": 4, "kernel_size": 3, "groups": 2, "dilation_rate": 2,
                                     "activation": "relu"}, (9, 9, 4)),
    "conv-groups-depthwise": (Conv2D, {"filters": 8, "kernel_size": 3, "groups": 4, "strides": 2, "padding": "same"},
                              (9, 7, 4)),
}


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("case", CASES)
def test_matches_keras(case):
    """Keras's weights (get_weights -> set_weights, in Keras's order and layouts) give Keras 3's outputs and output
    shapes (compute_output_shape and a symbolic call)."""
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    cls, kwargs, shape = CASES[case]
    x = _x((3,) + shape, seed=1)
    theirs_layer = getattr(keras.layers, cls.__name__)(**kwargs)
    theirs_layer(x)
    weights = [_x(w.shape, seed=2 + i) for i, w in enumerate(theirs_layer.get_weights())]
    theirs_layer.set_weights(weights)
    ours_layer = cls(**kwargs)
    ours_layer(x)
    assert [w.shape for w in ours_layer.get_weights()] == [w.shape for w in weights]
    ours_layer.set_weights(weights)
    ours, theirs = ours_layer(x), keras.ops.convert_to_numpy(theirs_layer(x))
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    computed = theirs_layer.compute_output_shape((None,) + shape)
    symbolic = getattr(keras.layers, cls.__name__)(**kwargs)(keras.Input(shape)).shape
    assert (None,) + cls(**kwargs)(Input(shape)).shape == tuple(computed) == tuple(symbolic) == (None,) + ours.shape[1:]


def test_keras_refuses_strides_with_dilation_as_we_do():
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    with pytest.raises(ValueError, match="strides"):
        keras.layers.Conv2D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"Conv2D: Invalid value for `dilation_rate`: expected 1 with strides "
                                         r"\(2, 1\) \(strides > 1 together with dilation_rate > 1 is not supported"):
        Conv2D(2, 3, strides=(2, 1), dilation_rate=2)


def _model(seed=0, pool=False, dropout=0.25):
    """A dilated convolution, a depthwise and a separable one (all three trained through), then a classifier."""
    dropcore.set_random_seed(seed)
    inp = Input((10, 9, 3))
    h = Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu", name="conv")(inp)
    if pool:
        h = MaxPooling2D(2)(h)  # fused into the dilated convolution's kernel in programs where it covers it
    h = DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="depthwise")(h)
    h = SeparableConv2D(5, 3, strides=2, depth_multiplier=2, activation="relu", name="separable")(h)
    model = dropcore.Model(inp, Dense(4, activation="softmax", name="dense")(Flatten()(Dropout(dropout)(h))))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _grouped_model(seed=0, pool=False):
    """Grouped convolutions: four groups of two channels, one channel per group (the depthwise kernels), dilated."""
    dropcore.set_random_seed(seed)
    inp = Input((10, 9, 4))
    h = Conv2D(8, 3, padding="same", groups=2, activation="relu", name="grouped")(inp)
    if pool:
        h = MaxPooling2D(2)(h)
    h = Conv2D(8, 3, padding="same", groups=8, dilation_rate=2, activation="relu", name="depthwise")(h)
    h = Conv2D(4, 3, padding="same", groups=4, name="grouped_dilated", dilation_rate=(1, 2))(h)
    model = dropcore.Model(inp, Dense(3, activation="softmax", name="dense")(Flatten()(Dropout(0.25)(h))))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("pool", [False, True])
def test_grouped_trains_like_the_reference_and_programs_agree(pool, tmp_path):
    """Numba training steps equal the reference's; the program (the depthwise kernel for one channel per group,
    per-group convolutions otherwise), bound to weights that keep training, and a model file read back give the
    executor's outputs."""
    x, y = _x((12, 10, 9, 4), seed=6), np.arange(12) % 3
    fast = assert_trains_like_reference(lambda: _grouped_model(pool=pool), x, y)
    program = fast._inference_program()
    assert fast.inference_engine == "cython-program"
    assert "depthwise_conv2d" in program.steps and "grouped_conv2d" in program.steps
    for _ in range(2):
        expected = predict_outputs(fast._plan, get_ops("numba"), x, 256)
        np.testing.assert_allclose(fast.predict(x, batch_size=5), expected, rtol=1e-5, atol=1e-6)
        fast.train_on_batch(x, y)
    fast.save(tmp_path / "m.dropcore")
    loaded = dropcore.load_model(tmp_path / "m.dropcore")
    assert loaded.get_layer("depthwise").get_config() == fast.get_layer("depthwise").get_config()
    assert loaded.get_layer("grouped").groups == 2
    np.testing.assert_allclose(loaded.predict(x), predict_outputs(fast._plan, get_ops("numba"), x, 256), rtol=1e-5,
                               atol=1e-6)
    assert_predictor_matches(tmp_path / "m.dropcore", fast, x)


def test_activations_run_in_the_depthwise_kernels_epilogue():
    """MobileNet's ReLU6 (and any element-wise activation) after a depthwise, separable, grouped or dilated layer
    runs inside its bound kernel: no step of its own, the executor's outputs."""
    dropcore.set_random_seed(1)
    inp = Input((11, 10, 4))
    h = DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(inp)
    h = SeparableConv2D(8, 3, strides=2, activation="hard_swish", name="sep")(h)
    h = Conv2D(8, 3, padding="same", groups=8, activation="relu6", name="grouped_dw")(h)
    h = Conv2D(6, 3, padding="same", groups=2, activation="tanh", name="grouped")(h)
    h = Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu6", name="dilated")(h)
    model = dropcore.Model(inp, h)
    x = _x((3, 11, 10, 4), seed=8) * 4
    steps = model._inference_program().steps
    assert steps == ["depthwise_conv2d", "depthwise_conv2d", "conv2d", "depthwise_conv2d", "grouped_conv2d",
                     "conv2d"], steps
    np.testing.assert_allclose(model.predict(x), predict_outputs(model._plan, get_ops("numba"), x, 256), rtol=1e-5,
                               atol=1e-5)


def test_forward_and_gradients_match_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    F = torch.nn.functional
    model = _model(seed=3)
    x = _x((5, 10, 9, 3), seed=2)
    names = {"conv": ("kernel", "bias"), "depthwise": ("depthwise_kernel", "bias"),
             "separable": ("depthwise_kernel", "pointwise_kernel", "bias"), "dense": ("kernel", "bias")}
    params = {(n, w): torch.tensor(model.get_layer(n).weights[w], requires_grad=True)
              for n, ws in names.items() for w in ws}

    def depthwise(t, w):  # NCHW in and out; Keras's (kh, kw, C, mult) as groups=C filters, channel c * mult + m
        kh, kw, c, mult = w.shape
        return F.conv2d(t, w.permute(2, 3, 0, 1).reshape(c * mult, 1, kh, kw), groups=c)

    t = torch.tensor(x).permute(0, 3, 1, 2)
    t = F.relu(F.conv2d(t, params["conv", "kernel"].permute(3, 2, 0, 1), params["conv", "bias"], padding=2,
                        dilation=2))  # "same" for a 3x3 kernel dilated 2: 2 on each side
    t = F.relu(depthwise(F.pad(t, (1, 1, 1, 1)), params["depthwise", "depthwise_kernel"])
               + params["depthwise", "bias"].reshape(1, -1, 1, 1))
    t = depthwise(t, params["separable", "depthwise_kernel"])[:, :, ::2, ::2]  # valid, strides 2
    t = F.relu(F.conv2d(t, params["separable", "pointwise_kernel"].permute(3, 2, 0, 1), params["separable", "bias"]))
    flat = t.permute(0, 2, 3, 1).reshape(5, -1)
    out = torch.softmax(flat @ params["dense", "kernel"] + params["dense", "bias"], dim=1)
    np.testing.assert_allclose(model.predict(x), out.detach().numpy(), rtol=1e-4, atol=1e-6)
    # Gradients of sum(out * r), dropout off (inference mode) so both sides compute the same function.
    r = _x(out.shape, seed=3)
    (out * torch.tensor(r)).sum().backward()
    assert_weight_gradients(model, x, r, {key: p.grad.numpy() for key, p in params.items()})


@pytest.mark.parametrize("case", CASES)
def test_layer_backward_matches_finite_differences(case):
    """Through the layer's own forward and backprop closure, on the reference kernels in float64: the input and
    every weight."""
    cls, kwargs, shape = CASES[case]
    if kwargs.get("activation") == "relu":  # finite differences across the kink say nothing
        kwargs = {**kwargs, "activation": "tanh"}
    layer = cls(**kwargs)
    layer.build(shape)
    for name, w in layer.weights.items():  # float64 weights too (set directly: set_weights keeps float32)
        layer.weights[name] = _x(w.shape, seed=len(name), dtype=np.float64)
    ops = get_ops("reference")
    x = _x((2,) + shape, seed=4, dtype=np.float64)
    y, backprop = layer.forward(ops, x, Context())
    assert y.dtype == np.float64
    r = _x(y.shape, seed=5, dtype=np.float64)
    dx = backprop(r)
    grads = dict(layer.grads)
    assert set(grads) == set(layer.weights)

    def loss():
        return float(np.sum(layer.forward(ops, x, Context())[0] * r))

    check_gradient(loss, dx, x)
    for name, w in layer.weights.items():
        assert grads[name].shape == w.shape
        check_gradient(loss, grads[name], w)


@pytest.mark.parametrize("pool", [False, True])
def test_trains_and_every_engine_agrees(pool, tmp_path):
    """Numba training steps equal the reference's; the program (predict, Predictor, MC dropout), the executor and a
    model file read back all give the same outputs, also after the program's weights trained on (it reads them by
    reference, the dilated convolution's effective kernel included)."""
    x, y = _x((12, 10, 9, 3), seed=6), np.arange(12) % 4
    fast = assert_trains_like_reference(lambda: _model(pool=pool), x, y)
    program = fast._inference_program()
    assert fast.inference_engine == "cython-program"
    steps = program.steps
    # both depthwise layers on their bound kernel, the separable one's 1x1 convolution after it
    assert steps.count("depthwise_conv2d") == 2 and "separable_conv2d" not in steps
    assert ("conv2d+max_pool2d" in steps or "max_pool2d" in steps) if pool else "conv2d" in steps
    for _ in range(2):  # the bound program, before and after more training
        expected = predict_outputs(fast._plan, get_ops("numba"), x, 256)
        np.testing.assert_allclose(fast.predict(x, batch_size=5), expected, rtol=1e-5, atol=1e-6)
        fast.train_on_batch(x, y)
    assert fast._inference_program() is program
    expected = predict_outputs(fast._plan, get_ops("numba"), x, 256)
    fast.save(tmp_path / "m.dropcore")
    loaded = dropcore.load_model(tmp_path / "m.dropcore")
    for name in ("conv", "depthwise", "separable"):
        assert loaded.get_layer(name).get_config() == fast.get_layer(name).get_config()
        assert type(loaded.get_layer(name)) is type(fast.get_layer(name))
    assert loaded.get_layer("conv").dilation_rate == (2, 2)
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert_predictor_matches(tmp_path / "m.dropcore", fast, x)


def test_dilation_one_changes_nothing():
    """No effective kernel, no copy: the layer's own kernel array goes to the kernels, as before dilation_rate."""
    w = _x((3, 3, 2, 4))
    assert dilated(w, (1, 1)) is w
    eff = dilated(w, (2, 3))
    assert eff.shape == (5, 7, 2, 4) and eff.dtype == w.dtype
    np.testing.assert_array_equal(eff[::2, ::3], w)
    assert np.count_nonzero(eff) == np.count_nonzero(w)
    layer = Conv2D(4, 3, dilation_rate=(1, 1))
    assert layer.get_config()["dilation_rate"] == [1, 1] and layer.effective_size == (3, 3)
    model = dropcore.Sequential([Input((8, 8, 2)), Conv2D(4, 3, activation="relu"), Flatten(), Dense(2)])
    bound = model.layers[0]._bind(lambda w: (w, None))
    assert bound[0] is model.layers[0].weights["kernel"]


def test_a_model_file_without_dilation_rate_still_loads(tmp_path):
    """Files written before Conv2D took ``dilation_rate`` hold no such key: they load with 1, as they were."""
    model = _model()
    x = _x((4, 10, 9, 3), seed=8)
    undilated = dropcore.Sequential([Input((8, 8, 2)), Conv2D(3, 3, kernel_constraint=MaxNorm(2.0), name="c"),
                                     Flatten(), Dense(2)])
    src, old = tmp_path / "new.dropcore", tmp_path / "old.dropcore"
    undilated.save(src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "model.json":
                desc = json.loads(data)
                conv = desc["model"]["layers"][0]["config"]
                assert conv.pop("dilation_rate") == [1, 1]
                data = json.dumps(desc).encode()
            zout.writestr(item, data)
    loaded = dropcore.load_model(old)
    assert loaded.get_layer("c").dilation_rate == (1, 1)
    x8 = _x((3, 8, 8, 2), seed=9)
    np.testing.assert_array_equal(loaded.predict(x8), undilated.predict(x8))
    # a dilated model's key is read as written, not replaced by the default
    model.save(src)
    np.testing.assert_allclose(dropcore.load_model(src).predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
    with zipfile.ZipFile(src) as z:
        (conv,) = [la for la in json.loads(z.read("model.json"))["model"]["layers"] if la["config"]["name"] == "conv"]
    assert conv["config"]["dilation_rate"] == [2, 2]


def test_filling_added_keys_leaves_other_entries_to_the_checks():
    entry = {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": [3, 3]}}
    assert serialization.with_added_keys(entry)["config"]["dilation_rate"] == [1, 1]
    assert "dilation_rate" not in entry["config"]  # the entry read is not modified
    for odd in ({"class_name": "Dense", "config": {"units": 2}}, {"class_name": ["Conv2D"], "config": {}},
                {"class_name": "Conv2D", "config": None}, [1, 2]):
        assert serialization.with_added_keys(odd) == odd


def test_in_a_json_description():
    desc = {"input_shape": [9, 9, 2], "layers": [
        {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}},
        {"class_name": "DepthwiseConv2D", "config": {"kernel_size": 3, "depth_multiplier": 2}},
        {"class_name": "SeparableConv2D", "config": {"filters": 3, "kernel_size": [2, 2], "strides": 2}},
        {"class_name": "Flatten"},
        {"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}}]}
    model = zoo.from_description(desc)
    assert [type(la) for la in model.layers][:3] == [Conv2D, DepthwiseConv2D, SeparableConv2D]
    assert [la.output_shape_for(la.input_shape) for la in model.layers[:3]] == [(9, 9, 4), (7, 7, 8), (3, 3, 3)]
    assert model.count_params() == (3 * 3 * 2 * 4 + 4) + (3 * 3 * 4 * 2 + 8) + (2 * 2 * 8 + 8 * 3 + 3) + (27 * 2 + 2)
    assert {"DepthwiseConv2D", "SeparableConv2D"} <= set(zoo.LAYER_CLASSES)


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(2, 3, dilation_rate=0), r"Conv2D: Invalid value for `dilation_rate`: expected a positive int or "
                                            r"a tuple of 2 positive ints. Received: dilation_rate=0"),
    (lambda: Conv2D(2, 3, dilation_rate=(2, 2, 2)), r"Conv2D: Invalid value for `dilation_rate`.*\(2, 2, 2\)"),
    (lambda: Conv2D(2, 3, dilation_rate=1.5), r"Conv2D: Invalid value for `dilation_rate`.*1.5"),
    (lambda: Conv2D(2, 3, strides=2, dilation_rate=(1, 2)), r"Conv2D: Invalid value for `dilation_rate`: expected 1 "
                                                            r"with strides \(2, 2\)"),
    (lambda: Conv2D(6, 3, groups=4), r"Conv2D: Invalid value for `groups`: expected a divisor of filters=6 .*"
                                     r"Received: groups=4"),
    (lambda: Conv2D(6, 3, groups=0), r"Conv2D: Invalid value for `groups`: expected an integer >= 1"),
    (lambda: DepthwiseConv2D(3, dilation_rate=0), r"DepthwiseConv2D: Invalid value for `dilation_rate`"),
    (lambda: DepthwiseConv2D(0), r"DepthwiseConv2D: Invalid value for `kernel_size`.*Received: kernel_size=0"),
    (lambda: DepthwiseConv2D(3, strides=(1, 0)), r"DepthwiseConv2D: Invalid value for `strides`"),
    (lambda: DepthwiseConv2D(3, padding="full"), r"DepthwiseConv2D: Invalid value for `padding`: expected one of "
                                                 r"\('valid', 'same'\)"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), r"DepthwiseConv2D: Invalid value for `depth_multiplier`: "
                                                     r"expected an integer >= 1. Received: depth_multiplier=0"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=2.0), r"DepthwiseConv2D: Invalid value for `depth_multiplier`"),
    (lambda: DepthwiseConv2D(3, activation="swish!"), r"DepthwiseConv2D.*activation"),
    (lambda: DepthwiseConv2D(3, use_bias=1), r"DepthwiseConv2D: Invalid value for `use_bias`: expected a bool"),
    (lambda: DepthwiseConv2D(3, depthwise_initializer="nope"), r"depthwise_initializer"),
    (lambda: SeparableConv2D(0, 3), r"SeparableConv2D: Invalid value for `filters`: expected an integer >= 1"),
    (lambda: SeparableConv2D(2, (3, 3, 3)), r"SeparableConv2D: Invalid value for `kernel_size`"),
    (lambda: SeparableConv2D(2, 3, depth_multiplier=-1), r"SeparableConv2D: Invalid value for `depth_multiplier`"),
    (lambda: SeparableConv2D(2, 3, use_bias="yes"), r"SeparableConv2D: Invalid value for `use_bias`"),
    (lambda: SeparableConv2D(2, 3, pointwise_initializer="nope"), r"pointwise_initializer"),
])
def test_bad_arguments_name_the_layer_and_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, shape, match", [
    (lambda: Conv2D(2, 3, dilation_rate=3, name="c"), (6, 9, 1),
     r"layer 'c' \(Conv2D\): a 3x3 kernel dilated \(3, 3\) with strides \(1, 1\) and padding 'valid' on a 6x9 input "
     r"gives an empty output \(0x3\)"),
    (lambda: Conv2D(4, 3, groups=2, name="g"), (5, 5, 3),
     r"layer 'g' \(Conv2D\): groups=2 does not divide the input's 3 channels; expected input channels divisible by "
     r"groups"),
    (lambda: DepthwiseConv2D(4, name="d"), (3, 5, 2), r"layer 'd' \(DepthwiseConv2D\): a 4x4 kernel .* empty output"),
    (lambda: SeparableConv2D(2, 3, name="s"), (8, 3), r"Input to layer 's' \(SeparableConv2D\) must have 4 "
                                                      r"dimensions"),
])
def test_bad_inputs_name_the_layer(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make()(Input(shape))
