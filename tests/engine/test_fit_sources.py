"""fit and evaluate as Keras 3 runs them (torch backend): sample and class weights, ``initial_epoch`` resuming a run
exactly, and data sources (generators, iterables, PyDataset-style sequences) instead of arrays."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Dense, Dropout, Input

keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")


def _data(n=24):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _pair(dropout=0.0):
    dropcore.set_random_seed(0)
    ours = dropcore.Sequential([Input((5,)), Dense(8, activation="relu"), Dropout(dropout),
                                Dense(3, activation="softmax")])
    ours.compile(optimizer=dropcore.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                               keras.layers.Dense(3, activation="softmax")])
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("weights", ["sample", "class"])
def test_weighted_fit_and_evaluate_match_keras(weights):
    x, y = _data()
    ours, theirs = _pair()
    if weights == "sample":
        kw = {"sample_weight": np.linspace(0.2, 2.0, len(x)).astype(np.float32)}
    else:
        kw = {"class_weight": {0: 0.5, 1: 2.0, 2: 1.0}}
    np.testing.assert_allclose(
        ours.evaluate(x, y, sample_weight=kw.get("sample_weight"))[0],
        theirs.evaluate(x, y, sample_weight=kw.get("sample_weight"), verbose=0)[0], rtol=1e-5)
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, **kw)
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, **kw)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert set(h_ours.history) == set(h_theirs.history) == {"loss", "accuracy"}
    np.testing.assert_allclose(h_ours.history["loss"], h_theirs.history["loss"], rtol=1e-4)


def test_initial_epoch_resumes_an_interrupted_run_bit_for_bit(tmp_path):
    x, y = _data(40)
    whole, _ = _pair(dropout=0.3)
    whole.fit(x, y, batch_size=8, epochs=4, seed=9, verbose=0)
    first, _ = _pair(dropout=0.3)
    first.fit(x, y, batch_size=8, epochs=2, seed=9, verbose=0)
    first.save(tmp_path / "half.dropcore")
    resumed = dropcore.load_model(tmp_path / "half.dropcore")
    history = resumed.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, seed=9, verbose=0)
    assert history.epoch == [2, 3]  # as Keras numbers them
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


class Batches(keras.utils.PyDataset):
    """Keras's own sequence type, with an epoch counter."""

    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size, self.epochs_seen = x, y, batch_size, 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[sl], self.y[sl]

    def on_epoch_end(self):
        self.epochs_seen += 1


class Reiterable:
    """An iterable read anew each epoch, as a PyTorch DataLoader is."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __iter__(self):
        return _generator(self.x, self.y, self.batch_size, 1)


def _generator(x, y, batch_size, epochs):
    for _ in range(epochs):
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]


@pytest.mark.parametrize("kind", ["pydataset", "generator", "iterable"])
def test_a_data_source_trains_as_its_arrays_do(kind):
    x, y = _data()
    on_arrays, _ = _pair()
    on_arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    ours, theirs = _pair()
    if kind == "pydataset":
        source, kw = Batches(x, y, 8), {"shuffle": False}
    elif kind == "generator":
        source, kw = _generator(x, y, 8, 2), {"steps_per_epoch": 3}
    else:
        source, kw = Reiterable(x, y, 8), {}
    history = ours.fit(source, epochs=2, verbose=0, **kw)
    for a, b in zip(ours.get_weights(), on_arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    if kind == "pydataset":
        assert source.epochs_seen == 2
        theirs.fit(Batches(x, y, 8), epochs=2, shuffle=False, verbose=0)
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert len(history.history["loss"]) == 2
    np.testing.assert_allclose(ours.evaluate(Batches(x, y, 5)), ours.evaluate(x, y), rtol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: m.fit(Batches(x, y, 8), y, verbose=0), r"`y` cannot be given with a data source"),
    (lambda m, x, y: m.fit(_generator(x, y, 8, 3), epochs=3, verbose=0), r"give `steps_per_epoch`"),
    (lambda m, x, y: m.fit(_generator(x, y, 8, 1), epochs=2, steps_per_epoch=3, verbose=0),
     r"the generator ran out after 0 of the 3 batches"),
    (lambda m, x, y: m.fit(iter([x[:4]]), verbose=0), r"batch 1 of the data source is ndarray; expected a tuple"),
    (lambda m, x, y: m.fit(x, verbose=0), r"`y` is required when `x` is an array"),
    (lambda m, x, y: m.fit(x, y, class_weight={0: 1.0}, verbose=0), r"`class_weight` has no weight for class"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.ones(3), verbose=0), r"`sample_weight` must hold one weight"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.ones(len(x)), class_weight={0: 1, 1: 1, 2: 1}, verbose=0),
     r"give `class_weight` or `sample_weight`, not both"),
])
def test_bad_sources_and_weights_are_refused_clearly(call, match):
    x, y = _data()
    ours, _ = _pair()
    with pytest.raises(ValueError, match=match):
        call(ours, x, y)
