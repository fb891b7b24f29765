"""Training's BatchNormalization -> ReLU/ReLU6 in one kernel (``fusion.NORM_ACTIVATION_TRAINING``): the same
training, bit for bit, as the two layers apart, on every kernel set; the fusion only where nothing else reads the
normalized value; inference and the executor's evaluation unchanged."""
import numpy as np
import pytest

import dropcore
from dropcore import fusion
from dropcore.layers import (Activation, BatchNormalization, Conv2D, Dense, Flatten, Input, ReLU)


def _model(kernels, seed=3, optimizer="adam"):
    dropcore.set_random_seed(seed)
    inp = Input((8, 8, 3))
    h = BatchNormalization()(Conv2D(6, 3, padding="same")(inp))
    h = ReLU(max_value=6)(h)  # relu6
    h = Activation("relu")(BatchNormalization()(Conv2D(5, 3, strides=2)(h)))
    out = Dense(4, activation="softmax")(Flatten()(h))
    model = dropcore.Model(inp, out)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model if kernels is None else model.set_ops(kernels)


def _unfused(monkeypatch):
    monkeypatch.setattr(fusion, "TRAINING", tuple(r for r in fusion.TRAINING
                                                  if r is not fusion.NORM_ACTIVATION_TRAINING))


@pytest.mark.parametrize("kernels", ["reference", "numba", "cython"])
def test_fused_training_has_the_bits_of_the_layers_apart(kernels, monkeypatch):
    if kernels == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32) * 3  # some values past 6 after the first layer
    y = rng.integers(0, 4, 16)
    fused = _model(kernels)
    steps = fused._plan.steps
    assert [s.opts.get("activation") for s in steps if isinstance(s.layer, BatchNormalization)] == ["relu6", "relu"]
    assert not any(s.layer.pure_activation and s.activation in ("relu", "relu6") for s in steps)
    _unfused(monkeypatch)
    apart = _model(kernels)
    assert all("activation" not in s.opts for s in apart._plan.steps if isinstance(s.layer, BatchNormalization))
    for _ in range(3):
        assert fused.train_on_batch(x, y) == apart.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), apart.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused.predict(x), apart.predict(x))
    np.testing.assert_array_equal(fused.evaluate(x, y, verbose=0), apart.evaluate(x, y, verbose=0))


def test_fused_training_follows_the_reference():
    from dropcore.testing import assert_trains_like_reference

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((16, 8, 8, 3)).astype(np.float32) * 3, rng.integers(0, 4, 16)
    # (SGD: Adam turns the convolutions' bias gradients, zero but for rounding before a normalization, into steps)
    assert_trains_like_reference(lambda: _model(None, optimizer="sgd"), x, y)


def test_a_normalized_value_read_twice_keeps_its_relu_apart():
    dropcore.set_random_seed(1)
    inp = Input((6,))
    h = BatchNormalization()(Dense(4)(inp))
    out = Dense(2)(Activation("relu")(h))
    model = dropcore.Model(inp, dropcore.layers.Add()([out, Dense(2)(h)]))
    model.compile(optimizer="sgd", loss="mse")
    assert all("activation" not in s.opts for s in model._plan.steps)


def test_batch_norm_names_the_activation_it_cannot_apply():
    layer = BatchNormalization(name="bn")
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r"layer 'bn' \(BatchNormalization\) applies no activation 'tanh'"):
        layer.forward(dropcore.ops.get_ops("reference"), np.zeros((2, 3), np.float32),
                      dropcore.layers.base.Context(training=True), activation="tanh")
