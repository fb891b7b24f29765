"""Bad input, numerical faults, resources and concurrency: every failure is loud, precise and loses nothing.

Each case here is one row of the table in docs/guide.md ("What bad input gets").
"""
import threading

import numpy as np
import pytest

import dropcore
from dropcore.layers import (AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input,
                             MaxPooling2D, SpatialDropout2D)


def cnn(seed=0):
    dropcore.set_random_seed(seed)
    model = dropcore.Sequential([Input((8, 8, 3)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Dropout(0.3),
                                 Flatten(), Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    return model


X = np.random.default_rng(0).normal(size=(10, 8, 8, 3)).astype(np.float32)
Y = np.arange(10) % 3


# --- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x,match", [
    (X[:, :, :, 0], r"`x` has shape \(10, 8, 8\); expected \(batch, 8, 8, 3\) \(4 dimensions, channels last\)"),
    (X[..., :2], r"`x` has shape \(10, 8, 8, 2\); expected \(batch, 8, 8, 3\)"),
    (X[:, :6], r"`x` has shape \(10, 6, 8, 3\); expected \(batch, 8, 8, 3\)"),
    (np.zeros((0, 8, 8, 3), np.float32), r"`x` is empty \(shape \(0, 8, 8, 3\)\); expected at least one sample"),
])
def test_wrong_shapes_and_empty(x, match):
    with pytest.raises(ValueError, match=match):
        cnn().predict(x)


def test_non_numeric_input():
    with pytest.raises(TypeError, match=r"`x` must be numeric; received an array of dtype <U1"):
        cnn().predict(np.full((2, 8, 8, 3), "a"))
    with pytest.raises(TypeError, match="must be numeric; received an array of dtype object"):
        cnn().predict(np.array([None, 1], dtype=object))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad):
    x = X.copy()
    x[3, 1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"`x` contains 1 non-finite values \(NaN or inf\), the first at index "
                                         r"\(3, 1, 2, 0\)"):
        cnn().fit(x, Y, verbose=0)


def test_dtype_and_layout_are_converted():
    model = cnn()
    expected = model.predict(X)
    np.testing.assert_allclose(model.predict(X.astype(np.float64)), expected, rtol=1e-6)
    fortran = np.asfortranarray(X)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(model.predict(fortran), expected)
    strided = np.concatenate([X, X], axis=3)[..., ::2]  # non-contiguous view
    np.testing.assert_array_equal(model.predict(strided), model.predict(np.ascontiguousarray(strided)))
    np.testing.assert_array_equal(model.predict((X * 0).astype(np.int32)), model.predict(np.zeros_like(X)))


def test_batch_label_mismatch():
    with pytest.raises(ValueError, match="`x` and `y` must have the same number of samples; received 10 and 9"):
        cnn().fit(X, Y[:9], verbose=0)


@pytest.mark.parametrize("y,match,exc", [
    (np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]), r"labels must be in \[0, 2\] for a 3-unit output; label 3 at index 3",
     ValueError),
    (-np.ones(10, int), r"label -1 at index 0", ValueError),
    (np.full(10, 0.5), r"labels must be integers 0..2; received dtype float64", TypeError),
])
def test_labels_out_of_range(y, match, exc):
    with pytest.raises(exc, match=match):
        cnn().fit(X, y, verbose=0)


def test_one_hot_targets_must_match_output():
    model = cnn()
    model.compile("sgd", "categorical_crossentropy")
    with pytest.raises(ValueError, match=r"`y` must have shape \(10, 3\) to match the model output; received "
                                         r"\(10, 4\)"):
        model.fit(X, np.eye(4)[Y % 4], verbose=0)


@pytest.mark.parametrize("make,match", [
    (lambda: Dropout(1.0), r"Invalid value for `rate`: expected a float in \[0.0, 1.0\)\. Received: rate=1.0"),
    (lambda: Dropout(-0.1), r"Invalid value for `rate`: expected a float in \[0.0, 1.0\)\. Received: rate=-0.1"),
    (lambda: SpatialDropout2D("half"), r"Invalid value for `rate`.*Received: rate='half'"),
    (lambda: Conv2D(0, 3), r"Invalid value for `filters`: expected an integer >= 1\. Received: filters=0"),
    (lambda: Conv2D(8, (3, 0)), r"Invalid value for `kernel_size`.*Received: kernel_size=\(3, 0\)"),
    (lambda: Conv2D(8, 3, padding="full"), r"Invalid value for `padding`: expected one of \('valid', 'same'\)"),
    (lambda: Dense(4, activation="swishy"), r"Invalid value for `activation`: expected one of .*"
                                            r"Received: activation='swishy'"),
    (lambda: Dense(-2), r"Invalid value for `units`: expected an integer >= 1\. Received: units=-2"),
    (lambda: MaxPooling2D(pool_size=(2, 2, 2)), r"Invalid value for `pool_size`"),
    (lambda: BatchNormalization(momentum=1.5), r"Invalid value for `momentum`"),
    (lambda: dropcore.optimizers.SGD(-0.1), r"Invalid value for `learning_rate`: expected a float in \(0.0, inf\]"
                                           r"\. Received: learning_rate=-0.1"),
    (lambda: dropcore.optimizers.Adam(float("nan")), r"Invalid value for `learning_rate`"),
    (lambda: cnn().compile("sgd", "hinge_loss"), r"Invalid value for `loss`: expected one of .*"
                                                 r"Received: loss='hinge_loss'"),
    (lambda: cnn().compile("adamax", "mse"), r"Invalid value for `optimizer`.*Received: optimizer='adamax'"),
    (lambda: cnn().fit(X, Y, batch_size=0), r"Invalid value for `batch_size`: expected an integer >= 1\. Received: "
                                            r"batch_size=0"),
    (lambda: cnn().fit(X, Y, validation_split=1.0), r"Invalid value for `validation_split`"),
    (lambda: dropcore.constraints.MaxNorm(0), r"Invalid value for `max_value`"),
])
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,match", [
    (Conv2D(4, 5), r"a 5x5 kernel with strides \(1, 1\) and padding 'valid' on a 4x4 input gives an empty output "
                   r"\(0x0\)"),
    (MaxPooling2D(5), r"pool \(5, 5\) with strides \(5, 5\) and padding 'valid' on a 4x4 input gives an empty "
                      r"output"),
    (AveragePooling2D((1, 6)), r"on a 4x4 input gives an empty output"),
])
def test_geometry_with_empty_output(layer, match):
    with pytest.raises(ValueError, match=match):
        dropcore.Sequential([Input((4, 4, 2)), layer])


def test_wrong_rank_for_a_layer():
    with pytest.raises(ValueError, match=r"Input to layer '.*' \(Conv2D\) must have 4 dimensions \(batch, height, "
                                         r"width, channels\); received shape \(None, 10\)"):
        dropcore.Sequential([Input((10,)), Conv2D(2, 1)])


def test_uncompiled_model():
    model = dropcore.Sequential([Input((4,)), Dense(2)])
    with pytest.raises(RuntimeError, match="must be compiled before fit: call model.compile"):
        model.fit(np.zeros((2, 4)), np.zeros(2))


# --- numerical faults -----------------------------------------------------------------------------------------
def test_fit_stops_on_non_finite_loss_and_keeps_last_good_weights():
    model = dropcore.Sequential([Input((4,)), BatchNormalization(), Dense(1)])
    model.compile(dropcore.optimizers.SGD(1e30), "mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = np.full((64, 1), 1e18, np.float32)
    snapshots = []

    class Snap(dropcore.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append(self.model.get_weights())

    initial = model.get_weights()
    with pytest.raises(dropcore.NumericalError, match=r"non-finite.* at epoch 1, batch (\d+); training stopped and "
                                                      r"the weights are those from before this batch") as info:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[Snap()])
    failed_batch = int(info.value.args[0].split("batch ")[1].split(";")[0])
    assert failed_batch == len(snapshots) + 1
    last_good = snapshots[-1] if snapshots else initial
    for w, good in zip(model.get_weights(), last_good):
        assert np.isfinite(w).all()
        np.testing.assert_array_equal(w, good)  # moving statistics included
    assert model.optimizer.iterations == len(snapshots)


def test_extreme_logits_stay_finite():
    model = dropcore.Sequential([Input((3,)), Dense(3, activation="softmax", kernel_initializer="zeros")])
    model.layers[0].weights["bias"][...] = [1e4, -1e4, 0]
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.zeros((4, 3), np.float32)
    loss = model.train_on_batch(x, np.array([0, 1, 2, 0]))
    assert np.isfinite(loss) and loss == pytest.approx((0 + 2e4 + 1e4 + 0) / 4, rel=1e-5)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_batchnorm_on_constant_channels_is_finite():
    model = dropcore.Sequential([Input((3, 3, 2)), BatchNormalization(), Flatten(), Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.full((8, 3, 3, 2), 7.0, np.float32)
    loss = model.train_on_batch(x, np.zeros(8, int))
    assert np.isfinite(loss)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(model.predict(x)).all()


# --- resources --------------------------------------------------------------------------------------------------
def test_workspace_limit_gives_a_clear_error():
    model = cnn()
    previous = dropcore.set_workspace_limit(64 * 1024)
    try:
        with pytest.raises(dropcore.WorkspaceLimitError, match=r"a batch of 256 samples needs about .* MiB of "
                                                               r"workspace .* use a batch_size of at most \d+"):
            model.predict(np.zeros((300, 8, 8, 3), np.float32))
        with pytest.raises(dropcore.WorkspaceLimitError, match="a batch of 10 samples"):
            model.fit(X, Y, batch_size=32, verbose=0)
        model.predict(X[:1])  # a small batch still fits
    finally:
        dropcore.set_workspace_limit(previous)
    with pytest.raises(ValueError, match=r"Invalid value for `nbytes`"):
        dropcore.set_workspace_limit(-5)


def test_a_prediction_is_checked_against_the_buffers_of_the_program_that_runs_it():
    """The compiled program keeps its buffers between calls (no allocation per call), steps sharing them: the limit
    is checked against what it allocates for a sample, the shared buffers, input, output and scratch."""
    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    dropcore.set_random_seed(3)
    model = dropcore.Sequential([Input((16, 16, 4))] + [Conv2D(8, 3, padding="same", activation="tanh")
                                                        for _ in range(12)] + [Flatten(), Dense(3)])
    program = model._inference_program()
    one = 16 * 16 * 8 * 4  # a convolution's output, floats of one sample
    allocated = sum(block.nbytes for block in program._shared_buffers(program._bind(5))[1])
    assert allocated == 5 * program.buffer_bytes
    assert 2 * one <= program.buffer_bytes < 12 * one  # twelve outputs in two shared blocks, not twelve
    assert program.sample_bytes >= program.buffer_bytes + 4 * (16 * 16 * 4 + 3)
    previous = dropcore.set_workspace_limit(10 * program.sample_bytes - 1)
    try:  # ten samples do not fit the program's bytes, nine do
        with pytest.raises(dropcore.WorkspaceLimitError, match="a batch of 10 samples"):
            model.predict(np.zeros((10, 16, 16, 4), np.float32))
        with pytest.raises(dropcore.WorkspaceLimitError, match="a batch of 10 samples"):
            dropcore.Predictor(model).predict(np.zeros((10, 16, 16, 4), np.float32))
        assert model.predict(np.zeros((9, 16, 16, 4), np.float32)).shape == (9, 3)
    finally:
        dropcore.set_workspace_limit(previous)


# --- concurrency --------------------------------------------------------------------------------------------------
def test_predictions_from_many_threads_while_another_model_trains():
    served = cnn(seed=1)
    x = np.random.default_rng(2).normal(size=(64, 8, 8, 3)).astype(np.float32)
    expected = {n: served.predict(x[:n]) for n in (1, 7, 64)}
    trainee = cnn(seed=2)
    errors, stop = [], threading.Event()

    def train():
        while not stop.is_set():
            trainee.fit(X, Y, batch_size=4, epochs=1, verbose=0)

    def serve(i):
        try:
            for k in range(15):
                n = (1, 7, 64)[(i + k) % 3]
                np.testing.assert_array_equal(served.predict(x[:n]), expected[n])
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    trainer = threading.Thread(target=train)
    trainer.start()
    workers = [threading.Thread(target=serve, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    stop.set()
    trainer.join(timeout=120)
    assert not errors, errors[0]
    assert not any(w.is_alive() for w in workers) and not trainer.is_alive()
    for n, y in expected.items():  # the served model was never touched by the training thread
        np.testing.assert_array_equal(served.predict(x[:n]), y)
