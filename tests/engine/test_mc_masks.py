"""Monte-Carlo dropout keyed by each sample's row in the whole input, and fresh masks on every eager training call
(Keras's behaviour): the same answer at any batch size, on the program and on the executor; no two rows share
masks; a hand-written loop over ``model(x, training=True)`` sees its outputs vary."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, SpatialDropout2D
from dropcore.testing import assert_mc_same_at_any_batch_size


def _model(noise_shape=None):
    dropcore.set_random_seed(0)
    model = dropcore.Sequential([Input((6, 6, 2)), Conv2D(8, 3, activation="relu"), SpatialDropout2D(0.3),
                                 Flatten(), Dense(16, activation="relu"), Dropout(0.5, noise_shape=noise_shape),
                                 Dense(3, activation="softmax")])
    return model


def _x(n=10):
    x = np.random.default_rng(1).standard_normal((n, 6, 6, 2)).astype(np.float32)
    x[4] = x[0]  # two identical samples
    return x


@pytest.mark.parametrize("noise_shape", [None, (None, 16), (1, 16)])
def test_the_answer_does_not_depend_on_the_batch_size(noise_shape):
    model, x = _model(noise_shape), _x()
    reference = model.predict(x, batch_size=256, mc_samples=6, seed=5)
    assert_mc_same_at_any_batch_size(model, x, reference, (1, 3, 4, 7), mc_samples=6, seed=5)


def test_no_two_rows_share_masks():
    """Rows 0 and 4 hold the same image: with per-row masks their Monte-Carlo means differ (with masks restarting
    at every batch of 4 they were identical)."""
    model, x = _model(), _x()
    mean, std = model.predict(x, batch_size=4, mc_samples=3, seed=2)
    assert std[0].max() > 0 and not np.allclose(mean[0], mean[4])
    np.testing.assert_array_equal(model.predict(x)[0], model.predict(x)[4])  # without dropout they agree


def test_every_eager_training_call_draws_new_masks():
    model, x = _model(), _x()[:4]
    runs = np.stack([model(x, training=True) for _ in range(5)])
    assert runs.std(axis=0).max() > 0.01  # a hand-written MC loop sees uncertainty
    np.testing.assert_array_equal(model(x), model(x))  # inference stays deterministic
    layer = Dropout(0.5)
    ones = np.ones((2, 64), np.float32)
    assert not np.array_equal(layer(ones, training=True), layer(ones, training=True))


@pytest.mark.parametrize("rate", [None, 0.0])
def test_monte_carlo_without_noise_is_refused_on_every_path(rate):
    """A model with no layer that draws noise (none at all, or every rate 0: a PyTorch model exported in eval mode)
    would answer std 0 for every input: Model.predict, the Predictor and the BatchingPredictor refuse, naming the
    fix; plain predictions are unaffected."""
    from dropcore.batching import BatchingPredictor

    layers = [Input((6, 6, 2)), Conv2D(4, 3, activation="relu"), Flatten()]
    layers += [Dropout(rate)] if rate is not None else []
    model = dropcore.Sequential(layers + [Dense(3, activation="softmax")])
    x = _x(6)[:4]
    predictor = dropcore.Predictor(model)
    with BatchingPredictor(predictor, max_batch=4) as batching:
        for predict in (model.predict, predictor.predict, batching.predict):
            with pytest.raises(ValueError, match=r"mc_samples=3 needs a layer that draws noise.*TrainingMode.PRESERVE"):
                predict(x, mc_samples=3, seed=0)
            assert predict(x).shape == (4, 3)
