"""Predictor.predict(deadline=): stops between passes and batches, and changes nothing when it is not reached."""
import time

import numpy as np
import pytest

import dropcore
from dropcore.errors import DeadlineExceeded

from .conftest import SHAPE, small_model


@pytest.fixture(scope="module")
def predictor():
    return dropcore.Predictor(small_model())


def test_far_deadline_gives_identical_answers(predictor):
    x = np.random.default_rng(0).random((700,) + SHAPE, dtype=np.float32)
    far = time.monotonic() + 600
    assert np.array_equal(predictor.predict(x, batch_size=100, deadline=far), predictor.predict(x, batch_size=100))
    mean, std = predictor.predict(x, batch_size=100, mc_samples=3, seed=4, deadline=far)
    want = predictor.predict(x, batch_size=100, mc_samples=3, seed=4)  # masks keyed by row: batches cut the same
    assert np.array_equal(mean, want[0]) and np.array_equal(std, want[1])


def test_deadline_stops_mc_passes_and_batches(predictor):
    x = np.zeros((512,) + SHAPE, np.float32)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"after \d+ of mc_samples=1000000 passes"):
        predictor.predict(x[:8], mc_samples=10**6, deadline=time.monotonic() + 0.2)
    assert time.monotonic() - t0 < 5  # stopped near the deadline, not after a million passes
    with pytest.raises(DeadlineExceeded, match="before it started"):
        predictor.predict(x, deadline=time.monotonic() - 1)
    many = np.zeros((20_000,) + SHAPE, np.float32)  # 20,000 batches of 1: far more than 50 ms
    # (on a loaded machine the 50 ms may pass before the first batch: "before it started" is right then too)
    with pytest.raises(DeadlineExceeded, match=r"after \d+ of 20000 samples|before it started"):
        predictor.predict(many, batch_size=1, deadline=time.monotonic() + 0.05)
    assert issubclass(DeadlineExceeded, TimeoutError)
