"""DropBlock2D and MaxPoolingDropout2D (engine/layers/block_dropout.py): the dropped fraction and the block shapes,
the max of the kept inputs and probabilistic weighted pooling against independent loops, backward passes against
finite differences, Monte-Carlo predictions that agree on the executor, the program and the Predictor at any batch
size, training on every kernel set, model files and argument checks."""
import math

import numpy as np
import pytest

import dropcore
from dropcore.kernels.reference.rng import dropout_key, keep_mask
from dropcore.layers import Conv2D, Dense, DropBlock2D, Flatten, Input, MaxPoolingDropout2D
from dropcore.layers.base import Context
from dropcore.ops import get_ops
from dropcore.testing import (assert_mc_runs_its_forward, assert_round_trips, assert_trains_like_reference,
                              check_gradient)

TRAIN = Context(training=True, dropout=True, seed=9, step=4, row=3)


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _forward(layer, x, ctx=TRAIN, ops="numba"):
    layer.ensure_built(x.shape[1:])
    return layer.forward(get_ops(ops), x, ctx)


def _bits(layer, shape, rate, ctx):
    """The layer's keep bits drawn independently: one per input element, from stream index row * sample size + i."""
    key = dropout_key(ctx.seed if layer.seed is None else layer.seed, ctx.step, layer.stream)
    return keep_mask(shape, rate, key, ctx.row * int(np.prod(shape[1:])))


# --- DropBlock2D -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ops", ["numba", "reference"])
@pytest.mark.parametrize("rate, block_size", [(0.1, 3), (0.1, 5), (0.2, 3), (0.2, 5)])
def test_dropblock_drops_about_rate_in_whole_blocks(ops, rate, block_size):
    n, h, w, c, b = 16, 32, 32, 8, block_size
    x = np.ones((n, h, w, c), np.float32)
    layer = DropBlock2D(rate, block_size)
    y = _forward(layer, x, ops=ops)[0]
    dropped = y == 0
    fraction = dropped.mean()
    # the paper's gamma ignores overlapping blocks: the expected fraction is somewhat below rate
    gamma = layer.gamma(h, w)
    covering = np.zeros((h, w))
    for i in range(h - b + 1):
        for j in range(w - b + 1):
            covering[i:i + b, j:j + b] += 1
    expected = (1 - (1 - gamma) ** covering).mean()
    centres = gamma * (h - b + 1) * (w - b + 1) * n * c
    assert abs(fraction - expected) < 5 * expected / math.sqrt(centres)
    assert abs(fraction - rate) < 0.03
    # every zero lies in a wholly zero b x b square inside the map (no block is clipped at a border)
    whole = np.zeros_like(dropped)
    for i in range(h - b + 1):
        for j in range(w - b + 1):
            square = dropped[:, i:i + b, j:j + b, :].all(axis=(1, 2))
            whole[:, i:i + b, j:j + b, :] |= square[:, None, None, :]
    np.testing.assert_array_equal(whole, dropped)
    # kept units scaled by H W / kept per (sample, channel) map
    kept = (~dropped).sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.where(dropped, 1.0, y), np.where(dropped, 1.0, h * w / kept), rtol=1e-6)


def test_dropblock_centres_are_the_keep_bits_of_gamma():
    """A block's top-left corner is dropped exactly where its element's bit (probability gamma) is."""
    x = np.ones((3, 9, 11, 2), np.float32)
    layer = DropBlock2D(0.4, 3, seed=5)
    dropped = _forward(layer, x)[0] == 0
    corners = ~_bits(layer, x.shape, layer.gamma(9, 11), TRAIN)[:, :7, :9, :]
    expected = np.zeros_like(dropped)
    for i in range(7):
        for j in range(9):
            expected[:, i:i + 3, j:j + 3, :] |= corners[:, i:i + 1, j:j + 1, :]
    assert corners.any()
    np.testing.assert_array_equal(dropped, expected)


def test_dropblock_backward_matches_finite_differences_with_the_mask_fixed():
    ops = get_ops("reference")
    layer = DropBlock2D(0.3, 2)
    x, r = _x((3, 6, 5, 2), seed=3, dtype=np.float64), _x((3, 6, 5, 2), seed=4, dtype=np.float64)
    y, backprop = _forward(layer, x, TRAIN, ops="reference")
    assert (y == 0).any() and not np.allclose(y, x)
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, TRAIN)[0] * r)), backprop(r), x)


def test_dropblock_identity_in_inference_and_at_rate_zero():
    x = _x((2, 6, 6, 3), seed=5)
    y, backprop = _forward(DropBlock2D(0.3, 3), x, Context())
    assert y is x and backprop(x) is x
    assert _forward(DropBlock2D(0.0, 3), x)[0] is x
    model = dropcore.Sequential([Input((6, 6, 1)), Conv2D(2, 3), DropBlock2D(0.2, 2), Flatten(), Dense(2)])
    assert model._inference_program().steps == ["conv2d", "reshape", "dense"]  # no step for it
    assert model._inference_program(mc=True).steps.count("drop_block2d") == 1


# --- MaxPoolingDropout2D -----------------------------------------------------------------------------------------
def _windows(shape, pool, strides):
    """Each output position's input positions (row-major), valid padding, by an independent loop."""
    _, h, w, _ = shape
    oh, ow = (h - pool[0]) // strides[0] + 1, (w - pool[1]) // strides[1] + 1
    return {(oy, ox): [(oy * strides[0] + i, ox * strides[1] + j) for i in range(pool[0]) for j in range(pool[1])]
            for oy in range(oh) for ox in range(ow)}, (oh, ow)


@pytest.mark.parametrize("ops", ["numba", "reference"])
@pytest.mark.parametrize("pool, strides", [((2, 2), None), ((3, 3), (2, 2)), ((2, 3), (1, 2))])
def test_max_pooling_dropout_trains_on_the_max_of_the_kept_inputs(ops, pool, strides):
    layer = MaxPoolingDropout2D(0.5, pool, strides)
    x = _x((3, 7, 8, 2), seed=6)
    y = _forward(layer, x, ops=ops)[0]
    kept = _bits(layer, x.shape, 0.5, TRAIN)
    windows, (oh, ow) = _windows(x.shape, layer.pool_size, layer.strides)
    assert y.shape == (3, oh, ow, 2)
    empty = 0
    for s in range(3):
        for c in range(2):
            for (oy, ox), taps in windows.items():
                values = [x[s, i, j, c] for i, j in taps if kept[s, i, j, c]]
                empty += not values
                assert y[s, oy, ox, c] == (max(values) if values else 0.0)
    assert empty > 0 or pool != (2, 2)  # some window lost every input


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
@pytest.mark.parametrize("pool, strides", [((2, 2), None), ((3, 3), (1, 1)), ((2, 3), (2, 1))])
def test_max_pooling_dropout_infers_by_probabilistic_weighted_pooling(rate, pool, strides):
    layer = MaxPoolingDropout2D(rate, pool, strides)
    x = _x((2, 7, 6, 3), seed=7)
    y = _forward(layer, x, Context())[0]
    windows, (oh, ow) = _windows(x.shape, layer.pool_size, layer.strides)
    q = 1.0 - rate
    for s in range(2):
        for c in range(3):
            for (oy, ox), taps in windows.items():
                a = sorted(float(x[s, i, j, c]) for i, j in taps)
                n = len(a)
                expected = sum(q * rate ** (n - k) * a[k - 1] for k in range(1, n + 1))
                assert y[s, oy, ox, c] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_max_pooling_dropout_inference_is_the_mean_of_its_training_outputs():
    """Weighted pooling is the expectation of the training rule (the reason for its weights)."""
    layer = MaxPoolingDropout2D(0.4, 2)
    x = np.abs(_x((1, 4, 4, 2), seed=8))
    mean = np.mean([_forward(layer, x, Context(dropout=True, seed=s))[0] for s in range(4000)], axis=0)
    np.testing.assert_allclose(mean, _forward(layer, x, Context())[0], atol=5 * x.max() / math.sqrt(4000))


def test_max_pooling_dropout_same_padding_ignores_the_padding():
    layer = MaxPoolingDropout2D(0.3, 3, strides=2, padding="same")
    x = -np.abs(_x((1, 5, 5, 1), seed=9)) - 1  # all negative: a padded zero would win and count
    y = _forward(layer, x, Context())[0]
    assert y.shape == (1, 3, 3, 1)
    corner = sorted(x[0, :2, :2, 0].ravel())  # the window at (0, 0) holds 4 real inputs
    assert y[0, 0, 0, 0] == pytest.approx(sum(0.7 * 0.3 ** (4 - k) * corner[k - 1] for k in range(1, 5)), rel=1e-5)
    yt = _forward(layer, x, Context(dropout=True, seed=1))[0]
    assert (yt <= 0).all()  # a padded position never wins


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("ctx", [Context(), TRAIN], ids=["inference", "training"])
def test_max_pooling_dropout_backward_matches_finite_differences(ctx, padding):
    ops = get_ops("reference")
    layer = MaxPoolingDropout2D(0.4, (3, 2), (2, 1), padding)
    x = _x((2, 7, 6, 2), seed=10, dtype=np.float64)
    r = _x((2,) + layer.output_shape_for((7, 6, 2)), seed=11, dtype=np.float64)
    dx = _forward(layer, x, ctx, ops="reference")[1](r)
    assert np.abs(dx).max() > 0
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, ctx)[0] * r)), dx, x)


# --- both: models, Monte-Carlo dropout, training, files ----------------------------------------------------------
MAKERS = {"drop_block2d": lambda: DropBlock2D(0.2, 3), "max_pooling_dropout2d": lambda: MaxPoolingDropout2D(0.3, 2)}


def _model(kind, seed=0):
    dropcore.set_random_seed(seed)
    model = dropcore.Sequential([
        Input((10, 10, 1)), Conv2D(4, 3, activation="relu"), MAKERS[kind](), Conv2D(3, 3, activation="relu"),
        Flatten(), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kind", MAKERS)
def test_monte_carlo_predictions_agree_everywhere_at_any_batch_size(kind):
    model, x = _model(kind), _x((10, 10, 10, 1), seed=12)
    assert_mc_runs_its_forward(model, x, kind, 1)  # the masks on, its own forward


@pytest.mark.parametrize("kind", MAKERS)
def test_trains_like_the_reference_and_round_trips(kind, tmp_path):
    x, y = _x((12, 10, 10, 1), seed=13), np.arange(12) % 3
    model = assert_trains_like_reference(lambda: _model(kind), x, y)
    assert (kind in model._inference_program().steps) == (kind == "max_pooling_dropout2d")
    assert_round_trips(model, x, tmp_path / "m.dropcore")


def test_configs_rebuild_exactly():
    for layer in (DropBlock2D(0.25, 5, seed=3, name="db"), MaxPoolingDropout2D(0.5, (3, 2), 1, "same", 4, "mpd")):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config
    assert DropBlock2D(0.25, 5, name="db").get_config() == {"name": "db", "rate": 0.25, "block_size": 5, "seed": None}
    assert MaxPoolingDropout2D(0.5, 2, name="m").get_config() == {
        "name": "m", "rate": 0.5, "pool_size": [2, 2], "strides": [2, 2], "padding": "valid", "seed": None}


@pytest.mark.parametrize("make, match", [
    (lambda: DropBlock2D(1.0, 3), r"DropBlock2D: Invalid value for `rate`: expected a float in \[0.0, 1.0\)"),
    (lambda: DropBlock2D(-0.1, 3), r"DropBlock2D: Invalid value for `rate`"),
    (lambda: DropBlock2D(0.1, 0), r"DropBlock2D: Invalid value for `block_size`"),
    (lambda: DropBlock2D(0.1, 2.5), r"DropBlock2D: Invalid value for `block_size`"),
    (lambda: DropBlock2D(0.1, 3, seed=-1), r"DropBlock2D: Invalid value for `seed`"),
    (lambda: MaxPoolingDropout2D(1.0, 2), r"MaxPoolingDropout2D: Invalid value for `rate`"),
    (lambda: MaxPoolingDropout2D(0.5, 0), r"MaxPoolingDropout2D: Invalid value for `pool_size`"),
    (lambda: MaxPoolingDropout2D(0.5, 2, strides=(1, 2, 3)), r"MaxPoolingDropout2D: Invalid value for `strides`"),
    (lambda: MaxPoolingDropout2D(0.5, 2, padding="full"), r"MaxPoolingDropout2D: Invalid value for `padding`"),
    (lambda: MaxPoolingDropout2D(0.5, 2, seed="1"), r"MaxPoolingDropout2D: Invalid value for `seed`"),
])
def test_bad_arguments_name_the_layer_and_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match=r"\(DropBlock2D\): block_size 7 does not fit in a 6x8 feature map"):
        dropcore.Sequential([Input((6, 8, 2)), DropBlock2D(0.1, 7)])
    with pytest.raises(ValueError, match=r"\(MaxPoolingDropout2D\): pool \(5, 5\)"):
        dropcore.Sequential([Input((4, 4, 2)), MaxPoolingDropout2D(0.1, 5)])
    with pytest.raises(ValueError, match=r"\(DropBlock2D\) must have 4 dimensions"):
        dropcore.Sequential([Input((6, 8)), DropBlock2D(0.1, 3)])
