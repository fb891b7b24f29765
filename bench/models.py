"""The three reference models of the benchmarks, built from ``dropcore.layers`` (independent of the zoo).

Every model is compiled the same way (SGD with momentum 0.9, sparse categorical cross-entropy) so a training step
is forward + backward + SGD momentum update, the step the PyTorch peer reproduces.
"""
import numpy as np

import dropcore
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def _mnist_cnn():
    return [Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), Conv2D(64, 3, activation="relu"),
            MaxPooling2D(2), Dropout(0.25), Flatten(), Dense(128, activation="relu"), Dropout(0.5),
            Dense(10, activation="softmax")]


def _cifar_cnn():
    return [Input((32, 32, 3)), Conv2D(64, 3, activation="relu"), MaxPooling2D(2), Dropout(0.5),
            Conv2D(64, 3, activation="relu"), MaxPooling2D(2), Dropout(0.5), Flatten(),
            Dense(256, activation="relu"), Dropout(0.5), Dense(10, activation="softmax")]


def _lenet5():
    return [Input((28, 28, 1)), Conv2D(6, 5, padding="same", activation="relu"), MaxPooling2D(2),
            Conv2D(16, 5, activation="relu"), MaxPooling2D(2), Flatten(), Dense(120, activation="relu"),
            Dense(84, activation="relu"), Dense(10, activation="softmax")]


#: name -> (layer-list factory, input shape without the batch axis)
MODELS = {
    "mnist_cnn": (_mnist_cnn, (28, 28, 1)),
    "cifar_cnn": (_cifar_cnn, (32, 32, 3)),
    "lenet5": (_lenet5, (28, 28, 1)),
}
NUM_CLASSES = 10


def window_pads(layer, shape):
    """``(kernel, (top, bottom), (left, right))`` of a Conv2D or MaxPooling2D on input ``shape`` (H, W, C), with
    TensorFlow's padding rule, for the peers to pad explicitly."""
    from dropcore.kernels.geometry import window_2d
    from dropcore.layers import Conv2D

    k = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
    _, _, rows, cols = window_2d(shape[0], shape[1], k, layer.strides, layer.padding)
    return k, rows, cols


def check_name(name):
    """``name`` if it is a reference model, else a ValueError naming the choices."""
    if name not in MODELS:
        raise ValueError(f"Invalid value for `model`: expected one of {tuple(MODELS)}. Received: model={name!r}")
    return name


def build(name, seed=0, ops=None):
    """A compiled reference model with deterministic weights (``seed``) on the kernel set ``ops`` (``None``: the
    default set, as a user's model runs)."""
    factory, _ = MODELS[check_name(name)]
    dropcore.set_random_seed(seed)
    return compile_for_bench(dropcore.Sequential(factory(), name=name), ops)


def compile_for_bench(model, ops=None):
    """``model`` on the kernel set ``ops`` (``None``: the default), compiled as every benchmarked model is: SGD with
    momentum and sparse categorical cross-entropy, the step the PyTorch peers reproduce."""
    if ops is not None:
        model.set_ops(ops)
    model.compile(optimizer=dropcore.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
                  loss="sparse_categorical_crossentropy")
    return model


def batch(name, n, seed=0):
    """A deterministic float32 batch ``(x, y)`` of ``n`` images in [0, 1) and int labels for model ``name``."""
    return random_batch(MODELS[check_name(name)][1], n, seed)


def random_batch(shape, n, seed=0):
    """``n`` deterministic float32 images of ``shape`` in [0, 1) and int labels below :data:`NUM_CLASSES`."""
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(shape), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    return x, y
