"""Every activation name, and the layers LeakyReLU, ELU, ReLU (max_value, negative_slope, threshold) and Softmax,
against Keras 3; their backward through the layer against finite differences; Conv2D and Dense with each
activation: the inference program (the activation in the kernel's output pass) equal to the executor, training
on the fast sets equal to the reference; model files; bad arguments named."""
import numpy as np
import pytest

import dropcore
from dropcore import activations
from dropcore.inference import predict_outputs
from dropcore.layers import ELU, Activation, Conv2D, Dense, Flatten, Input, LeakyReLU, ReLU, Softmax
from dropcore.layers.base import Context
from dropcore.ops import get_ops
from dropcore.testing import assert_trains_like_reference, check_gradient

NAMES = [n for n in activations.NAMES if n != "linear"]
#: layer id -> (class, arguments); Keras's layer of the same name takes the same arguments
LAYERS = {
    "leaky-relu": (LeakyReLU, {}), "leaky-relu-0.05": (LeakyReLU, {"negative_slope": 0.05}),
    "elu": (ELU, {}), "elu-0.5": (ELU, {"alpha": 0.5}), "elu-negative": (ELU, {"alpha": -0.4}),
    "relu": (ReLU, {}), "relu-6": (ReLU, {"max_value": 6.0}), "relu-max-2": (ReLU, {"max_value": 2.0}),
    "relu-slope": (ReLU, {"negative_slope": 0.1}),
    "relu-threshold": (ReLU, {"threshold": 0.5}),
    "relu-all": (ReLU, {"max_value": 1.5, "negative_slope": 0.2, "threshold": 0.3}),
    "relu-slope-max": (ReLU, {"max_value": 6.0, "negative_slope": 0.1}),
    "softmax": (Softmax, {}),
}


def _x(shape, seed=0, dtype=np.float32, scale=3.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    x.reshape(-1)[::7] = 0.0  # exact zeros: the x > 0 boundaries
    return x.astype(dtype)


def _keras():
    return pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")


@pytest.mark.parametrize("name", NAMES)
def test_activation_layer_matches_keras(name):
    keras = _keras()
    x = _x((3, 5, 4, 6))
    for kernels in ("cython", "numba", "reference"):
        layer = Activation(name)
        layer.build(x.shape[1:])
        ours = layer.forward(get_ops(kernels), x, Context())[0]
        theirs = keras.ops.convert_to_numpy(keras.layers.Activation(name)(x))
        assert ours.dtype == np.float32
        # the float32 formulas of Keras's torch backend and ours differ by a few ulps (tests/kernels/
        # test_activation_ops.py bounds ours); gelu's 1 + erf(x) cancels near 0 in both
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6, err_msg=f"{name} on {kernels}")


@pytest.mark.parametrize("case", LAYERS)
def test_layer_matches_keras(case):
    keras = _keras()
    cls, kwargs = LAYERS[case]
    x = _x((3, 4, 5, 6), seed=1)
    for kernels in ("cython", "numba", "reference"):
        layer = cls(**kwargs)
        layer.build(x.shape[1:])
        ours = layer.forward(get_ops(kernels), x, Context())[0]
        theirs = keras.ops.convert_to_numpy(getattr(keras.layers, cls.__name__)(**kwargs)(x))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7, err_msg=f"{case} on {kernels}")


@pytest.mark.parametrize("case", LAYERS)
def test_layer_backward_matches_finite_differences(case):
    cls, kwargs = LAYERS[case]
    layer = cls(**kwargs)
    layer.build((4, 5))
    x = np.random.default_rng(2).uniform(-4, 4, (3, 4, 5))
    for k in (0.0, kwargs.get("threshold", 0.0), kwargs.get("max_value") or 0.0):  # away from the kinks
        x[np.abs(x - k) < 1e-3] += 0.01
    ops = get_ops("reference")
    y, backprop = layer.forward(ops, x, Context())
    r = np.random.default_rng(3).standard_normal(y.shape)
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, Context())[0] * r)), backprop(r), x)


@pytest.mark.parametrize("case", LAYERS)
def test_layer_config_round_trips(case):
    cls, kwargs = LAYERS[case]
    layer = cls(**kwargs, name="a")
    again = cls(**layer.get_config())
    assert again.get_config() == layer.get_config()
    assert (again.activation, again.params) == (layer.activation, layer.params)


def test_relu_picks_the_op_keras_describes():
    assert (ReLU().activation, ReLU(max_value=6).activation, ReLU(negative_slope=0.1).activation) == (
        "relu", "relu6", "leaky_relu")
    assert ReLU(max_value=6, threshold=1).activation == "clipped_relu"
    old_file = {"class_name": "ReLU", "config": {"name": "r"}}  # written before ReLU took its arguments
    from dropcore import serialization
    layer = serialization.from_config(serialization.with_added_keys(old_file), serialization.LAYERS, "layer", "t")
    assert (layer.activation, layer.get_config()) == ("relu", {"name": "r", "max_value": None,
                                                              "negative_slope": 0.0, "threshold": 0.0})


@pytest.mark.parametrize("make,match", [
    (lambda: ReLU(max_value=-1), r"ReLU: Invalid value for `max_value`: expected a float in \[0.0, inf\]"),
    (lambda: ReLU(negative_slope=-0.1), r"ReLU: Invalid value for `negative_slope`"),
    (lambda: ReLU(threshold=-1), r"ReLU: Invalid value for `threshold`"),
    (lambda: ELU(alpha="big"), r"ELU: Invalid value for `alpha`: expected a float"),
    (lambda: LeakyReLU(negative_slope=-1), r"LeakyReLU: Invalid value for `negative_slope`"),
    (lambda: Softmax(axis=1), r"Softmax: Invalid value for `axis`: expected -1"),
    (lambda: Dense(3, activation="gelu_tanh"), r"Dense: Invalid value for `activation`: expected one of"),
    (lambda: Activation("mishmash"), r"Activation: Invalid value for `activation`.*Received: activation='mishmash'"),
])
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_aliases_are_one_op():
    assert activations.normalize("swish") == "silu" and activations.normalize("HARD_SILU") == "hard_swish"
    assert Dense(2, activation="swish").get_config()["activation"] == "silu"


# --- Conv2D / Dense with each activation: programs (epilogues) against the executor, training --------------------
def _model(act, seed=0):
    dropcore.set_random_seed(seed)
    inp = Input((7, 6, 3))
    h = Conv2D(8, 3, padding="same", activation=act, name="conv")(inp)
    h = Conv2D(16, 3, activation=act, name="conv_b")(h)  # 16 -> 16 channels would go to Winograd; this: direct
    h = Dense(12, activation=act, name="dense")(Flatten()(h))
    model = dropcore.Model(inp, Dense(4, activation="softmax", name="out")(h))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("act", [n for n in NAMES if n not in ("relu", "softmax", "hard_silu", "swish")])
def test_conv_and_dense_activations_in_programs_and_training(act, tmp_path):
    """The program (each activation in its kernel's output pass: no separate step) gives the executor's outputs;
    training on the fast sets follows the reference; a model file keeps the activation."""
    x, y = _x((10, 7, 6, 3), seed=4, scale=1.0), np.arange(10) % 4
    model = assert_trains_like_reference(lambda: _model(act), x, y)
    program = model._inference_program()
    assert act not in program.steps, program.steps  # fused: no step of its own
    expected = predict_outputs(model._plan, get_ops("reference"), x.astype(np.float64), 256)
    np.testing.assert_allclose(model.predict(x, batch_size=3), expected, rtol=1e-4, atol=1e-6)
    model.save(tmp_path / "m.dropcore")
    loaded = dropcore.load_model(tmp_path / "m.dropcore")
    assert loaded.get_layer("conv").activation == act
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=0, atol=0)


@pytest.mark.parametrize("case", ["leaky-relu-0.05", "elu-0.5", "relu-6", "relu-all"])
def test_activation_layers_in_programs(case):
    cls, kwargs = LAYERS[case]
    dropcore.set_random_seed(1)
    inp = Input((5, 5, 2))
    h = cls(**kwargs, name="layer")(Conv2D(4, 3, name="conv")(inp))
    model = dropcore.Model(inp, Dense(3, name="out")(Flatten()(h)))
    model.compile(optimizer="sgd", loss="mse")
    x = _x((6, 5, 5, 2), seed=5, scale=2.0)
    expected = predict_outputs(model._plan, get_ops("reference"), x.astype(np.float64), 256)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
