"""Model API, execution modes, fusion and dropout behaviour inside models."""
import numpy as np
import pytest

import dropcore
from dropcore import graph
from dropcore.layers import (Activation, Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input,
                             MaxPooling2D, ReLU, Softmax, SpatialDropout2D)


def small_cnn(rate=0.5, bn=False):
    dropcore.set_random_seed(0)
    layers = [Input((8, 8, 2)), Conv2D(4, 3, activation="relu")]
    if bn:
        layers.append(BatchNormalization())
    layers += [MaxPooling2D(2), Dropout(rate), Flatten(), Dense(8, activation="relu"), Dropout(rate),
               Dense(3, activation="softmax")]
    return dropcore.Sequential(layers)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 8, 8, 2)).astype(np.float32), rng.integers(0, 3, 40)


def test_public_api_names():
    for name in ["Input", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D",
                 "BatchNormalization", "Dense", "Flatten", "Activation", "ReLU", "Softmax", "Add"]:
        assert hasattr(dropcore.layers, name)
    for name in ["he_uniform", "he_normal", "glorot_uniform", "zeros"]:
        assert hasattr(dropcore.initializers, name)
    assert dropcore.constraints.max_norm is dropcore.constraints.MaxNorm
    for name in ["SGD", "Adam", "RMSprop", "Adadelta", "Adagrad"]:
        assert hasattr(dropcore.optimizers, name)
    assert dropcore.losses.SparseCategoricalCrossentropy(from_logits=True).from_logits


def test_inference_is_default_deterministic_training_is_stochastic(data):
    x, _ = data
    model = small_cnn()
    a, b = model(x), model.predict(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model(x), model(x, training=False))
    t1, t2 = model(x, training=True), model(x, training=True)
    assert not np.allclose(t1, a)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.train_on_batch(x, data[1])  # advances the step, hence the masks
    assert not np.allclose(model(x, training=True), t2)


def test_moving_statistics_change_only_in_training(data):
    x, y = data
    model = small_cnn(bn=True)
    bn = next(la for la in model.layers if isinstance(la, BatchNormalization))
    before = bn.get_weights()
    model.predict(x)
    model(x)
    for w0, w1 in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.evaluate(x, y)
    np.testing.assert_array_equal(before[2], bn.weights["moving_mean"])
    model.train_on_batch(x, y)
    assert not np.allclose(before[2], bn.weights["moving_mean"])
    assert not np.allclose(before[3], bn.weights["moving_variance"])


def test_fusion_plan():
    x = Input((6, 6, 1))
    h = Conv2D(2, 3, name="conv_a")(x)           # linear conv + ReLU layer -> conv(relu)
    h = ReLU(name="relu_a")(h)
    h = Dropout(0.5, name="drop_a")(Conv2D(2, 1, activation="relu", name="conv_b")(h))  # conv relu -> relu_dropout
    h = Flatten()(h)
    h = Dropout(0.2, name="drop_b")(Activation("relu", name="relu_b")(Dense(3, name="dense_a")(h)))
    out = Softmax(name="sm")(Dense(2, name="dense_b")(h))
    model = dropcore.Model(x, out)
    steps = {s.layer.name: s for s in model.plan.steps}
    assert "relu_a" not in steps and "relu_b" not in steps
    assert steps["conv_a"].activation == "relu"
    assert steps["conv_b"].activation == "linear" and steps["drop_a"].opts["relu"]
    assert steps["dense_a"].activation == "linear" and steps["drop_b"].opts["relu"]
    assert model._plan.head == "softmax"
    assert any("fused relu->dropout" in line for line in graph.describe(model.plan))


def test_no_fusion_when_relu_output_is_shared():
    x = Input((4,))
    h = Dense(3, name="d")(x)
    r = ReLU(name="r")(h)
    out = Add()([Dropout(0.5, name="drop")(r), r])
    steps = {s.layer.name: s for s in dropcore.Model(x, out)._plan.steps}
    assert not steps["drop"].opts.get("relu")  # the ReLU output also feeds Add: dropout must not apply it
    assert "r" not in steps and steps["d"].activation == "relu"  # Dense -> ReLU fuses: one consumer
    x_val = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model = dropcore.Model(x, out)
    d = model.layers[0]
    expected = 2 * np.maximum(x_val @ d.weights["kernel"] + d.weights["bias"], 0)
    np.testing.assert_allclose(model.predict(x_val), expected, rtol=1e-5, atol=1e-6)


def test_fused_model_equals_unfused_computation(data):
    """The fused plan computes exactly what the layers compute one by one."""
    x, y = data
    model = small_cnn(rate=0.3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    ctx = dropcore.layers.Context(training=True, dropout=True, seed=model._seed, step=0)
    ops = model.kernel_set
    fused, _ = model._plan.forward(ops, x, ctx)
    h = x
    for layer in model.layers:
        h, _ = layer.forward(ops, h, ctx)
    np.testing.assert_allclose(fused, h, rtol=1e-5, atol=1e-6)


def test_dropout_seed_reproducible_fit(data):
    x, y = data
    results = []
    for _ in range(2):
        model = small_cnn()
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, epochs=2, batch_size=8, seed=7, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_spatial_dropout_drops_whole_channels():
    layer = SpatialDropout2D(0.5, seed=3)
    x = np.ones((4, 5, 5, 8), np.float32)
    y = layer(x, training=True)
    per_map = y.reshape(4, 25, 8)
    assert np.all(per_map.min(axis=1) == per_map.max(axis=1))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0 < (y == 0).mean() < 1
    np.testing.assert_array_equal(layer(x), x)


def test_dropout_noise_shape_broadcasts():
    layer = Dropout(0.5, noise_shape=(None, 1, 6), seed=1)
    x = np.ones((3, 4, 6), np.float32)
    y = layer(x, training=True)
    assert np.all(y == y[:, :1, :])
    assert set(np.unique(y)) <= {0.0, 2.0}


def test_dropout_rate_zero_and_inference_identity():
    x = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)
    np.testing.assert_array_equal(Dropout(0.9)(x), x)


def test_mc_dropout_predict(data):
    x, _ = data
    model = small_cnn()
    m1, s1 = model.predict(x, mc_samples=6, seed=5)
    m2, s2 = model.predict(x, mc_samples=6, seed=5)
    m3, _ = model.predict(x, mc_samples=6, seed=6)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(m1, m3)
    assert (s1 > 0).any()
    passes = np.stack([model.plan.forward(model.kernel_set, x, dropcore.layers.Context(dropout=True, seed=5, step=i))[0]
                       for i in range(6)])
    np.testing.assert_allclose(m1, passes.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s1, passes.std(0), rtol=1e-4, atol=1e-6)


def test_get_set_weights_keras_layout(data):
    model = small_cnn(bn=True)
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 3, 2, 4), (4,), (4,), (4,), (4,), (4,), (36, 8), (8,), (8, 3), (3,)]
    new = [np.full(s, 0.01 * i, np.float32) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expects 10 weight arrays, received 9"):
        model.set_weights(new[:-1])
    with pytest.raises(ValueError, match=r"weight 'kernel' has shape \(3, 3, 2, 4\), received an array of shape"):
        model.set_weights([np.zeros((3, 3, 2, 5))] + new[1:])


def test_sequential_builds_from_first_batch(data):
    x, y = data
    model = dropcore.Sequential([Conv2D(3, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")])
    assert model.input_shape is None
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.input_shape == (None, 8, 8, 2) and model.output_shape == (None, 3)


def test_fit_history_and_validation(data):
    x, y = data
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values()) and h.epoch == [0, 1, 2]
    val_loss, val_acc = model.evaluate(x[30:], y[30:])
    assert h.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)
    assert h.history["val_accuracy"][-1] == pytest.approx(val_acc)
    h2 = model.fit(x, y, epochs=1, validation_data=(x[:5], y[:5]), verbose=0)
    assert "val_loss" in h2.history


def test_fit_learns_separable_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 6)).astype(np.float32) + 2.0 * y[:, None]
    model = dropcore.Sequential([Input((6,)), Dropout(0.2), Dense(16, activation="relu"), Dense(1,
                                activation="sigmoid")])
    model.compile(dropcore.optimizers.Adam(0.01), "binary_crossentropy", ["accuracy"])
    h = model.fit(x, y[:, None].astype(np.float32), epochs=20, batch_size=32, verbose=0, seed=0)
    assert h.history["loss"][-1] < h.history["loss"][0] * 0.5
    assert model.evaluate(x, y[:, None].astype(np.float32))[1] > 0.95


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "mse"])
def test_other_losses_train(loss, data):
    x, y = data
    onehot = np.eye(3, dtype=np.float32)[y]
    model = small_cnn(rate=0.1)
    model.compile(dropcore.optimizers.SGD(0.05, momentum=0.9), loss, ["accuracy"])
    h = model.fit(x, onehot, epochs=8, batch_size=8, verbose=0, seed=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_summary_lists_layers_and_params():
    lines = []
    small_cnn().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "conv2d" in text and "(None, 6, 6, 4)" in text
    assert f"Total params: {small_cnn().count_params():,}" in text
    assert "fused relu->dropout" in text


def test_reference_and_numba_models_agree(data):
    x, y = data
    a, b = small_cnn(bn=True), small_cnn(bn=True)
    b.set_weights(a.get_weights())
    b.set_ops("reference")
    for m in (a, b):
        m.compile(dropcore.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        m._seed = 11
        m.train_on_batch(x, y)
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=1e-4, atol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)


def _pooled_cnn(seed):
    x = Input((12, 12, 3))
    h = Conv2D(8, 3, activation="relu", name="conv_a")(x)
    h = MaxPooling2D(2, name="pool_a")(h)
    h = Conv2D(16, 3, name="conv_b")(h)  # linear, then a pooling that does not divide its 3x3 output
    h = MaxPooling2D(2, name="pool_b")(h)
    out = Dense(4, activation="softmax")(Dropout(0.3)(Flatten()(h)))
    model = dropcore.Model(x, out)
    model.compile(optimizer=dropcore.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in model.get_weights()])
    return model


def test_training_fuses_each_pooling_into_its_convolution_with_the_same_bits(monkeypatch):
    """A convolution and the max pooling after it train as one step (its output never materialized) and give the
    weights training them apart gives, bit for bit."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 12, 12, 3)).astype(np.float32), rng.integers(0, 4, 24)
    fused = _pooled_cnn(1)
    names = [s.layer.name for s in fused._plan.steps]
    assert "pool_a" not in names and "pool_b" not in names
    assert any("conv_b" in line and "fused max pool 2x2" in line for line in graph.describe(fused._plan))
    fused.fit(x, y, batch_size=8, epochs=2, seed=3, verbose=0)
    monkeypatch.setattr(dropcore.fusion, "TRAINING", tuple(
        r for r in dropcore.fusion.TRAINING if r is not dropcore.fusion.POOL_INTO_CONV_TRAINING))
    apart = _pooled_cnn(1)
    assert "pool_a" in [s.layer.name for s in apart._plan.steps]
    apart.fit(x, y, batch_size=8, epochs=2, seed=3, verbose=0)
    for a, b in zip(fused.get_weights(), apart.get_weights()):
        np.testing.assert_array_equal(a, b)
