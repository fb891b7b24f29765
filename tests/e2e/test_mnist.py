"""End to end on real digits: the Keras MNIST CNN trained on 8,000 MNIST images, tested on the other 2,000."""
import numpy as np
import pytest

import dropcore
from dropcore import zoo
from dropcore.data import load_mnist


@pytest.mark.slow
def test_mnist_cnn_reaches_97_percent(mnist_dir):
    x, y = load_mnist(mnist_dir, kind="test")
    assert x.shape == (10000, 28, 28, 1)
    x_train, y_train, x_test, y_test = x[:8000], y[:8000], x[8000:], y[8000:]
    dropcore.set_random_seed(0)
    model = zoo.mnist_cnn()  # the Keras example: the layers examples/mnist_cnn.py spells out
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=4, seed=0, verbose=0)
    loss, acc = model.evaluate(x_test, y_test)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert acc >= 0.97, f"test accuracy {acc:.4f} after {len(history.epoch)} epochs"
    # inference is deterministic and predict agrees with evaluate's accuracy
    pred = model.predict(x_test)
    assert np.mean(pred.argmax(1) == y_test) == pytest.approx(acc)
