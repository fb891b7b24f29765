"""Small Keras API pieces against Keras 3 itself (torch backend): to_categorical, get_layer, binary cross-entropy
on (N,) labels, and a Keras file name refused by save."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Dense, Input

keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")


@pytest.mark.parametrize("labels, num_classes", [([0, 2, 1], None), (np.array([[1], [0], [3]]), None),
                                                 ([1, 2], 4), (np.array([0.0, 2.0]), None)])
def test_to_categorical_matches_keras(labels, num_classes):
    ours = dropcore.utils.to_categorical(labels, num_classes)
    theirs = keras.utils.to_categorical(labels, num_classes)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("labels, num_classes, match", [
    ([0, 5], 3, r"label 5 does not fit num_classes=3"),
    ([0.5, 1], None, r"Invalid value for `x`: expected integer class labels"),
    ([-1, 1], None, r"Invalid value for `x`: expected labels >= 0"),
])
def test_to_categorical_refuses_what_is_not_a_label(labels, num_classes, match):
    with pytest.raises(ValueError, match=match):
        dropcore.utils.to_categorical(labels, num_classes)


def _pair():
    ours = dropcore.Sequential([Input((3,)), Dense(2, name="d"), Dense(1, activation="sigmoid", name="out")])
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d"),
                               keras.layers.Dense(1, activation="sigmoid", name="out")])
    return ours, theirs


@pytest.mark.parametrize("kwargs", [dict(name="d"), dict(index=1), dict(name="x"), dict(index=5), dict(),
                                    dict(name="d", index=0)])
def test_get_layer_finds_and_refuses_as_keras_does(kwargs):
    ours, theirs = _pair()
    try:
        expected = theirs.get_layer(**kwargs).name
    except ValueError:
        with pytest.raises(ValueError, match=r"get_layer"):
            ours.get_layer(**kwargs)
    else:
        assert ours.get_layer(**kwargs).name == expected


def test_binary_crossentropy_takes_labels_of_shape_n_as_keras_does():
    ours, theirs = _pair()
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)
    y = (np.arange(12) % 2).astype(np.float32)
    ours.compile("sgd", "binary_crossentropy", ["accuracy"])
    theirs.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    flat = ours.evaluate(x, y)
    assert flat == ours.evaluate(x, y[:, None])
    np.testing.assert_allclose(flat, theirs.evaluate(x, y, verbose=0), rtol=1e-5)


def test_a_keras_file_name_is_refused(tmp_path):
    ours, _ = _pair()
    for name in ("net.keras", "net.h5"):
        with pytest.raises(ValueError, match=r"names a Keras file, but dropcore writes its own format"):
            ours.save(tmp_path / name)
        assert not (tmp_path / name).exists()
