"""GaussianDropout, GaussianNoise and AlphaDropout (engine/layers/noise.py), the selu activation and the lecun_normal
initializer: Keras 3's semantics and statistics, exact backward passes for the drawn noise, the identity in
inference, Monte-Carlo predictions that agree on the executor, the program and the Predictor at any batch size,
training on every kernel set, model files and argument checks."""
import math

import numpy as np
import pytest

import dropcore
from dropcore import activations, initializers
from dropcore.layers import (AlphaDropout, Conv2D, Dense, Flatten, GaussianDropout, GaussianNoise, Input,
                             MaxPooling2D)
from dropcore.layers.base import Context
from dropcore.layers.noise import ALPHA_P
from dropcore.ops import get_ops
from dropcore.testing import (assert_mc_runs_its_forward, assert_round_trips, assert_trains_like_reference,
                              check_gradient)

TRAIN = Context(training=True, dropout=True, seed=9, step=4)
MAKERS = {"gaussian_dropout": lambda: GaussianDropout(0.3), "gaussian_noise": lambda: GaussianNoise(0.4),
          "alpha_dropout": lambda: AlphaDropout(0.2)}


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _forward(layer, x, ctx=TRAIN, ops="numba"):
    layer.ensure_built(x.shape[1:])
    return layer.forward(get_ops(ops), x, ctx)


# --- statistics --------------------------------------------------------------------------------------------------
N = 1 << 19


@pytest.mark.parametrize("ops", ["numba", "reference"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_gaussian_dropout_multiplies_by_n_1_rate_over_1_minus_rate(ops, rate):
    x = np.full((N // 64, 64), 2.0, np.float32)
    y = _forward(GaussianDropout(rate), x, ops=ops)[0].astype(np.float64)
    std = 2.0 * math.sqrt(rate / (1 - rate))
    assert abs(y.mean() - 2.0) < 5 * std / math.sqrt(N)
    assert abs(y.std() - std) < 5 * std / math.sqrt(2 * N)


@pytest.mark.parametrize("ops", ["numba", "reference"])
def test_gaussian_noise_adds_n_0_stddev_squared(ops):
    x = np.full((N // 64, 64), 2.0, np.float32)
    y = _forward(GaussianNoise(0.5), x, ops=ops)[0].astype(np.float64)
    assert abs(y.mean() - 2.0) < 5 * 0.5 / math.sqrt(N)
    assert abs(y.std() - 0.5) < 5 * 0.5 / math.sqrt(2 * N)


@pytest.mark.parametrize("ops", ["numba", "reference"])
@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_zero_mean_and_unit_variance(ops, rate):
    x = _x((N // 64, 64), seed=1)
    layer = AlphaDropout(rate)
    y = _forward(layer, x, ops=ops)[0]
    a = ((1 - rate) * (1 + rate * ALPHA_P**2)) ** -0.5  # Keras's constants
    b = -a * ALPHA_P * rate
    dropped = y == np.float32(a * ALPHA_P + b)
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / N)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-6, atol=1e-6)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # E[y | x] = a (1 - rate) x: the input's own sampling error is shared, the noise adds its own
    assert abs(y64.mean() - a * (1 - rate) * x64.mean()) < 5 * y64.std() / math.sqrt(N)
    assert abs(y64.mean()) < 5 / math.sqrt(N) + abs(x64.mean())
    assert abs(y64.var() - 1) < 5 * (y64**2).std() / math.sqrt(N) + abs(x64.var() - 1)


def test_alpha_dropout_keeps_exactly_where_dropout_keeps():
    """Its keep bits are Dropout's mask for the same stream: per element, per channel and for a noise shape."""
    x = _x((6, 4, 5, 3), seed=2)
    for ns in (None, (None, 1, 1, 3), (1, 4, 1, 3)):
        drop, alpha = dropcore.layers.Dropout(0.4, noise_shape=ns), AlphaDropout(0.4, noise_shape=ns)
        kept = _forward(drop, np.ones_like(x))[0] != 0
        y = _forward(alpha, x)[0]
        dropped_value = y[~kept].ravel()[0]
        np.testing.assert_array_equal(y == dropped_value, ~kept)


# --- backward, inference ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MAKERS)
def test_backward_matches_finite_differences_with_the_noise_fixed(kind):
    ops = get_ops("reference")
    layer = MAKERS[kind]()
    x = _x((3, 4, 5), seed=3, dtype=np.float64)
    r = _x((3, 4, 5), seed=4, dtype=np.float64)
    ctx = Context(training=True, dropout=True, seed=2, step=1, row=5)
    y, backprop = _forward(layer, x, ctx, ops="reference")
    assert not np.allclose(y, x)
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, ctx)[0] * r)), backprop(r), x)


def test_alpha_dropout_backward_with_a_noise_shape():
    ops = get_ops("reference")
    layer = AlphaDropout(0.5, noise_shape=(None, 1, 5))
    x, r = _x((4, 3, 5), seed=5, dtype=np.float64), _x((4, 3, 5), seed=6, dtype=np.float64)
    _, backprop = _forward(layer, x, TRAIN, ops="reference")
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, TRAIN)[0] * r)), backprop(r), x)


@pytest.mark.parametrize("kind", MAKERS)
def test_numba_and_reference_draw_the_same_noise(kind):
    x = _x((5, 40), seed=7)
    ctx = Context(training=True, dropout=True, seed=3, step=2, row=11)
    layer = MAKERS[kind]()
    np.testing.assert_allclose(_forward(layer, x, ctx)[0], _forward(layer, x, ctx, ops="reference")[0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", MAKERS)
def test_identity_in_inference_and_at_rate_zero(kind):
    x = _x((4, 6), seed=8)
    layer = MAKERS[kind]()
    y, backprop = _forward(layer, x, Context())
    assert y is x and backprop(x) is x
    for still in (GaussianDropout(0.0), GaussianNoise(0.0), AlphaDropout(0.0)):
        assert _forward(still, x)[0] is x
    model = dropcore.Sequential([Input((6,)), Dense(5), MAKERS[kind](), Dense(2)])
    assert model._inference_program().steps == ["dense", "dense"]  # no step for it


def test_each_eager_training_call_draws_new_noise():
    x = np.ones((2, 50), np.float32)
    for layer in (GaussianDropout(0.5), GaussianNoise(1.0), AlphaDropout(0.5)):
        assert not np.array_equal(layer(x, training=True), layer(x, training=True))
        np.testing.assert_array_equal(layer(x), x)


# --- models: Monte-Carlo dropout, training, files ----------------------------------------------------------------
def _model(kind, seed=0):
    dropcore.set_random_seed(seed)
    model = dropcore.Sequential([
        Input((8, 8, 1)), Conv2D(4, 3, activation="selu", kernel_initializer="lecun_normal"), MaxPooling2D(2),
        MAKERS[kind](), Flatten(), Dense(16, activation="relu"), MAKERS[kind](), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kind", MAKERS)
def test_monte_carlo_predictions_agree_everywhere_at_any_batch_size(kind):
    model, x = _model(kind), _x((10, 8, 8, 1), seed=9)
    assert_mc_runs_its_forward(model, x, kind, 2)  # the noise (GaussianNoise included) on, its own forward


@pytest.mark.parametrize("kind", MAKERS)
def test_trains_like_the_reference_and_round_trips(kind, tmp_path):
    x, y = _x((12, 8, 8, 1), seed=10), np.arange(12) % 3
    model = assert_trains_like_reference(lambda: _model(kind), x, y)
    program = model._inference_program()
    # the Dense layer's selu runs in its kernel's output pass: no step of its own
    assert "selu" not in program.steps and "dense" in program.steps
    assert model.inference_engine == "cython-program"
    assert_round_trips(model, x, tmp_path / "m.dropcore")


@pytest.mark.parametrize("noise_shape", [(None, 1, 1, 4), (None, 8, 1, 1)])
def test_alpha_dropout_monte_carlo_per_channel_and_with_a_noise_shape(noise_shape):
    """Per channel the program binds alpha_dropout_kernel; a general noise shape runs the layer's forward: both
    agree with the executor at any batch size."""
    dropcore.set_random_seed(0)
    model = dropcore.Sequential([Input((8, 8, 1)), Conv2D(4, 3, padding="same", activation="selu"),
                                 AlphaDropout(0.3, noise_shape=noise_shape), Flatten(), Dense(3)])
    assert_mc_runs_its_forward(model, _x((10, 8, 8, 1), seed=14), "alpha_dropout", 1)


def test_configs_rebuild_exactly():
    for layer in (GaussianDropout(0.25, seed=3, name="gd"), GaussianNoise(0.5, name="gn"),
                  AlphaDropout(0.1, noise_shape=(None, 1, 4), seed=2, name="ad")):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config
    assert GaussianDropout(0.25, seed=3, name="gd").get_config() == {"name": "gd", "rate": 0.25, "seed": 3}
    assert GaussianNoise(0.5, name="gn").get_config() == {"name": "gn", "stddev": 0.5, "seed": None}


@pytest.mark.parametrize("make, match", [
    (lambda: GaussianDropout(1.0), r"GaussianDropout: Invalid value for `rate`: expected a float in \[0.0, 1.0\)"),
    (lambda: GaussianDropout(-0.1), r"GaussianDropout: Invalid value for `rate`"),
    (lambda: GaussianDropout(0.5, seed=-1), r"GaussianDropout: Invalid value for `seed`"),
    (lambda: GaussianNoise(-0.5), r"GaussianNoise: Invalid value for `stddev`: expected a float in \[0.0, inf\]"),
    (lambda: GaussianNoise(float("nan")), r"GaussianNoise: Invalid value for `stddev`"),
    (lambda: GaussianNoise("1"), r"GaussianNoise: Invalid value for `stddev`"),
    (lambda: AlphaDropout(1.0), r"AlphaDropout: Invalid value for `rate`"),
    (lambda: AlphaDropout(0.5, noise_shape=(None, 0)), r"AlphaDropout: Invalid value for `noise_shape`"),
    (lambda: AlphaDropout(0.5, seed=1.5), r"AlphaDropout: Invalid value for `seed`"),
])
def test_bad_arguments_name_the_layer_and_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- selu, lecun_normal ------------------------------------------------------------------------------------------
def test_selu_matches_keras_and_its_backward_finite_differences():
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    x = _x((50, 40), seed=11) * 3
    x[0, :3] = (0.0, -30.0, 30.0)
    ours = activations.apply(get_ops("numba"), "selu", x)[0]
    theirs = keras.ops.convert_to_numpy(keras.activations.selu(x))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    cython = pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    np.testing.assert_allclose(cython.selu(x), ours, rtol=2e-6, atol=1e-6)
    z = _x((4, 7), seed=12, dtype=np.float64)
    r = _x((4, 7), seed=13, dtype=np.float64)
    _, backprop = activations.apply(get_ops("reference"), "selu", z)
    check_gradient(lambda: float(np.sum(activations.apply(get_ops("reference"), "selu", z)[0] * r)), backprop(r), z)
    assert activations.normalize("SELU") == "selu"


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (300, 100)])
def test_lecun_normal_matches_keras_statistics(shape):
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    fan_in = int(np.prod(shape[:-1]))
    std = math.sqrt(1 / fan_in)
    ours = initializers.get("lecun_normal")
    assert isinstance(ours, initializers.LecunNormal) and initializers.name_of(ours) == "lecun_normal"
    w = initializers.LecunNormal(seed=0)(shape)
    theirs = keras.ops.convert_to_numpy(keras.initializers.LecunNormal(seed=0)(shape))
    n = w.size
    assert w.dtype == np.float32 and w.shape == shape
    for sample in (w.astype(np.float64), theirs.astype(np.float64)):
        assert abs(sample.mean()) < 5 * std / math.sqrt(n)
        assert abs(sample.std() - std) < 5 * std / math.sqrt(n)  # truncation lowers the kurtosis: sd(s) < s/sqrt(2n)
    # truncated at 2 stddev of the underlying normal (Keras's torch backend keeps one of 4 draws: rarely none fits)
    bound = 2 * std / 0.87962566103423978 * (1 + 1e-6)
    assert np.abs(w).max() <= bound
    assert np.mean(np.abs(theirs) > bound) < 1e-3
