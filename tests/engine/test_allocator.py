"""``dropcore.allocator``: glibc's malloc thresholds set once when a model first trains, and left alone on request
or off glibc."""
import numpy as np
import pytest

import dropcore
from dropcore import allocator


@pytest.fixture
def fresh(monkeypatch):
    """A process where nothing has trained yet, with a recording ``mallopt``."""
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    monkeypatch.setattr(allocator, "_state", {"done": False, "applied": False})
    monkeypatch.setattr(allocator, "_libc", lambda: mallopt)
    monkeypatch.delenv("DROPCORE_MALLOC", raising=False)
    return calls


def test_thresholds_are_set_once(fresh):
    assert allocator.tune_for_training()
    assert allocator.tune_for_training()
    assert fresh == [(-3, 32 * 2**20), (-1, 256 * 2**20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: once


def test_training_sets_them_and_predicting_does_not(fresh):
    model = dropcore.Sequential([dropcore.layers.Input((4,)), dropcore.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.zeros((3, 4), np.float32)
    model.predict(x, verbose=0)
    dropcore.Predictor(model).predict(x)
    assert fresh == []
    model.train_on_batch(x, np.array([0, 1, 0]))
    assert len(fresh) == 2


def test_system_malloc_on_request(fresh, monkeypatch):
    monkeypatch.setenv("DROPCORE_MALLOC", "system")
    assert not allocator.tune_for_training()
    assert fresh == []


def test_a_refused_value_is_reported(fresh, monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: lambda param, value: 0)  # glibc says no
    assert not allocator.tune_for_training()


def test_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator._libc() is None


def test_glibc_is_found_here_when_this_is_glibc():
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("this test process does not run on glibc")
    assert callable(allocator._libc())
