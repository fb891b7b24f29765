"""Whole programs from the Keras dropout tutorials, run in Keras 3 (torch backend) and in dropcore with the same
weights: the same inference outputs and losses, the same SGD steps where no dropout draws, the same History keys,
`evaluate` return values and `predict` shapes, and the same exception type for the same bad input.

Where dropcore deliberately differs, the test says why: dropout masks come from different generators (so training
runs with dropout are compared by their structure, and steps by value only without dropout); dropcore takes a
`seed=` in `fit`.
"""
import numpy as np
import pytest

import dropcore
from dropcore import layers as L

keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
K = keras.layers


def _both(build):
    """The same architecture in both libraries (``build(lib)``, ``lib`` a layers module), Keras's weights copied."""
    dropcore.set_random_seed(0)
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential(build(K, keras.Input, keras.constraints.MaxNorm))
    ours = dropcore.Sequential(build(L, L.Input, dropcore.constraints.MaxNorm))
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _compile(ours, theirs, loss, lr=0.05, metrics=("accuracy",)):
    ours.compile(optimizer=dropcore.optimizers.SGD(lr), loss=loss, metrics=list(metrics))
    theirs.compile(optimizer=keras.optimizers.SGD(lr), loss=loss, metrics=list(metrics))


def _same_weights(ours, theirs, rtol=1e-4, atol=1e-5):
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _images(n, shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype(np.float32), rng.integers(0, classes, n)


def mnist_cnn(lib, inp, _maxnorm, rate=0.25):
    """The Keras MNIST example (smaller: 14x14 inputs, fewer filters)."""
    return [inp((14, 14, 1)), lib.Conv2D(8, 3, activation="relu"), lib.Conv2D(16, 3, activation="relu"),
            lib.MaxPooling2D(2), lib.Dropout(rate), lib.Flatten(), lib.Dense(32, activation="relu"),
            lib.Dropout(2 * rate), lib.Dense(10, activation="softmax")]


def cifar_cnn(lib, inp, maxnorm, rate=0.2):
    """The CIFAR-10 dropout tutorial's CNN: max_norm(3) on every kernel (smaller: 12x12 inputs)."""
    return [inp((12, 12, 3)), lib.Conv2D(16, 3, padding="same", activation="relu", kernel_constraint=maxnorm(3)),
            lib.Dropout(rate), lib.MaxPooling2D(2), lib.Flatten(),
            lib.Dense(32, activation="relu", kernel_constraint=maxnorm(3)), lib.Dropout(rate),
            lib.Dense(10, activation="softmax")]


def tabular_mlp(lib, inp, maxnorm, rate=0.2):
    """The sonar tutorial's MLP: dropout on the visible layer, max_norm(3) on the hidden ones, a sigmoid output."""
    return [inp((12,)), lib.Dropout(rate), lib.Dense(16, activation="relu", kernel_constraint=maxnorm(3)),
            lib.Dense(8, activation="relu", kernel_constraint=maxnorm(3)), lib.Dense(1, activation="sigmoid")]


def bn_cnn(lib, inp, _maxnorm, rate=0.3):
    """BatchNormalization and Dropout where the tutorials put them: conv -> BN -> ReLU -> pool -> dropout."""
    return [inp((10, 10, 2)), lib.Conv2D(8, 3, use_bias=False), lib.BatchNormalization(), lib.ReLU(),
            lib.MaxPooling2D(2), lib.Dropout(rate), lib.Flatten(), lib.Dense(4, activation="softmax")]


def test_mnist_cnn_with_to_categorical_and_categorical_crossentropy():
    ours, theirs = _both(mnist_cnn)
    _compile(ours, theirs, "categorical_crossentropy")
    x, labels = _images(64, (14, 14, 1), 10)
    y = dropcore.utils.to_categorical(labels, 10)
    np.testing.assert_array_equal(y, keras.utils.to_categorical(labels, 10))
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y), theirs.evaluate(x, y, verbose=0), rtol=1e-4)
    # Training with dropout: the masks differ (different generators), so compare what the run reports.
    h_ours = ours.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0, seed=1)
    h_theirs = theirs.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    assert set(h_ours.history) == set(h_theirs.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h_ours.epoch == h_theirs.epoch == [0, 1]
    assert ours.predict(x[:5]).shape == theirs.predict(x[:5], verbose=0).shape == (5, 10)


def test_cifar_cnn_with_max_norm_steps_as_keras_without_dropout():
    """Dropout rates 0 so that both draw nothing: then the SGD steps with max_norm(3) must agree. The hidden Dense
    kernel starts at 3x Keras's initial values (column norms ~4.2), so that the constraint binds from the first
    step; the outputs stay far from saturation, where Keras's clipped cross-entropy on probabilities and dropcore's
    exact one fused with the softmax part ways on purpose."""
    ours, theirs = _both(lambda *a: cifar_cnn(*a, rate=0.0))
    big = [w * 3 if i == 2 else w for i, w in enumerate(theirs.get_weights())]
    theirs.set_weights(big)
    ours.set_weights(big)
    _compile(ours, theirs, "sparse_categorical_crossentropy", lr=0.05)
    x, y = _images(48, (12, 12, 3), 10)
    h_ours = ours.fit(x, y, batch_size=16, epochs=1, shuffle=False, validation_split=0.25, verbose=0)
    h_theirs = theirs.fit(x, y, batch_size=16, epochs=1, shuffle=False, validation_split=0.25, verbose=0)
    _same_weights(ours, theirs)
    norms = np.linalg.norm(ours.get_weights()[2], axis=0)
    assert norms.max() <= 3.0 + 1e-5 and np.isclose(norms.max(), 3.0, atol=1e-3)  # the constraint bound
    for key in h_theirs.history:
        np.testing.assert_allclose(h_ours.history[key], h_theirs.history[key], rtol=1e-3, atol=1e-5)


def test_tabular_mlp_with_binary_crossentropy_under_stratified_kfold():
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[digits]')")
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 12)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)  # (N,): as the tutorials pass it
    assert sklearn
    for fold, (train, test) in enumerate(StratifiedKFold(n_splits=3, shuffle=True, random_state=0).split(x, y)):
        ours, theirs = _both(lambda *a: tabular_mlp(*a, rate=0.0))
        _compile(ours, theirs, "binary_crossentropy", lr=0.1)
        ours.fit(x[train], y[train], batch_size=8, epochs=2, shuffle=False, verbose=0)
        theirs.fit(x[train], y[train], batch_size=8, epochs=2, shuffle=False, verbose=0)
        _same_weights(ours, theirs)
        got, expected = ours.evaluate(x[test], y[test]), theirs.evaluate(x[test], y[test], verbose=0)
        assert len(got) == len(expected) == 2
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert ours.predict(x[test]).shape == theirs.predict(x[test], verbose=0).shape == (len(test), 1)
    # With dropout on the visible layer the run differs only by its masks: compare its structure.
    ours, theirs = _both(tabular_mlp)
    _compile(ours, theirs, "binary_crossentropy")
    assert set(ours.fit(x, y, epochs=1, verbose=0).history) == set(theirs.fit(x, y, epochs=1, verbose=0).history)


def test_batch_normalization_and_dropout_in_their_usual_places():
    ours, theirs = _both(lambda *a: bn_cnn(*a, rate=0.0))
    _compile(ours, theirs, "sparse_categorical_crossentropy", lr=0.1)
    x, y = _images(32, (10, 10, 2), 4)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _same_weights(ours, theirs)  # the moving statistics included
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("bad", ["predict_shape", "evaluate_shape", "fit_lengths", "fit_uncompiled"])
def test_the_same_bad_input_raises_the_same_exception_type(bad):
    ours, theirs = _both(mnist_cnn)
    x, y = _images(8, (14, 14, 1), 10)
    if bad != "fit_uncompiled":
        _compile(ours, theirs, "sparse_categorical_crossentropy")
    calls = {
        "predict_shape": (lambda m, **kw: m.predict(np.zeros((2, 12, 12, 1), np.float32), **kw)),
        "evaluate_shape": (lambda m, **kw: m.evaluate(np.zeros((2, 14, 14, 2), np.float32), y[:2], **kw)),
        "fit_lengths": (lambda m, **kw: m.fit(x, y[:5], **kw)),
        "fit_uncompiled": (lambda m, **kw: m.fit(x, y, **kw)),
    }
    with pytest.raises(Exception) as keras_error:
        calls[bad](theirs, verbose=0)
    with pytest.raises(keras_error.type):
        calls[bad](ours, verbose=0)
