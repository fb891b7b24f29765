"""GlobalAveragePooling2D and GlobalMaxPooling2D end to end: Keras 3's semantics (keepdims, channels-last), PyTorch's
gradients, finite differences through the layer, training, the inference program, model files, the Predictor and
JSON descriptions."""
import numpy as np
import pytest

import dropcore
from dropcore import zoo
from dropcore.layers import (Conv2D, Dense, Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D, Input,
                             MaxPooling2D)
from dropcore.layers.base import Context
from dropcore.inference import predict_outputs
from dropcore.ops import get_ops
from dropcore.testing import assert_predictor_matches, check_gradient

LAYERS = {"avg": GlobalAveragePooling2D, "max": GlobalMaxPooling2D}


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _model(kind, keepdims=False, seed=0):
    dropcore.set_random_seed(seed)
    inp = Input((7, 6, 3))
    h = Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    h = LAYERS[kind](keepdims=keepdims, name="pool")(Dropout(0.3)(h))
    if keepdims:
        h = dropcore.layers.Flatten()(h)
    model = dropcore.Model(inp, Dense(4, activation="softmax", name="dense")(h))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_matches_keras(kind, keepdims):
    """The same layer in Keras 3 (torch backend) gives the same output shape and values, keepdims included."""
    keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install -e '.[keras]')")
    x = _x((3, 5, 4, 6), seed=1)
    x[0, 2, 1, 4] = x[0, 0, 3, 4] = 9.0  # a tie in one map
    ours = LAYERS[kind](keepdims=keepdims)(x)
    theirs = getattr(keras.layers, LAYERS[kind].__name__)(keepdims=keepdims)(x)
    theirs = keras.ops.convert_to_numpy(theirs)
    assert ours.shape == theirs.shape == ((3, 1, 1, 6) if keepdims else (3, 6))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", LAYERS)
def test_forward_and_gradients_match_pytorch(kind):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    F = torch.nn.functional
    model = _model(kind)
    x = _x((5, 7, 6, 3), seed=2)
    weights = {la.name: la.weights for la in model.layers}
    params = {k: torch.tensor(v, requires_grad=True) for k, v in
              (("wc", weights["conv"]["kernel"]), ("bc", weights["conv"]["bias"]),
               ("wd", weights["dense"]["kernel"]), ("bd", weights["dense"]["bias"]))}
    h = F.relu(F.conv2d(torch.tensor(x).permute(0, 3, 1, 2), params["wc"].permute(3, 2, 0, 1), params["bc"],
                        padding=1))
    pooled = h.mean(dim=(2, 3)) if kind == "avg" else h.amax(dim=(2, 3))
    out = torch.softmax(pooled @ params["wd"] + params["bd"], dim=1)
    np.testing.assert_allclose(model.predict(x), out.detach().numpy(), rtol=1e-4, atol=1e-6)
    # Gradients of sum(out * r), dropout off (inference mode) so both sides compute the same function.
    r = _x(out.shape, seed=3)
    (out * torch.tensor(r)).sum().backward()
    y, tape = model._plan.forward(get_ops("numba"), x, Context(), keep_backprop=True)
    model._plan.backward(tape, r)
    conv, dense = (next(la for la in model.layers if la.name == n) for n in ("conv", "dense"))
    np.testing.assert_allclose(conv.grads["kernel"], params["wc"].grad.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(conv.grads["bias"], params["bc"].grad.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(dense.grads["kernel"], params["wd"].grad.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_layer_backward_matches_finite_differences(kind, keepdims):
    """Through the layer's own forward and backprop closure, on the reference kernels in float64."""
    layer = LAYERS[kind](keepdims=keepdims)
    layer.build((4, 5, 3))
    ops = get_ops("reference")
    x = _x((2, 4, 5, 3), seed=4, dtype=np.float64)
    r = _x((2, 1, 1, 3) if keepdims else (2, 3), seed=5, dtype=np.float64)
    _, backprop = layer.forward(ops, x, Context())
    check_gradient(lambda: float(np.sum(layer.forward(ops, x, Context())[0] * r)), backprop(r), x)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_trains_and_every_engine_agrees(kind, keepdims, tmp_path):
    """Numba training steps equal the reference's; the program (predict, Predictor, MC dropout), the executor
    and a model file read back all give the same outputs."""
    x, y = _x((12, 7, 6, 3), seed=6), np.arange(12) % 4
    fast, ref = _model(kind, keepdims), _model(kind, keepdims).set_ops("reference")
    fast._seed = ref._seed = 11  # the same dropout masks (fit(seed=...) sets this)
    for _ in range(3):
        np.testing.assert_allclose(fast.train_on_batch(x, y)[0], ref.train_on_batch(x, y)[0], rtol=1e-4)
    for a, b in zip(fast.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    expected = predict_outputs(fast._plan, get_ops("numba"), x, 256)
    program = fast._inference_program()
    pool_step = "global_avg_pool2d" if kind == "avg" else "global_max_pool2d"
    assert pool_step in program.steps and fast.inference_engine == "cython-program"
    np.testing.assert_allclose(fast.predict(x, batch_size=5), expected, rtol=1e-4, atol=1e-6)
    fast.save(tmp_path / "m.dropcore")
    loaded = dropcore.load_model(tmp_path / "m.dropcore")
    pool = next(la for la in loaded.layers if isinstance(la, LAYERS[kind]))
    assert pool.keepdims == keepdims and pool.data_format == "channels_last"
    assert_predictor_matches(tmp_path / "m.dropcore", fast, x)


def test_after_a_max_pooling_in_a_json_description():
    desc = {"input_shape": [8, 8, 1], "layers": [
        {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
        {"class_name": "MaxPooling2D", "config": {"pool_size": 2}},
        {"class_name": "GlobalAveragePooling2D", "config": {"keepdims": False}},
        {"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}}]}
    model = zoo.from_description(desc)
    assert [type(la) for la in model.layers][1:3] == [MaxPooling2D, GlobalAveragePooling2D]
    assert model.output_shape == (None, 2)
    assert "GlobalMaxPooling2D" in zoo.LAYER_CLASSES


@pytest.mark.parametrize("kwargs, match", [
    ({"data_format": "channels_first"}, r"GlobalAveragePooling2D: Invalid value for `data_format`: expected one "
                                        r"of \('channels_last',\)"),
    ({"keepdims": 1}, r"Invalid value for `keepdims`: expected a bool"),
])
def test_bad_arguments_name_the_layer_and_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GlobalAveragePooling2D(**kwargs)


def test_needs_images():
    with pytest.raises(ValueError, match=r"Input to layer 'gmp' \(GlobalMaxPooling2D\) must have 4 dimensions"):
        GlobalMaxPooling2D(name="gmp")(Input((10, 3)))
