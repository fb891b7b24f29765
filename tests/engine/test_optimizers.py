"""Optimizer updates against Keras 3's formulas written out step by step, and the max-norm constraint."""
import numpy as np
import pytest

import dropcore
from dropcore import optimizers


def run(opt, steps=3):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4)).astype(np.float32)
    grads = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(steps)]
    p = w.copy()
    for g in grads:
        opt.apply([p], [g])
    return w.astype(np.float64), grads, p


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    w, grads, p = run(optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov))
    v = np.zeros_like(w)
    for g in grads:
        v = 0.9 * v - 0.1 * g
        w = w + (0.9 * v - 0.1 * g if nesterov else v)
    np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)


def test_plain_sgd():
    w, grads, p = run(optimizers.SGD(0.5))
    np.testing.assert_allclose(p, w - 0.5 * sum(grads), rtol=1e-5, atol=1e-6)


def test_adam():
    w, grads, p = run(optimizers.Adam(0.01))
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)


def test_rmsprop():
    w, grads, p = run(optimizers.RMSprop(0.01))
    v = np.zeros_like(w)
    for g in grads:
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.01 * g / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)


def test_adadelta():
    w, grads, p = run(optimizers.Adadelta(1.0))
    a, b = np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        a = 0.95 * a + 0.05 * g * g
        d = -np.sqrt(b + 1e-7) / np.sqrt(a + 1e-7) * g
        b = 0.95 * b + 0.05 * d * d
        w = w + 1.0 * d
    np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)


def test_adagrad():
    w, grads, p = run(optimizers.Adagrad(0.1))
    a = np.full_like(w, 0.1)
    for g in grads:
        a = a + g * g
        w = w - 0.1 * g / np.sqrt(a + 1e-7)
    np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)


KERAS_CASES = [("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)), ("Adam", dict(learning_rate=0.01)),
               ("RMSprop", dict(learning_rate=0.01)), ("Adadelta", dict(learning_rate=1.0)),
               ("Adagrad", dict(learning_rate=0.1))]


@pytest.mark.parametrize("name, kwargs", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_matches_keras_3_itself(name, kwargs):
    """Each optimizer, with the same arguments, takes Keras 3's steps (its torch backend), and the names the classic
    Keras examples pass to ``compile`` give the same optimizer as Keras's with its defaults."""
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (the keras extra)")
    w, grads, ours = run(getattr(optimizers, name)(**kwargs), steps=4)
    var = keras.Variable(w.astype(np.float32))
    theirs = getattr(keras.optimizers, name)(**kwargs)
    for g in grads:
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(var), rtol=1e-5, atol=1e-6)
    defaults = optimizers.get(name.lower()).get_config()
    keras_defaults = keras.optimizers.get(name.lower()).get_config()  # Keras stores the rate as a float32
    assert defaults == pytest.approx({k: keras_defaults[k] for k in defaults}, rel=1e-7)


def test_max_norm_constraint():
    w = np.array([[3.0, 0.1], [4.0, 0.2]], np.float32)  # column norms 5 and ~0.22
    out = dropcore.constraints.MaxNorm(2.0)(w.copy())
    np.testing.assert_allclose(np.linalg.norm(out, axis=0), [2.0, np.linalg.norm(w[:, 1])], rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], w[:, 1], rtol=1e-5)


def test_max_norm_applied_after_each_update():
    rng = np.random.default_rng(0)
    model = dropcore.Sequential([dropcore.layers.Input((10,)),
                                 dropcore.layers.Dense(6, activation="relu",
                                                       kernel_constraint=dropcore.constraints.max_norm(0.5)),
                                 dropcore.layers.Dense(2, activation="softmax")])
    model.compile(dropcore.optimizers.SGD(1.0), "sparse_categorical_crossentropy")
    model.fit(rng.normal(size=(64, 10)).astype(np.float32) * 10, rng.integers(0, 2, 64), epochs=2, verbose=0)
    norms = np.linalg.norm(model.layers[0].weights["kernel"], axis=0)
    assert norms.max() <= 0.5 + 1e-5
