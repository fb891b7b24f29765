"""A training run gives the same weights on one thread as on every thread (the kernels' side:
tests/kernels/test_thread_invariance.py)."""
import numba
import numpy as np
import pytest

import dropcore
from dropcore import zoo

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _train(threads):
    dropcore.set_num_threads(threads)
    x, y = rand(200, 28, 28, 1), np.arange(200) % 10
    dropcore.set_random_seed(0)
    model = zoo.build("mnist_cnn", (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=1, seed=0, verbose=0)
    return model.get_weights()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs Numba started with 2 or more threads (2 CPUs)")
def test_a_training_run_gives_the_same_weights_on_one_thread_and_on_all():
    before = dropcore.get_num_threads()
    try:
        state = RNG.bit_generator.state
        one = _train(1)
        RNG.bit_generator.state = state
        every = _train(numba.config.NUMBA_NUM_THREADS)
    finally:
        dropcore.set_num_threads(before)
    for a, b in zip(one, every, strict=True):
        np.testing.assert_array_equal(a, b)
