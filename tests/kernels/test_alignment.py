"""The 64-byte alignment the micro-kernels' vector loads want: the helpers, and every place weights and
inference buffers come from (a build, a copy, a pickle, a model file, a Predictor, a program's buffers)."""
import copy
import pickle

import numpy as np
import pytest

import dropcore
from dropcore.kernels.alignment import ALIGNMENT, aligned, aligned_empty, is_aligned


def _offset(a):
    return a.ctypes.data % ALIGNMENT


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (9216, 128), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_aligned_empty_is_aligned_contiguous_and_sized(shape, dtype):
    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert _offset(a) == 0 and is_aligned(a)


def test_aligned_copies_only_what_needs_it():
    raw = np.zeros(1024 + 2 * ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data % ALIGNMENT + 16) % ALIGNMENT  # 16 bytes past a line: what NumPy often gives
    off = raw[start:start + 1024].view(np.float32).reshape(16, 16)
    off[...] = np.arange(256, dtype=np.float32).reshape(16, 16)
    assert _offset(off) == 16
    fixed = aligned(off)
    assert _offset(fixed) == 0 and fixed is not off and np.array_equal(fixed, off) and fixed.dtype == np.float32
    assert aligned(fixed) is fixed  # already aligned: no copy
    assert aligned(off.T).flags.c_contiguous  # a non-contiguous view becomes a contiguous copy
    assert aligned(np.arange(4), np.float32).dtype == np.float32
    assert aligned(np.arange(4)).dtype == np.arange(4).dtype  # the array's own dtype by default


def _all_weights(model):
    return [(la.name, n, w) for la in model.layers for n, w in la.weights.items()]


@pytest.fixture
def model():
    m = dropcore.Sequential([
        dropcore.layers.Input((12, 12, 1)),
        dropcore.layers.Conv2D(8, 3, activation="relu"),
        dropcore.layers.MaxPooling2D(2),
        dropcore.layers.Flatten(),
        dropcore.layers.Dense(200, activation="relu"),
        dropcore.layers.Dense(10, activation="softmax"),
    ])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return m


def test_weights_are_aligned_when_built_copied_pickled_and_loaded(model, tmp_path):
    assert all(_offset(w) == 0 for _, _, w in _all_weights(model))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        for (name, n, w), (_, _, w0) in zip(_all_weights(clone), _all_weights(model)):
            assert _offset(w) == 0, (name, n)
            assert np.array_equal(w, w0)
    path = tmp_path / "m.dcm"
    dropcore.save_model(model, path)
    assert all(_offset(w) == 0 for _, _, w in _all_weights(dropcore.load_model(path)))


def test_predictor_weights_and_program_buffers_are_aligned(model):
    x = np.random.default_rng(0).random((3, 12, 12, 1), dtype=np.float32)
    p = dropcore.Predictor(model)
    for name, n, w in _all_weights(p._model):
        assert _offset(w) == 0 and not w.flags.writeable, (name, n)  # still frozen
    np.testing.assert_array_equal(p.predict(x), model.predict(x, verbose=0))
    program = p._inference.program()
    buffers = program._buffers(3, program._bind(3))
    assert buffers and all(_offset(b) == 0 for b in buffers if b is not None)
